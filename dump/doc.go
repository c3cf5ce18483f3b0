// Package dump checkpoints a running container into an archive: it freezes
// the container's cgroup, has CRIU dump it, writes the archive and only then
// stops the container.
package dump
