// Package rootfs computes a container root filesystem's changes against its image, in the form Podman's checkpoint archives carry them (rootfs-diff.tar and deleted.files), and applies such changes to a copy of the image.
package rootfs
