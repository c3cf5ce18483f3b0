package cpufeat

func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// xgetbv reads XCR0; only valid when CPUID reports OSXSAVE.
func xgetbv() (lo, hi uint32)

// hostCPUID is this CPU's CPUID and XCR0.
func hostCPUID() (CPUID, uint64, bool) {
	const osxsave = 1 << 27
	var xcr0 uint64
	if maxBasic, _, _, _ := cpuid(0, 0); maxBasic >= 1 {
		if _, _, c, _ := cpuid(1, 0); c&osxsave != 0 {
			lo, hi := xgetbv()
			xcr0 = uint64(hi)<<32 | uint64(lo)
		}
	}
	return cpuid, xcr0, true
}
