package test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointImage: crtool image turns the archive of a runc container
// into an OCI image archive that podman load takes with its checkpoint
// annotations, podman container restore IMAGE restores, and crtool restore
// -f restores too; each time the counter continues from the dump.
func TestCheckpointImage(t *testing.T) {
	c, network, counter := imageCounter(t)
	archive := c.dump("--image", busyboxImage, "--podman-network", network)
	atDump := fileCounter(counter)

	tag := "localhost/" + uniqueID("crtool-ckpt-") + ":latest"
	imageFile := filepath.Join(t.TempDir(), "image.tar")
	if r := crtool(t, "image", "-f", archive, "-o", imageFile, "--tag", tag); r.code != 0 {
		t.Fatalf("crtool image: %s", r)
	}
	t.Cleanup(func() { _ = exec.Command("podman", "rmi", "-f", tag).Run() })
	podman(t, "load", "-i", imageFile)
	var ann map[string]string
	if err := json.Unmarshal([]byte(podman(t, "image", "inspect", "--format", "{{json .Annotations}}", tag)), &ann); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"io.podman.annotations.checkpoint.name":           c.id,
		"io.podman.annotations.checkpoint.runtime.name":   "runc",
		"io.kubernetes.cri-o.annotations.checkpoint.name": c.id,
	} {
		if ann[k] != want {
			t.Errorf("loaded image: annotation %s = %q, want %q (all: %v)", k, ann[k], want, ann)
		}
	}

	name := uniqueID("crt-img-")
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run() })
	podmanRestore(t, "container", "restore", "--name", name, tag)
	if n := podmanCounter(t, name); n < atDump {
		t.Fatalf("counter %d after Podman restored the image, %d at the dump: it started over", n, atDump)
	}
	if page := podman(t, "exec", name, "cat", "/www/runtime.html"); !strings.Contains(page, "made at run time") {
		t.Fatalf("runtime page %q after Podman restored the image", page)
	}
	podman(t, "rm", "-f", "-t", "0", name)
	podman(t, "rmi", tag)

	c.restore(imageFile)
	waitFor(t, 10*time.Second, "the counter to go on from "+filepath.Base(imageFile), func() bool { return fileCounter(counter) > atDump+5 })
	if r := crtool(t, "inspect", archive); r.code != 0 {
		t.Fatalf("the archive is unchanged and still readable: %s", r)
	}
}

// TestRestorePodmanCheckpointImage: a checkpoint image Podman made
// (container checkpoint --create-image) and saved as an oci-archive, with
// its gzip layer, restores with crtool restore -f, and the counter
// continues.
func TestRestorePodmanCheckpointImage(t *testing.T) {
	requirePodman(t)
	loadBusyboxImage(t)
	root := imageRootfs(t)
	name := uniqueID("crtpimg-")
	tag := "localhost/" + name + "-checkpoint:latest"
	t.Cleanup(func() {
		_ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
		_ = exec.Command("podman", "rmi", "-f", tag).Run()
	})
	podman(t, "run", "-d", "--name", name, "--network", "none", busyboxImage, "sh", "-c",
		`i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; busybox usleep 20000; done`)
	atDump := podmanCounter(t, name)
	podman(t, "container", "checkpoint", "--create-image", tag, name)
	podman(t, "rm", "-f", "-t", "0", name)
	imageFile := filepath.Join(t.TempDir(), "podman-image.tar")
	podman(t, "save", "--format", "oci-archive", "-o", imageFile, tag)
	podman(t, "rmi", tag)

	c := foreignContainer(t, imageFile)
	cleanupForeign(t, c, name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	c.restore(imageFile, "--root", root, "--log", filepath.Join(t.TempDir(), "stdout.log"))
	counter := filepath.Join("/var/lib/crtool/containers", name, "merged", "tmp/counter")
	waitFor(t, 10*time.Second, "the counter to continue", func() bool { return fileCounter(counter) > atDump })
}
