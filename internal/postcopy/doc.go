// Package postcopy moves a container's memory after its restore (post-copy
// migration): the source's CRIU serves the lazy pages through crtool, which
// admits only the peer holding the archive's token, and the destination's
// CRIU lazy-pages daemon pulls them while the container already runs.
package postcopy
