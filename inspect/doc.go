// Package inspect reads a checkpoint archive or image directory without restoring it and reports what is inside: the container, CRIU's statistics, the process tree with its files, sockets and memory, the mounts and the network.
package inspect
