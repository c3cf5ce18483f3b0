package format

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits on what restore and inspect read from an archive into memory. A
// metadata file is JSON or a list of paths: a few KiB in real archives.
// Decoded, JSON takes several times its size, so a small compressed
// archive whose crtool.json or spec.dump unpacks to GiBs of repetitive
// JSON would otherwise exhaust the host's memory.
var (
	// MaxMetadataSize bounds crtool.json, config.dump, spec.dump,
	// network.status, descriptors.json, deleted.files and bind.mounts.
	MaxMetadataSize int64 = 4 << 20
)

// ErrTooLarge is a member larger than the limit that applies to it.
var ErrTooLarge = errors.New("larger than crtool accepts")

// ReadMetadataFile reads the metadata file at path, at most
// MaxMetadataSize bytes; name is how errors call it.
func ReadMetadataFile(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, name, MaxMetadataSize)
}

func readLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d KiB", name, ErrTooLarge, limit>>10)
	}
	return b, nil
}
