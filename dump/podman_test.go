package dump

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/crtool/crtool/format"
)

func TestParsePodmanInspect(t *testing.T) {
	// As podman 4.3.1 container inspect --format json prints it, trimmed.
	const out = `[{"Name":"my-web","ImageName":"localhost/crtest-busybox:latest",
	  "Image":"bcda3fae164eb1c2a60827269b220648e28e93f20f62f37c2982c1ba867eb190",
	  "NetworkSettings":{"Ports":{"8080/tcp":[{"HostIp":"","HostPort":"18080"}],"53/udp":[{"HostIp":"127.0.0.1","HostPort":"5353"}],"9000/tcp":null},
	    "Networks":{"crtest-net":{"IPAddress":"10.123.7.2"}}}}]`
	info, err := parsePodmanInspect([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := &podmanInfo{
		Name: "my-web", ImageName: "localhost/crtest-busybox:latest",
		ImageID:  "bcda3fae164eb1c2a60827269b220648e28e93f20f62f37c2982c1ba867eb190",
		Networks: []string{"crtest-net"},
		Ports: []format.PortMapping{
			{HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
			{HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"},
		},
	}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("parsePodmanInspect = %+v, want %+v", info, want)
	}
	if _, err := parsePodmanInspect([]byte(`[]`)); err == nil {
		t.Fatal("no container: want an error")
	}
}

func TestIsPrivate(t *testing.T) {
	for src, want := range map[string]bool{
		"/run/containers/storage/overlay-containers/abc/userdata/hosts":   true,
		"/var/lib/containers/storage/overlay-containers/abc/userdata/shm": true,
		"/var/lib/docker/containers/abc/resolv.conf":                      true,
		"/var/lib/containers/storage/volumes/data/_data":                  false,
		"/srv/www": false,
		"/run/containersX/storage/overlay-containers/abc/userdata/hosts":       false,
		"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/hostname": true,
	} {
		if got := isPrivate(src); got != want {
			t.Errorf("isPrivate(%s) = %v, want %v", src, got, want)
		}
	}
}

func TestTarDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "seg"), []byte("shared memory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/seg", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "shm.tar")
	if err := tarDir(context.Background(), dst, dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[hdr.Name] = string(b) + hdr.Linkname
	}
	want := map[string]string{"sub/": "", "sub/seg": "shared memory", "link": "sub/seg"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tar holds %v, want %v", got, want)
	}
}

func TestFromPodmanDefaults(t *testing.T) {
	publish := []format.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}
	d := &dumper{opts: Options{Publish: publish}, c: &container{}}
	if err := d.fromPodman(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.podman != nil || d.opts.PodmanNetwork != DefaultPodmanNetwork || !reflect.DeepEqual(d.ports, publish) {
		t.Fatalf("a container Podman did not start: podman %+v, network %q, ports %v", d.podman, d.opts.PodmanNetwork, d.ports)
	}
}

func TestMarkPrivateExportVolumes(t *testing.T) {
	vol := t.TempDir()
	ext := []format.ExternalMount{
		{Key: "/data", Kind: format.MountBind, Source: vol},
		{Key: "/proc/kcore", Kind: format.MountBind, Source: "/dev/null"},
		{Key: "/sys/fs/cgroup/memory", Kind: format.MountCgroup, Source: "/sys/fs/cgroup/memory/x"},
	}
	markPrivate(ext, false)
	if ext[0].Content != "" {
		t.Fatalf("a volume got content without --export-volumes: %+v", ext[0])
	}
	markPrivate(ext, true)
	if ext[0].Content != "volumes/data.tar" || !ext[0].Dir || !ext[0].Exported {
		t.Fatalf("exported volume = %+v", ext[0])
	}
	if ext[1].Content != "" || ext[2].Content != "" {
		t.Fatalf("a masked path or a cgroup got content: %+v %+v", ext[1], ext[2])
	}
}
