package bench

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"google.golang.org/protobuf/proto"
)

func TestParseDumpSummary(t *testing.T) {
	tests := []struct {
		name    string
		stderr  string
		want    dumpSummary
		wantErr string
	}{
		{
			name: "verbose output ends with the summary",
			stderr: `crtool: freezing /sys/fs/cgroup/freezer/crtool-bench/x
crtool: froze /sys/fs/cgroup/freezer/crtool-bench/x in 2.520376ms
crtool: CRIU dumped pid 25212 in 246.239096ms
crtool: checkpointed crb-proto1 (pid 25212) into /var/tmp/x.tar.zst (zstd, 32.3 MiB): freezing 2.52ms, frozen 697.98ms, CRIU 246.24ms, archive 414.91ms, total 719.21ms
`,
			want: dumpSummary{Freezing: 2520 * time.Microsecond, Frozen: 697980 * time.Microsecond,
				CRIU: 246240 * time.Microsecond, Archive: 414910 * time.Microsecond, Total: 719210 * time.Microsecond},
		},
		{
			name:   "minutes, microseconds and a name with a colon",
			stderr: "crtool: checkpointed a:b (pid 1) into f.tar.gz (gzip, 2.00 GiB): freezing 980µs, frozen 1m2.5s, CRIU 40s, archive 22.5s, total 1m3s\n",
			want: dumpSummary{Freezing: 980 * time.Microsecond, Frozen: 62500 * time.Millisecond,
				CRIU: 40 * time.Second, Archive: 22500 * time.Millisecond, Total: 63 * time.Second},
		},
		{
			name:    "no summary",
			stderr:  "crtool: freezing x\n",
			wantErr: "no \"crtool: checkpointed\" line",
		},
		{
			name:    "summary without times",
			stderr:  "crtool: checkpointed x (pid 1) into f (gzip, 1 B): freezing soon\n",
			wantErr: "has no times",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDumpSummary(tt.stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRestored(t *testing.T) {
	pid, took, err := parseRestored("crtool: restoring x (root /r)\ncrtool: restored crb-proto1 as pid 25347 in 516ms\n")
	if err != nil || pid != 25347 || took != 516*time.Millisecond {
		t.Errorf("got %d %v %v", pid, took, err)
	}
	if _, _, err := parseRestored("nothing"); err == nil {
		t.Error("no error without the line")
	}
}

// Podman 4.3.1's --print-stats output, as seen on this machine.
const podmanCheckpointStats = `{
    "podman_checkpoint_duration": 757010,
    "container_statistics": [
        {
            "Id": "2ed9216656c4eac0450c1c6b27521408f84cca007556704ed7775ac920094709",
            "RawInput": "crb-pp1",
            "runtime_checkpoint_duration": 398163,
            "criu_statistics": {
                "freezing_time": 104105,
                "frozen_time": 163454,
                "memdump_time": 24759,
                "memwrite_time": 16573,
                "pages_scanned": 16408,
                "pages_written": 16401
            }
        }
    ]
}`

const podmanRestoreStats = `{
    "podman_restore_duration": 719948,
    "container_statistics": [
        {
            "Id": "2ed9216656c4eac0450c1c6b27521408f84cca007556704ed7775ac920094709",
            "RawInput": "",
            "runtime_restore_duration": 530573,
            "criu_statistics": {
                "forking_time": 4,
                "restore_time": 390152,
                "pages_restored": 16401
            }
        }
    ]
}`

func TestPodmanMetrics(t *testing.T) {
	m := Metrics{}
	if err := podmanDumpMetrics("some line\n"+podmanCheckpointStats, m); err != nil {
		t.Fatal(err)
	}
	want := Metrics{"dump_criu_ms": 398.163, "dump_write_ms": 358.847, "dump_freezing_ms": 104.105,
		"dump_frozen_ms": 163.454, "dump_memdump_ms": 24.759, "dump_memwrite_ms": 16.573}
	checkMetrics(t, m, want)

	m = Metrics{}
	if err := podmanRestoreMetrics(podmanRestoreStats, m); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, m, Metrics{"restore_criu_ms": 530.573, "restore_unpack_ms": 189.375, "restore_criu_stats_ms": 390.152})

	if err := podmanDumpMetrics("crb-pp1\n", Metrics{}); err == nil {
		t.Error("no error without statistics")
	}
	if err := podmanRestoreMetrics(`{"container_statistics": []}`, Metrics{}); err == nil {
		t.Error("no error without durations")
	}
}

// crtool dump --print-stats (cmd/crtool/stats.go): crtool's own times next
// to CRIU's statistics, which use the same names for freezing and frozen.
const crtoolDumpStats = `{
  "crtool_checkpoint_duration": 900000,
  "container_statistics": [
    {
      "Id": "crb-c-1", "Name": "crb-c-1",
      "freezing_time": 2500, "frozen_time": 700000,
      "runtime_checkpoint_duration": 400000, "archive_write_time": 300000, "archive_size": 34726575,
      "criu_statistics": {"freezing_time": 5000, "frozen_time": 390000, "memdump_time": 3000, "memwrite_time": 2000}
    }
  ]
}`

func TestCrtoolStatsMetrics(t *testing.T) {
	m := Metrics{}
	if err := crtoolStatsMetrics(crtoolDumpStats, m); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, m, Metrics{"dump_freezing_ms": 2.5, "dump_frozen_ms": 700, "dump_criu_ms": 400,
		"dump_write_ms": 300, "dump_memdump_ms": 3, "dump_memwrite_ms": 2})

	// What the summary line gave stays.
	m = Metrics{"dump_freezing_ms": 1}
	if err := crtoolStatsMetrics(crtoolDumpStats, m); err != nil {
		t.Fatal(err)
	}
	if m["dump_freezing_ms"] != 1 {
		t.Errorf("the statistics replaced the summary's freezing time: %v", m["dump_freezing_ms"])
	}

	m = Metrics{}
	restore := "4242\n" + `{"crtool_restore_duration": 560000, "container_statistics": [{"pid": 4242,
		"runtime_restore_duration": 430000, "criu_statistics": {"forking_time": 4, "restore_time": 380000}}]}`
	_, rest, _ := strings.Cut(restore, "\n")
	if err := crtoolRestoreStatsMetrics(rest, m); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, m, Metrics{"restore_criu_ms": 430, "restore_criu_stats_ms": 380})
}

func TestParseHWM(t *testing.T) {
	v, err := parseHWM([]byte("Name:\tcrtool\nVmPeak:\t  99 kB\nVmHWM:\t   36312 kB\nVmRSS:\t 1 kB\n"))
	if err != nil || v != 36312 {
		t.Errorf("got %d, %v", v, err)
	}
	if _, err := parseHWM([]byte("Name:\tzombie\n")); err == nil {
		t.Error("no error without VmHWM")
	}
}

func checkMetrics(t *testing.T, got, want Metrics) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if math.Abs(g-w) > 1e-6 {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %v", k, got[k])
		}
	}
}

func TestDecodeCRIUStats(t *testing.T) {
	entry := &stats.StatsEntry{Dump: &stats.DumpStatsEntry{FreezingTime: proto.Uint32(5000),
		FrozenTime: proto.Uint32(390000), MemdumpTime: proto.Uint32(3000), MemwriteTime: proto.Uint32(2000),
		PagesScanned: proto.Uint64(1), PagesSkippedParent: proto.Uint64(0), PagesWritten: proto.Uint64(1),
		PagesLazy: proto.Uint64(0)}}
	payload, err := proto.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	img := binary.LittleEndian.AppendUint32(nil, imgServiceMagic)
	img = binary.LittleEndian.AppendUint32(img, statsMagic)
	img = binary.LittleEndian.AppendUint32(img, uint32(len(payload)))
	img = append(img, payload...)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stats-dump"), img, 0o600); err != nil {
		t.Fatal(err)
	}
	m := Metrics{}
	if err := criuDumpStats(dir, m); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, m, Metrics{"dump_freezing_ms": 5, "dump_frozen_ms": 390, "dump_memdump_ms": 3, "dump_memwrite_ms": 2})

	for name, bad := range map[string][]byte{
		"short":     img[:8],
		"magic":     append([]byte{1, 2, 3, 4}, img[4:]...),
		"truncated": img[:len(img)-1],
	} {
		if _, err := decodeCRIUStats(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if err := criuRestoreStats(dir, Metrics{}); err == nil {
		t.Error("no error without stats-restore")
	}
}
