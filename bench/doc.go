// Package bench measures crtool's dump and restore against a do-it-yourself
// runc checkpoint + tar and against Podman's checkpoint --export, on the
// same workload, interleaved in one run, next to the machine's own limits.
//
// It is run by `make bench` (cmd/crtool-bench), never by `make test`: it
// needs root, runc, CRIU and optionally Podman, and minutes per size.
//
// Layout: Run (run.go) drives the cells; each Tool (tools.go) starts
// workload containers that Dump, Restore and Answer; machine.go measures the
// disk and the compressors; report.go, table.go and targets.go turn the
// samples into medians, a table and the targets.
package bench
