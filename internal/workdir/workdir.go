// Package workdir manages the temporary directory in which a dump or restore
// stages CRIU's images and log.
package workdir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is a staging directory with CRIU's image directory inside it.
type Dir struct {
	Path   string // the staging directory
	Images string // Path/checkpoint, CRIU's image and work directory
}

// New creates a staging directory under parent ($TMPDIR when empty).
func New(parent, prefix, imagesName string) (*Dir, error) {
	p, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	return &Dir{Path: p, Images: filepath.Join(p, imagesName)}, nil
}

// Log is the path of a CRIU log in the image directory.
func (d *Dir) Log(name string) string { return filepath.Join(d.Images, name) }

// Remove deletes the staging directory.
func (d *Dir) Remove() { _ = os.RemoveAll(d.Path) }

// KeepOnly deletes everything but the CRIU log file, whose path a failed
// operation's error quotes; without a log, everything goes.
func (d *Dir) KeepOnly(log string) {
	if _, err := os.Stat(log); err != nil {
		d.Remove()
		return
	}
	_ = filepath.WalkDir(d.Path, func(p string, e os.DirEntry, err error) error {
		if err != nil || p == d.Path || p == log {
			return nil
		}
		if e.IsDir() && (p == filepath.Dir(log) || isParent(p, log)) {
			return nil
		}
		_ = os.RemoveAll(p)
		if e.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

func isParent(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel[0] != '.'
}

// MoveImages moves the image directory to dst, which must not exist or be
// empty; it renames when it can and copies across filesystems.
func (d *Dir) MoveImages(dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("keep images: %w", err)
	}
	_ = os.Remove(dst) // only succeeds when empty
	if err := os.Rename(d.Images, dst); err == nil {
		return nil
	}
	if err := os.CopyFS(dst, os.DirFS(d.Images)); err != nil {
		return fmt.Errorf("keep images in %s: %w", dst, err)
	}
	return nil
}
