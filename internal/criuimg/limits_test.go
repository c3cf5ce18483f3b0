package criuimg

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"google.golang.org/protobuf/proto"
)

// TestDecodeBoundsEntries decodes an image of empty entries, four bytes
// each: past MaxEntries it is refused before any is decoded; at the limit
// decoding stays within seconds and a bounded amount of memory.
func TestDecodeBoundsEntries(t *testing.T) {
	entry := &fdinfo.FdinfoEntry{Id: proto.Uint32(1), Flags: proto.Uint32(0), Type: fdinfo.FdTypes_REG.Enum(), Fd: proto.Uint32(3)}
	one := encode(t, Fdinfo, entry)
	head, body := one[:8], one[8:]
	build := func(n int) []byte {
		b := append([]byte{}, head...)
		for i := 0; i < n; i++ {
			b = append(b, body...)
		}
		return b
	}
	start := time.Now()
	if _, err := Decode(build(MaxEntries+1), Fdinfo); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("%d entries: err = %v, want refused", MaxEntries+1, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %v", d)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start = time.Now()
	msgs, err := Decode(build(MaxEntries), Fdinfo)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("%d entries: %v, %d MiB allocated", len(msgs), took, (after.TotalAlloc-before.TotalAlloc)>>20)
	if took > 10*time.Second {
		t.Errorf("decoding %d entries took %v", len(msgs), took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
		t.Errorf("decoding %d entries allocated %d MiB", len(msgs), alloc>>20)
	}
}
