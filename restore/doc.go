// Package restore brings a container back from a checkpoint archive: it
// unpacks the archive, recreates what the container needs on the host and
// has CRIU restore its processes, leaving them running detached.
package restore
