package restore

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from what the code does now")

// description is what restore learns of an archive before it touches the
// host: the golden files record it per reference archive.
type description struct {
	Name       string                      `json:"name"`
	Container  format.ContainerInfo        `json:"container"`
	Cgroups    map[string]string           `json:"cgroups"`
	Namespaces map[string]format.Namespace `json:"namespaces"`
	Mounts     []format.ExternalMount      `json:"mounts"`
	Files      []format.ExternalFile       `json:"files"`
	Network    *format.Config              `json:"network"`
	Options    format.DumpOptions          `json:"options"`
	// Of an archive crtool did not write:
	RootMode string            `json:"rootMode"`
	StateDir string            `json:"stateDir"`
	Targets  map[string]string `json:"targets"`
}

// TestDescribeReferenceArchives unpacks and describes each reference
// archive and compares what restore would do with it to
// testdata/ARCHIVE.json (go test -run Describe -update rewrites
// them; review the diff). Paths under the state directory read $STATE.
func TestDescribeReferenceArchives(t *testing.T) {
	for _, name := range referenceArchives {
		t.Run(name, func(t *testing.T) {
			state := tempStateDir(t)
			r := described(t, Options{Input: referencePath(t, name), Root: t.TempDir(), TCPEstablished: true})
			if r.fg == nil {
				t.Fatal("a Podman archive was taken for crtool's")
			}
			md := r.md
			d := description{
				Name: r.name, Container: md.Container, Cgroups: md.Cgroups.Paths, Namespaces: md.Namespaces,
				Mounts: md.Mounts, Files: md.Files, Network: md.Network, Options: md.Options,
				RootMode: fmt.Sprintf("%#o", r.fg.RootMode), StateDir: r.fg.Dir, Targets: r.fg.Targets,
			}
			got, err := json.MarshalIndent(d, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(bytes.ReplaceAll(got, []byte(state), []byte("$STATE")), '\n')
			golden := filepath.Join("testdata", strings.TrimSuffix(strings.TrimSuffix(name, ".gz"), ".zst"))
			golden = strings.TrimSuffix(golden, ".tar") + ".json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run Describe -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("description of %s differs from %s (-update rewrites it):\n%s", name, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
			if shown++; shown == 10 {
				break
			}
		}
	}
	return b.String()
}
