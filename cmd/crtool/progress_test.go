package main

import (
	"bytes"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestNoBarOffTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b := newBar(f, "x"); b != nil {
		t.Fatal("a bar on a regular file")
	}
	var b *Bar // nil bars are safe
	b.Update(1, 2)
	b.Done()
	if b.callback() != nil {
		t.Fatal("no bar, yet a progress callback")
	}
}

// openPty returns the master and slave ends of a new pseudo-terminal.
func openPty(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestBarOnTerminalAfterDelay(t *testing.T) {
	master, slave := openPty(t)
	defer master.Close()
	defer slave.Close()
	b := newBar(slave, "writing archive")
	if b == nil {
		t.Fatal("no bar on a terminal")
	}
	b.Update(1, 100) // within the delay: nothing drawn
	if b.bar != nil {
		t.Fatal("bar drawn before the delay")
	}
	b.start = time.Now().Add(-2 * delay)
	b.Update(50<<20, 100<<20)
	b.Done()
	buf := make([]byte, 4096)
	_ = master.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := master.Read(buf)
	if !bytes.Contains(buf[:n], []byte("writing archive")) {
		t.Fatalf("terminal got %q, want the bar", buf[:n])
	}
}
