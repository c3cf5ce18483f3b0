package archive

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectWriter writes sizes around the chunk boundaries to a file on
// disk (O_DIRECT) and on tmpfs (no O_DIRECT) and reads them back.
func TestDirectWriter(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "crtool-direct-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	for _, dir := range dirs {
		for _, size := range []int{0, 1, 4095, directChunk - 1, directChunk, directChunk + 1, 3*directChunk + 12345} {
			data := make([]byte, size)
			_, _ = rand.Read(data)
			p := filepath.Join(dir, "out")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w, err := newDirectWriter(f)
			if err != nil {
				t.Fatal(err)
			}
			// Odd write sizes, as a compressor makes them.
			for off := 0; off < len(data); {
				n := min(len(data)-off, 777777)
				if _, err := w.Write(data[off : off+n]); err != nil {
					t.Fatalf("%s size %d: %v", dir, size, err)
				}
				off += n
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			f.Close()
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s size %d: read back %d bytes, %v", dir, size, len(got), err)
			}
		}
	}
}
