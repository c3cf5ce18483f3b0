// Package format describes crtool's checkpoint archives: the member names, crtool.json, the network configuration it embeds, and the Podman and CRI-O files the archives share with those engines.
package format
