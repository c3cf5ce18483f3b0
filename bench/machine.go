package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/archive"
)

// Machine is what this host can do at best, measured in the same run.
// Throughputs are MiB/s of uncompressed data.
type Machine struct {
	Disk struct {
		FileMiB int `json:"fileMiB"`
		// WriteMiBs: write(2) of the file into the page cache, fsync
		// excluded. WriteSyncMiBs: the same plus the fsync that follows.
		WriteMiBs     float64 `json:"writeMiBs"`
		WriteSyncMiBs float64 `json:"writeSyncMiBs"`
		FsyncMs       float64 `json:"fsyncMs"`
		// ReadCachedMiBs reads the file back from the page cache;
		// ReadColdMiBs after POSIX_FADV_DONTNEED dropped its pages.
		ReadCachedMiBs float64 `json:"readCachedMiBs"`
		ReadColdMiBs   float64 `json:"readColdMiBs"`
	} `json:"disk"`
	// Memory is what restoring memory costs at best: FirstTouchMiBs
	// faults in fresh anonymous memory one write per page (what CRIU's
	// restore and the workload's start do for every page); CopyMiBs
	// copies into memory already faulted in.
	Memory struct {
		MiB            int     `json:"mib"`
		FirstTouchMiBs float64 `json:"firstTouchMiBs"`
		CopyMiBs       float64 `json:"copyMiBs"`
	} `json:"memory"`
	// Compress holds one entry per codec and setting, on the workload's
	// data mix (half xorshift bytes, half numbered text lines).
	Compress []CodecResult `json:"compress"`
	DataMiB  int           `json:"dataMiB"`
}

// CodecResult is one compressor's throughput.
type CodecResult struct {
	Name     string  `json:"name"` // e.g. "pgzip 1 core", "zstd -T0 (CLI)"
	Key      string  `json:"key"`  // stable: pgzip_1, pgzip_all, zstd_1, zstd_all, zstd_all_async, gunzip, unzstd, cli_gzip, cli_zstd_t1, cli_zstd_t0
	MiBs     float64 `json:"mibPerSec"`
	Ratio    float64 `json:"ratio,omitempty"` // compressed/uncompressed
	Workers  int     `json:"workers"`
	Decoding bool    `json:"decoding,omitempty"`
}

// Sizes of the machine measurements.
const (
	diskFileMiB = 1024
	mixMiB      = 256
)

// measureMachine runs the disk and compression measurements in dir.
func measureMachine(ctx context.Context, dir string, logf func(string, ...any)) (*Machine, error) {
	m := &Machine{DataMiB: mixMiB}
	logf("machine: page cache and disk, %d MiB file", diskFileMiB)
	if err := measureDisk(ctx, dir, m); err != nil {
		return nil, err
	}
	data := dataMix(mixMiB << 20)
	logf("machine: memory, %d MiB", mixMiB)
	if err := measureMemory(data, m); err != nil {
		return nil, err
	}
	logf("machine: compressors on %d MiB of the workload's data mix", mixMiB)
	cores := runtime.NumCPU()
	codecs := []struct {
		name, key string
		workers   int
		fn        func([]byte, int) (int, error)
	}{
		{"pgzip default level, 1 worker", "pgzip_1", 1, pgzipSize},
		{fmt.Sprintf("pgzip default level, %d workers", 2*cores), "pgzip_all", 2 * cores, pgzipSize},
		{"zstd default level, 1 encoder", "zstd_1", 1, zstdSize},
		{fmt.Sprintf("zstd default level, %d encoders, concurrent blocks", cores), "zstd_all", cores, zstdSize},
		{fmt.Sprintf("zstd default level, %d encoders, no concurrent blocks", cores), "zstd_all_async", cores, zstdAsyncSize},
		{"gzip as crtool writes it", "crtool_gzip", cores, crtoolSize(archive.Gzip)},
		{"zstd as crtool writes it", "crtool_zstd", cores, crtoolSize(archive.Zstd)},
	}
	for _, c := range codecs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		n, err := c.fn(data, c.workers)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		m.Compress = append(m.Compress, CodecResult{Name: c.name, Key: c.key, Workers: c.workers,
			MiBs: mibPerSec(len(data), time.Since(start)), Ratio: float64(n) / float64(len(data))})
	}
	for _, d := range []struct {
		name, key string
		enc       func(io.Writer, []byte, int) error
		dec       func([]byte) error
	}{
		{"gzip inflate (pgzip reader)", "gunzip", pgzipTo, gunzipAll},
		{"zstd decode", "unzstd", zstdTo, unzstdAll},
	} {
		var comp bytes.Buffer
		if err := d.enc(&comp, data, cores); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		start := time.Now()
		if err := d.dec(comp.Bytes()); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		m.Compress = append(m.Compress, CodecResult{Name: d.name, Key: d.key, Workers: 1, Decoding: true,
			MiBs: mibPerSec(len(data), time.Since(start))})
	}
	// The command-line tools read the same data from a file in the page cache.
	f := filepath.Join(dir, "datamix.bin")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(f)
	for _, c := range []struct {
		name, key string
		workers   int
		args      []string
	}{
		{"gzip -c (CLI)", "cli_gzip", 1, []string{"gzip", "-c"}},
		{"zstd -T1 (CLI, what tar --zstd runs)", "cli_zstd_t1", 1, []string{"zstd", "-T1", "-c"}},
		{"zstd -T0 (CLI)", "cli_zstd_t0", cores, []string{"zstd", "-T0", "-c"}},
	} {
		res, err := cliThroughput(ctx, c.args, f, len(data))
		if err != nil {
			logf("machine: %s: %v", c.name, err)
			continue
		}
		res.Name, res.Key, res.Workers = c.name, c.key, c.workers
		m.Compress = append(m.Compress, res)
	}
	return m, nil
}

// measureDisk writes a file in 4 MiB chunks, fsyncs it, reads it back from
// the page cache and, after dropping its pages, from the disk.
func measureDisk(ctx context.Context, dir string, m *Machine) error {
	path := filepath.Join(dir, "disk-bench.bin")
	defer os.Remove(path)
	chunk := dataMix(4 << 20)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	n := diskFileMiB / 4
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	written := time.Since(start)
	if err := f.Sync(); err != nil {
		return err
	}
	synced := time.Since(start)
	total := n * len(chunk)
	m.Disk.FileMiB = diskFileMiB
	m.Disk.WriteMiBs = mibPerSec(total, written)
	m.Disk.WriteSyncMiBs = mibPerSec(total, synced)
	m.Disk.FsyncMs = ms(synced - written)

	read := func() (time.Duration, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		buf := make([]byte, 4<<20)
		start := time.Now()
		for {
			_, err := f.Read(buf)
			if err == io.EOF {
				return time.Since(start), nil
			}
			if err != nil {
				return 0, err
			}
		}
	}
	d, err := read()
	if err != nil {
		return err
	}
	m.Disk.ReadCachedMiBs = mibPerSec(total, d)
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	if d, err = read(); err != nil {
		return err
	}
	m.Disk.ReadColdMiBs = mibPerSec(total, d)
	return nil
}

// measureMemory maps len(data) bytes of fresh anonymous memory, writes one
// byte per page, then copies data over it.
func measureMemory(data []byte, m *Machine) error {
	mem, err := unix.Mmap(-1, 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(mem)
	page := os.Getpagesize()
	start := time.Now()
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	touched := time.Since(start)
	start = time.Now()
	copy(mem, data)
	copied := time.Since(start)
	m.Memory.MiB = len(data) >> 20
	m.Memory.FirstTouchMiBs = mibPerSec(len(data), touched)
	m.Memory.CopyMiBs = mibPerSec(len(data), copied)
	return nil
}

// pgzipSize compresses data with pgzip as crtool does (default level, 1 MiB
// blocks) with the given number of blocks in flight, and returns the
// compressed size.
func pgzipSize(data []byte, workers int) (int, error) {
	var cw countWriter
	err := pgzipTo(&cw, data, workers)
	return cw.n, err
}

func pgzipTo(w io.Writer, data []byte, workers int) error {
	zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
	if err != nil {
		return err
	}
	if err := zw.SetConcurrency(1<<20, workers); err != nil {
		return err
	}
	return writeAll(zw, data)
}

// zstdSize compresses data with zstd as crtool does (default level, 1 MiB
// window, concurrent blocks) with the given number of encoders, and returns
// the compressed size.
func zstdSize(data []byte, workers int) (int, error) {
	var cw countWriter
	err := zstdTo(&cw, data, workers)
	return cw.n, err
}

// zstdAsyncSize is zstdSize with the encoder's plain asynchronous stream
// mode (one block compressed while the next is read) instead of
// concurrent blocks.
func zstdAsyncSize(data []byte, workers int) (int, error) {
	var cw countWriter
	err := zstdWith(&cw, data, workers, false)
	return cw.n, err
}

// crtoolSize compresses with crtool's own compressor settings.
func crtoolSize(c archive.Compression) func([]byte, int) (int, error) {
	return func(data []byte, _ int) (int, error) {
		var cw countWriter
		w, err := archive.NewCompressor(c, &cw, 0)
		if err != nil {
			return 0, err
		}
		err = writeAll(w, data)
		return cw.n, err
	}
}

func zstdTo(w io.Writer, data []byte, workers int) error {
	return zstdWith(w, data, workers, workers > 1)
}

func zstdWith(w io.Writer, data []byte, workers int, blocks bool) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(workers), zstd.WithConcurrentBlocks(blocks),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		return err
	}
	return writeAll(zw, data)
}

func writeAll(w io.WriteCloser, data []byte) error {
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

func gunzipAll(comp []byte) error {
	zr, err := pgzip.NewReaderN(bytes.NewReader(comp), 1<<20, 4)
	if err != nil {
		return err
	}
	defer zr.Close()
	_, err = io.Copy(io.Discard, zr)
	return err
}

func unzstdAll(comp []byte) error {
	zr, err := zstd.NewReader(bytes.NewReader(comp))
	if err != nil {
		return err
	}
	defer zr.Close()
	_, err = io.Copy(io.Discard, zr)
	return err
}

// cliThroughput runs args with the file on stdin and counts the output.
func cliThroughput(ctx context.Context, args []string, file string, size int) (CodecResult, error) {
	in, err := os.Open(file)
	if err != nil {
		return CodecResult{}, err
	}
	defer in.Close()
	r, err := run(ctx, command{name: args[0], args: args[1:], in: in})
	if err != nil {
		return CodecResult{}, err
	}
	return CodecResult{MiBs: mibPerSec(size, r.wall), Ratio: float64(len(r.stdout)) / float64(size)}, nil
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func mibPerSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}
