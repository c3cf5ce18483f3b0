// Package images reads and writes crtool's checkpoint archives (Podman's export layout) and CRIU image directories.
package images
