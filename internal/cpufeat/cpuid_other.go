//go:build !amd64

package cpufeat

// hostCPUID has nothing to offer where there is no x86 CPUID.
func hostCPUID() (CPUID, uint64, bool) { return nil, 0, false }
