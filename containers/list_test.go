package containers

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/record"
)

func TestEntryAndRender(t *testing.T) {
	self, err := record.Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := self
	dead.StartTime++
	now := time.Now()
	running := entry(&record.Record{Name: "web", Init: self, Addresses: []string{"10.201.3.2/24"}, Archive: "/x/web.tar.gz",
		Ports: []record.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}}, now)
	exited := entry(&record.Record{Name: "old", Init: dead, StateDir: t.TempDir()}, now)
	gone := entry(&record.Record{Name: "lost", Init: dead}, now)
	if running.Status != Running || running.Started == nil || running.Uptime == "" {
		t.Fatalf("running: %+v", running)
	}
	if exited.Status != Exited || gone.Status != Gone {
		t.Fatalf("statuses %s and %s, want exited and gone", exited.Status, gone.Status)
	}
	var table bytes.Buffer
	if err := RenderTable(&table, []Entry{running, exited}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("table:\n%s", table.String())
	}
	for _, want := range []string{"web", "running", "10.201.3.2", "0.0.0.0:8080->80/tcp", "/x/web.tar.gz"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
	if f := strings.Fields(lines[2]); f[1] != "exited" || f[2] != "-" || f[4] != "-" {
		t.Errorf("exited line %q", lines[2])
	}
	var js bytes.Buffer
	if err := RenderJSON(&js, []Entry{running, exited}); err != nil {
		t.Fatal(err)
	}
	var decoded []map[string]any
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	// The documented keys.
	for _, k := range []string{"name", "id", "status", "pid", "started", "uptime", "addresses", "ports", "archive", "restored"} {
		if _, ok := decoded[0][k]; !ok {
			t.Errorf("JSON lacks key %q: %s", k, js.String())
		}
	}
	if decoded[1]["addresses"] == nil || decoded[1]["ports"] == nil {
		t.Errorf("empty lists must be [], not null: %s", js.String())
	}
}

func TestRemoveCgroupsKeepsSharedParents(t *testing.T) {
	root := t.TempDir()
	parent, ours, theirs := root+"/p", root+"/p/ours", root+"/p/theirs"
	for _, d := range []string{ours, theirs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeCgroups([]string{parent, ours}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ours); !os.IsNotExist(err) {
		t.Fatal("our cgroup stays")
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Fatal("a parent holding another container's cgroup was removed")
	}
}
