package podman

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ErrNoPodman is returned by the functions that run Podman when it is not
// installed.
var ErrNoPodman = errors.New("podman is not installed")

// MountImage mounts image (a name or an ID) of this host's Podman storage
// and returns its root filesystem. Podman counts mounts: each needs its
// UnmountImage.
func MountImage(ctx context.Context, image string) (string, error) {
	out, err := run(ctx, "image", "mount", image)
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(out)
	if dir == "" {
		return "", fmt.Errorf("podman image mount %s printed no directory", image)
	}
	return dir, nil
}

// UnmountImage releases one MountImage of image. An image no longer
// mounted, or no longer there, is released already.
func UnmountImage(image string) error {
	// Cleanup must run even when the caller's context is cancelled.
	_, err := run(context.Background(), "image", "unmount", image)
	if err != nil && strings.Contains(err.Error(), "image not known") {
		return nil
	}
	return err
}

// ImageExists reports whether image is in this host's Podman storage;
// ErrNoPodman when Podman is not installed.
func ImageExists(ctx context.Context, image string) (bool, error) {
	_, err := run(ctx, "image", "exists", image)
	if errors.Is(err, ErrNoPodman) {
		return false, err
	}
	return err == nil, nil
}

func run(ctx context.Context, args ...string) (string, error) {
	bin, err := exec.LookPath("podman")
	if err != nil {
		return "", ErrNoPodman
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
