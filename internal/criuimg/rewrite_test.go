package criuimg

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	"google.golang.org/protobuf/proto"
)

// cgroupImage frames entries as CRIU writes cgroup.img: the common magic,
// the image's magic, then each entry after its size.
func cgroupImage(t *testing.T, entries ...proto.Message) []byte {
	t.Helper()
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(magics.ByName["IMG_COMMON"]))
	b = binary.LittleEndian.AppendUint32(b, uint32(magics.ByName["CGROUP"]))
	for _, e := range entries {
		m, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

func TestRewrite(t *testing.T) {
	entry := &cgroup.CgroupEntry{Controllers: []*cgroup.CgControllerEntry{{
		Cnames: []string{"cpuset"},
		Dirs: []*cgroup.CgroupDirEntry{{DirName: proto.String("a/ct"), Properties: []*cgroup.CgroupPropEntry{
			{Name: proto.String("cpuset.cpus"), Value: proto.String("0-7")},
		}}},
	}}}
	orig := cgroupImage(t, entry)
	p := filepath.Join(t.TempDir(), "cgroup.img")
	if err := os.WriteFile(p, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// No change: the file stays byte for byte.
	if err := Rewrite(p, Cgroup, func([]proto.Message) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, orig) {
		t.Fatal("an unchanged image was rewritten")
	}

	err := Rewrite(p, Cgroup, func(msgs []proto.Message) (bool, error) {
		msgs[0].(*cgroup.CgroupEntry).Controllers[0].Dirs[0].Properties[0].Value = proto.String("0-1")
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:8], orig[:8]) {
		t.Errorf("magic numbers changed: % x, want % x", b[:8], orig[:8])
	}
	msgs, err := Decode(b, Cgroup)
	if err != nil {
		t.Fatalf("rewritten image does not decode: %v", err)
	}
	if v := msgs[0].(*cgroup.CgroupEntry).GetControllers()[0].GetDirs()[0].GetProperties()[0].GetValue(); v != "0-1" {
		t.Errorf("rewritten value %q, want 0-1", v)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestRewriteRefusesBadImages(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cgroup.img")
	if err := os.WriteFile(p, cgroupImage(t)[:6], 0o600); err != nil {
		t.Fatal(err)
	}
	called := false
	edit := func([]proto.Message) (bool, error) { called = true; return true, nil }
	if err := Rewrite(p, Cgroup, edit); err == nil || called {
		t.Errorf("a truncated image was rewritten (err %v)", err)
	}
	if err := Rewrite(filepath.Join(dir, "missing.img"), Cgroup, edit); err == nil || called {
		t.Errorf("a missing image was rewritten (err %v)", err)
	}
	if err := Rewrite(p, TCPStream, edit); err == nil || called {
		t.Errorf("an image with a raw payload was rewritten (err %v)", err)
	}
}
