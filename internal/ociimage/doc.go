// Package ociimage writes a checkpoint archive as an OCI image archive in the layout of Podman's checkpoint images, and reads the checkpoint back out of one without trusting it.
package ociimage
