package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func collectReference(t *testing.T, archive string, opts Options) *Report {
	t.Helper()
	r, err := Collect(context.Background(), referencePath(t, archive), opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Source.Path = archive // as if run from the archives' directory
	return r
}

func TestRenderTree(t *testing.T) {
	r := collectReference(t, "nginx-tcp-established-gzip.tar.gz", All())
	tests := []struct {
		name  string
		color bool
	}{{"plain", false}, {"color", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderTree(&buf, r, RenderOptions{Color: tt.color}); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, want := range []string{
				"crtest-nginx-r2", "Engine:", "Podman (libpod)", "Image:", "localhost/crtest-nginx:latest",
				"Archive:         nginx-tcp-established-gzip.tar.gz, gzip, 346.8 KiB",
				"Memory pages: 2.3 MiB", "Root FS diff:    5.5 KiB, 1 deleted file",
				"CRIU dump statistics", "Frozen time:   550.172ms", "Pages written: 581",
				"[1] nginx", "[6] nginx", "Cmdline: nginx: worker process",
				"/dev/null", "pipe:[449804]  (outside the container)",
				"tcp          ESTABLISHED  10.88.0.17:80 -> 10.88.0.1:47572", "tcp          LISTEN       0.0.0.0:80",
				"[heap]", "Mounts (spec.dump)", "/etc/resolv.conf", "Podman network podman",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("tree lacks %q", want)
				}
			}
			if hasEscape := strings.Contains(out, "\x1b["); hasEscape != tt.color {
				t.Errorf("ANSI escapes present = %v, want %v", hasEscape, tt.color)
			}
		})
	}
}

// TestRenderTreeAligns checks that sibling values start in one column,
// and that rows of columns line up.
func TestRenderTreeAligns(t *testing.T) {
	root := &node{key: "root"}
	root.add("A", "1")
	root.add("Longer key", "2")
	rows := root.branch("Rows")
	rows.row("1", "REG", "/dev/null")
	rows.row("10", "EVENTPOLL", "anon_inode:[eventpoll]")
	var buf bytes.Buffer
	p := &printer{w: bufioWriter(&buf)}
	p.children(root, "")
	p.w.Flush()
	want := "" +
		"├── A:          1\n" +
		"├── Longer key: 2\n" +
		"└── Rows\n" +
		"    ├── 1   REG        /dev/null\n" +
		"    └── 10  EVENTPOLL  anon_inode:[eventpoll]\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestRenderTreeEscapes checks that strings from a hostile checkpoint
// cannot drive the terminal.
func TestRenderTreeEscapes(t *testing.T) {
	uid := uint32(33)
	r := &Report{
		Source:    Source{Path: "x.tar", Kind: SourceArchive, Compression: "none", Complete: true},
		Container: Container{Name: "evil\x1b]0;owned\x07", Engine: EngineUnknown},
		Processes: []Process{
			{PID: 1, Comm: "sh\x1b[2J", State: StateAlive, Env: []string{"A=\r\x1b[1A"}, Cmdline: []string{"\xff\xfe"}},
			{PID: 5, PPID: 7, Comm: "cycle", State: StateZombie, UID: &uid},
			{PID: 7, PPID: 5, Comm: "cycle", State: StateAlive},
		},
		Notes: []string{"note\x00"},
	}
	var buf bytes.Buffer
	if err := RenderTree(&buf, r, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, bad := range []string{"\x1b", "\x07", "\r", "\x00"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
	if !utf8.ValidString(out) {
		t.Error("output is not valid UTF-8")
	}
	for _, want := range []string{`"evil\x1b]0;owned\a"`, `[1] "sh\x1b[2J"`, `"A=\r\x1b[1A"`, `[5] cycle (zombie, uid 33)`, `[7] cycle`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderJSONGolden(t *testing.T) {
	r := collectReference(t, "nginx-tcp-established-gzip.tar.gz",
		Options{PsTree: true, Files: true, Sockets: true, Network: true, Cmdline: true})
	var buf bytes.Buffer
	if err := RenderJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "nginx-tcp-established.json")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("JSON differs from %s (rerun with -update after checking the change is intended):\n%s", golden, buf.String())
	}
}

// TestRenderJSONSchema checks the top-level keys and that the JSON reads
// back into the same report: the structs are the schema.
func TestRenderJSONSchema(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		keys []string
	}{
		{"summary", Options{}, []string{"container", "criu", "sizes", "source"}},
		{"all", All(), []string{"container", "criu", "mounts", "network", "processes", "sizes", "source"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := collectReference(t, "nginx-tcp-established-gzip.tar.gz", tt.opts)
			var buf bytes.Buffer
			if err := RenderJSON(&buf, r); err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(buf.Bytes(), &top); err != nil {
				t.Fatal(err)
			}
			keys := sortedKeys(top)
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("top-level keys %q, want %q", keys, tt.keys)
			}
			var back Report
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&back, r) {
				t.Error("the JSON does not read back into the same report")
			}
		})
	}
}
