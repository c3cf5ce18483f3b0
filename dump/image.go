package dump

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// imageRef is the image a container's root filesystem comes from, as Podman
// names it in config.dump (rootfsImageName and rootfsImageID must both be
// set, and name an image in the store of the Podman that imports).
type imageRef struct {
	Name   string // "localhost/crtest-busybox:latest"
	ID     string // 64 hex digits
	podman bool   // found in the local Podman store
}

// resolveImage completes the image reference: an ID given with --image-id is
// taken as is; otherwise the local Podman store is asked.
func resolveImage(ctx context.Context, name, id string) (imageRef, error) {
	if name == "" {
		if id != "" {
			return imageRef{}, errors.New("--image-id needs --image: name the image too")
		}
		return imageRef{}, nil
	}
	if id != "" {
		if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
			return imageRef{}, fmt.Errorf("--image-id %q is not a full image ID (64 hex digits)", id)
		}
		return imageRef{Name: name, ID: id}, nil
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		return imageRef{}, fmt.Errorf("--image %s: Podman is not installed to look up its ID: pass --image-id too", name)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, podman, "image", "inspect", "--format", "{{.Id}} {{range .RepoTags}}{{.}} {{end}}", name).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%s", strings.TrimSpace(string(ee.Stderr)))
		}
		return imageRef{}, fmt.Errorf("--image %s: podman image inspect: %w: pull or import the image first, or pass --image-id", name, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return imageRef{}, fmt.Errorf("--image %s: podman image inspect printed nothing", name)
	}
	ref := imageRef{Name: name, ID: f[0], podman: true}
	// Podman's own archives carry the full tagged name.
	for _, tag := range f[1:] {
		if tag == name || strings.HasSuffix(tag, "/"+name) || strings.TrimSuffix(tag, ":latest") == name {
			ref.Name = tag
			break
		}
	}
	return ref, nil
}
