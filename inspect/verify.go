package inspect

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/errdefs"
)

// Verify reads the whole archive at path ("-": stdin) and checks every
// member against the manifest crtool wrote into it.
func Verify(ctx context.Context, path string) (archive.VerifyStats, error) {
	var r io.Reader = os.Stdin
	if path != format.Stdio {
		f, err := os.Open(path)
		if err != nil {
			return archive.VerifyStats{}, fmt.Errorf("open archive: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return archive.VerifyStats{}, errdefs.Newf(errdefs.ErrUsage, "--verify checks an archive, and %s is a directory", path)
		}
		r = f
	}
	st, err := archive.Verify(ctx, r)
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}
