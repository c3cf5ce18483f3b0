package trust

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

// FuzzCheckMetadata feeds crtool.json documents to the validation restore
// runs first: it must never panic, and whatever it accepts must hold only
// names, paths and sysctls of the shapes the restore relies on.
func FuzzCheckMetadata(f *testing.F) {
	b, _ := json.Marshal(&format.Metadata{
		Container:  format.ContainerInfo{ID: "0123abcd", Name: "web", Root: "/srv/web"},
		Cgroups:    format.CgroupInfo{Paths: map[string]string{"memory": "/crtool/web"}},
		Namespaces: map[string]format.Namespace{"net": {Path: "/run/netns/web"}},
		Mounts:     []format.ExternalMount{{Key: "/proc/kcore", Kind: format.MountBind, Source: "/dev/null"}},
		Network:    &format.Config{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
	})
	f.Add(b, "web")
	f.Add([]byte(`{"container":{"root":"/"},"network":{"sysctls":{"net.//.//.x":"1"}}}`), "x")
	f.Add([]byte(`{"externalMounts":[{"kind":"bind","source":"/"}],"externalFiles":[{"kind":"file","path":"/etc/shadow"}]}`), ",upperdir=.")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		md, err := format.ParseMetadata(data)
		if err != nil {
			return
		}
		if err := (Policy{RootGiven: true}).CheckMetadata(md, name); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		if format.CheckName("name", name) != nil {
			t.Fatalf("accepted name %q", name)
		}
		if md.Network != nil {
			for k := range md.Network.Sysctls {
				if format.CheckSysctlKey(k) != nil {
					t.Fatalf("accepted sysctl %q", k)
				}
			}
		}
		for _, m := range md.Mounts {
			if m.Kind == format.MountBind && m.Source != "" && !strings.HasPrefix(m.Source, "/dev/") {
				t.Fatalf("accepted bind source %q without an allowed path", m.Source)
			}
		}
	})
}
