package trust

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/testutil"
)

// FuzzCheckForeign feeds crafted config.dump and spec.dump, beside the
// real CRIU images of a Podman archive, through what restore does with an
// archive crtool did not write: decode it, then vet the result. Whatever is
// accepted must be within the policy; whatever is refused is one line.
func FuzzCheckForeign(f *testing.F) {
	ref := testutil.RequireReference(f)
	base := f.TempDir()
	in, err := os.Open(filepath.Join(ref, "archives", "bbloop-portable-zstd.tar.zst"))
	if err != nil {
		f.Fatal(err)
	}
	defer in.Close()
	if _, err := archive.Extract(context.Background(), in, base, archive.ExtractOptions{}); err != nil {
		f.Fatal(err)
	}
	spec, _ := os.ReadFile(filepath.Join(base, format.SpecDumpFile))
	cfg, _ := os.ReadFile(filepath.Join(base, format.ConfigDumpFile))
	f.Add(spec, cfg, "")
	f.Add([]byte(`{"hostname":"x","mounts":[{"destination":"/etc/passwd","type":"bind","source":"/etc/shadow"}],"linux":{"cgroupsPath":"/../../x"}}`), []byte(`{"name":"a,upperdir=/"}`), "")
	f.Add(spec, []byte(`{"name":"../../etc"}`), "ok-name")
	f.Fuzz(func(t *testing.T, specJSON, configJSON []byte, name string) {
		stage := t.TempDir()
		if err := os.Symlink(filepath.Join(base, format.CheckpointDir), filepath.Join(stage, format.CheckpointDir)); err != nil {
			t.Fatal(err)
		}
		for file, b := range map[string][]byte{format.SpecDumpFile: specJSON, format.ConfigDumpFile: configJSON} {
			if err := os.WriteFile(filepath.Join(stage, file), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := podman.Decode(stage, name, "/var/lib/crtool/containers")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		md := cp.Metadata
		if err := (Policy{RootGiven: true}).CheckMetadata(md, md.Container.Name); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		if format.CheckName("name", md.Container.Name) != nil {
			t.Fatalf("accepted name %q", md.Container.Name)
		}
		if !strings.HasPrefix(cp.Dir, "/var/lib/crtool/containers/") || strings.Contains(cp.Dir, "..") {
			t.Fatalf("state directory %q outside crtool's", cp.Dir)
		}
		for _, m := range md.Mounts {
			if m.Kind == format.MountBind && m.Source != "" && !strings.HasPrefix(m.Source, "/dev/") && !strings.HasPrefix(m.Source, cp.Dir+"/") {
				t.Fatalf("accepted bind source %q without an allowed path", m.Source)
			}
		}
		for _, p := range md.Cgroups.Paths {
			if strings.Contains(p, "..") {
				t.Fatalf("accepted cgroup path %q", p)
			}
		}
	})
}
