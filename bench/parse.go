package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	// crit's stats types, not go-criu/v7/stats: both register the same
	// protobuf file, and crtool's packages link the crit one.
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"google.golang.org/protobuf/proto"
)

// dumpSummary is what crtool dump's final stderr line reports.
type dumpSummary struct {
	Freezing, Frozen, CRIU, Archive, Total time.Duration
}

var (
	summaryRE  = regexp.MustCompile(`crtool: checkpointed .*: (freezing .*)$`)
	summaryArg = regexp.MustCompile(`(freezing|frozen|CRIU|archive|total) ((?:[0-9.]+(?:ns|us|µs|ms|s|m|h))+)`)
	restoredRE = regexp.MustCompile(`crtool: restored .* as pid (\d+) in ((?:[0-9.]+(?:ns|us|µs|ms|s|m|h))+)`)
)

// parseDumpSummary reads "crtool: checkpointed NAME (pid P) into FILE (zstd,
// 32.3 MiB): freezing 2.52ms, frozen 697.98ms, CRIU 246.24ms, archive
// 414.91ms, total 719.21ms" from crtool dump's stderr.
func parseDumpSummary(stderr string) (dumpSummary, error) {
	var s dumpSummary
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		m := summaryRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		seen := 0
		for _, a := range summaryArg.FindAllStringSubmatch(m[1], -1) {
			d, err := time.ParseDuration(a[2])
			if err != nil {
				return s, fmt.Errorf("summary line %q: %s: %w", lines[i], a[1], err)
			}
			switch a[1] {
			case "freezing":
				s.Freezing = d
			case "frozen":
				s.Frozen = d
			case "CRIU":
				s.CRIU = d
			case "archive":
				s.Archive = d
			case "total":
				s.Total = d
			}
			seen++
		}
		if seen == 0 {
			return s, fmt.Errorf("summary line %q has no times", lines[i])
		}
		return s, nil
	}
	return s, errors.New(`no "crtool: checkpointed" line on stderr`)
}

// parseRestored reads "crtool: restored NAME as pid N in 516ms".
func parseRestored(stderr string) (pid int, took time.Duration, err error) {
	m := restoredRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0, 0, errors.New(`no "crtool: restored" line on stderr`)
	}
	pid, _ = strconv.Atoi(m[1])
	took, err = time.ParseDuration(m[2])
	return pid, took, err
}

// firstJSON decodes the first JSON object in out (Podman prints its
// statistics after other output, or alone).
func firstJSON(out string) (map[string]any, error) {
	i := strings.IndexByte(out, '{')
	if i < 0 {
		return nil, errors.New("no JSON object in the output")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(out[i:])))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode statistics: %w", err)
	}
	return m, nil
}

// flattenNumbers collects every numeric leaf of a decoded JSON document by
// its key, normalized to lower case without '_' or '-' ("frozen_time",
// "frozenTime" → "frozentime"). The first occurrence of a key wins.
func flattenNumbers(v any, out map[string]float64) {
	switch t := v.(type) {
	case map[string]any:
		// Numbers on this level first, so that the top-level key wins
		// over one nested deeper.
		var nested []any
		for k, x := range t {
			if n, ok := x.(json.Number); ok {
				f, err := n.Float64()
				key := normKey(k)
				if _, dup := out[key]; err == nil && !dup {
					out[key] = f
				}
				continue
			}
			nested = append(nested, x)
		}
		for _, x := range nested {
			flattenNumbers(x, out)
		}
	case []any:
		for _, x := range t {
			flattenNumbers(x, out)
		}
	}
}

func normKey(k string) string {
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(k))
}

// usToMs converts Podman's and CRIU's microseconds.
func usToMs(us float64) float64 { return us / 1000 }

// podmanDumpMetrics maps `podman container checkpoint --print-stats`:
//
//	{"podman_checkpoint_duration": µs, "container_statistics": [{
//	  "runtime_checkpoint_duration": µs, "criu_statistics": {
//	  "freezing_time", "frozen_time", "memdump_time", "memwrite_time", …}}]}
func podmanDumpMetrics(out string, m Metrics) error {
	doc, err := firstJSON(out)
	if err != nil {
		return err
	}
	n := map[string]float64{}
	flattenNumbers(doc, n)
	total, ok1 := n["podmancheckpointduration"]
	rt, ok2 := n["runtimecheckpointduration"]
	if !ok1 || !ok2 {
		return fmt.Errorf("checkpoint statistics without podman/runtime durations: %s", truncate(out, 200))
	}
	m["dump_criu_ms"] = usToMs(rt)
	m["dump_write_ms"] = usToMs(total - rt)
	criuKeys(n, m)
	return nil
}

// podmanRestoreMetrics maps `podman container restore --print-stats`:
//
//	{"podman_restore_duration": µs, "container_statistics": [{
//	  "runtime_restore_duration": µs, "criu_statistics": {
//	  "forking_time", "restore_time", "pages_restored"}}]}
func podmanRestoreMetrics(out string, m Metrics) error {
	doc, err := firstJSON(out)
	if err != nil {
		return err
	}
	n := map[string]float64{}
	flattenNumbers(doc, n)
	total, ok1 := n["podmanrestoreduration"]
	rt, ok2 := n["runtimerestoreduration"]
	if !ok1 || !ok2 {
		return fmt.Errorf("restore statistics without podman/runtime durations: %s", truncate(out, 200))
	}
	m["restore_criu_ms"] = usToMs(rt)
	m["restore_unpack_ms"] = usToMs(total - rt)
	if v, ok := n["restoretime"]; ok {
		m["restore_criu_stats_ms"] = usToMs(v)
	}
	return nil
}

// criuKeys copies CRIU's dump statistics (µs) that are present.
func criuKeys(n map[string]float64, m Metrics) {
	for from, to := range map[string]string{
		"freezingtime": "dump_freezing_ms",
		"frozentime":   "dump_frozen_ms",
		"memdumptime":  "dump_memdump_ms",
		"memwritetime": "dump_memwrite_ms",
	} {
		if v, ok := n[from]; ok {
			m[to] = usToMs(v)
		}
	}
}

// crtoolStatsMetrics reads what crtool dump --print-stats printed, where
// the summary line left gaps. The format is Podman's (times in µs), with
// crtool's own times under names this accepts in several spellings.
func crtoolStatsMetrics(out string, m Metrics) error {
	doc, err := firstJSON(out)
	if err != nil {
		return err
	}
	n := map[string]float64{}
	flattenNumbers(doc, n)
	set := func(metric string, keys ...string) {
		if _, ok := m[metric]; ok {
			return
		}
		for _, k := range keys {
			if v, ok := n[k]; ok {
				m[metric] = usToMs(v)
				return
			}
		}
	}
	set("dump_freezing_ms", "freezingtime")
	set("dump_frozen_ms", "frozentime")
	set("dump_criu_ms", "criutime", "criudumptime", "criuduration", "runtimecheckpointduration")
	set("dump_write_ms", "archivewritetime", "writetime", "archivetime", "archiveduration")
	set("dump_memdump_ms", "memdumptime")
	set("dump_memwrite_ms", "memwritetime")
	return nil
}

// crtoolRestoreStatsMetrics reads crtool restore --print-stats:
//
//	{"crtool_restore_duration": µs, "container_statistics": [{"pid": N,
//	  "runtime_restore_duration": µs (CRIU's RPC), "criu_statistics": {
//	  "forking_time", "restore_time", "pages_restored"}}]}
func crtoolRestoreStatsMetrics(out string, m Metrics) error {
	doc, err := firstJSON(out)
	if err != nil {
		return err
	}
	n := map[string]float64{}
	flattenNumbers(doc, n)
	if v, ok := n["runtimerestoreduration"]; ok {
		m["restore_criu_ms"] = usToMs(v)
	}
	if v, ok := n["restoretime"]; ok {
		m["restore_criu_stats_ms"] = usToMs(v)
	}
	return nil
}

// Layout of CRIU's stats-dump and stats-restore: two magics, the entry's
// size, the entry.
const (
	imgServiceMagic = 0x55105940
	statsMagic      = 0x57093306
	statsHeader     = 12
)

// readCRIUStats decodes an image directory's stats-dump or stats-restore.
func readCRIUStats(path string) (*stats.StatsEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeCRIUStats(b)
}

func decodeCRIUStats(b []byte) (*stats.StatsEntry, error) {
	if len(b) < statsHeader {
		return nil, fmt.Errorf("statistics image of %d bytes", len(b))
	}
	if binary.LittleEndian.Uint32(b[0:]) != imgServiceMagic || binary.LittleEndian.Uint32(b[4:]) != statsMagic {
		return nil, errors.New("not a CRIU statistics image (magic)")
	}
	n := int(binary.LittleEndian.Uint32(b[8:]))
	if n > len(b)-statsHeader {
		return nil, fmt.Errorf("statistics entry of %d bytes runs past the end", n)
	}
	st := &stats.StatsEntry{}
	if err := proto.Unmarshal(b[statsHeader:statsHeader+n], st); err != nil {
		return nil, fmt.Errorf("statistics entry: %w", err)
	}
	return st, nil
}

// criuDumpStats reads CRIU's stats-dump from an image directory.
func criuDumpStats(imgDir string, m Metrics) error {
	st, err := readCRIUStats(filepath.Join(imgDir, "stats-dump"))
	if err != nil {
		return fmt.Errorf("CRIU's dump statistics: %w", err)
	}
	d := st.GetDump()
	m["dump_freezing_ms"] = usToMs(float64(d.GetFreezingTime()))
	m["dump_frozen_ms"] = usToMs(float64(d.GetFrozenTime()))
	m["dump_memdump_ms"] = usToMs(float64(d.GetMemdumpTime()))
	m["dump_memwrite_ms"] = usToMs(float64(d.GetMemwriteTime()))
	return nil
}

// criuRestoreStats reads CRIU's stats-restore from an image directory.
func criuRestoreStats(imgDir string, m Metrics) error {
	st, err := readCRIUStats(filepath.Join(imgDir, "stats-restore"))
	if err != nil {
		return fmt.Errorf("CRIU's restore statistics: %w", err)
	}
	m["restore_criu_stats_ms"] = usToMs(float64(st.GetRestore().GetRestoreTime()))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
