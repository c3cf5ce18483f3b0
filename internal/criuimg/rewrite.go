package criuimg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"
)

// Rewrite decodes the image file path as kind, lets edit change its
// entries in place, and when edit reports a change writes them back in
// CRIU's framing (the original magic numbers, then each entry as a 32-bit
// little-endian size and its bytes), replacing the file atomically. Images
// with raw payloads are not rewritten.
func Rewrite(path string, kind Kind, edit func([]proto.Message) (bool, error)) error {
	if kind.Payload {
		return fmt.Errorf("rewrite %s: images of kind %s carry raw data and cannot be rewritten", path, kind.Magic)
	}
	data, err := Dir(filepath.Dir(path)).ReadImage(filepath.Base(path))
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	msgs, err := Decode(data, kind)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w: %w", path, ErrCorrupt, err)
	}
	changed, err := edit(msgs)
	if err != nil || !changed {
		return err
	}
	out := append([]byte(nil), data[:headerSize(data)]...)
	for i, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("rewrite %s: entry %d: %w", path, i, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
	}
	return replaceFile(path, out)
}

// headerSize is the length of the magic numbers data starts with: one
// word, or two when the first is CRIU's common or service magic.
func headerSize(data []byte) int {
	m := uint64(binary.LittleEndian.Uint32(data))
	if m == magics.ByName["IMG_COMMON"] || m == magics.ByName["IMG_SERVICE"] {
		return 2 * magicWord
	}
	return magicWord
}

// magicWord is the size of one magic number.
const magicWord = 4

// replaceFile writes data to a temporary file beside path and renames it
// over path, keeping path's mode.
func replaceFile(path string, data []byte) (err error) {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), st.Mode().Perm())); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return nil
}
