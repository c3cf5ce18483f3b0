// Package archive reads and writes checkpoint archives: tar in Podman's export layout, compressed with gzip or zstd or not at all, extracted without trusting a member.
package archive
