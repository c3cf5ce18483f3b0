// Package cpufeat tells whether this host's CPU can run a checkpoint's processes: it detects the CPU features programs choose code for, and compares them with what the dumped processes had in use and what the dumping CPU offered.
package cpufeat

import (
	"runtime"
	"strings"
	"sync"

	"github.com/crtool/crtool/format"
)

// reg is a register CPUID returns.
type reg int

const (
	eax reg = iota
	ebx
	ecx
	edx
)

// XSAVE state components (bit numbers in XCR0 and XSTATE_BV).
const (
	xX87      = 1 << 0
	xSSE      = 1 << 1
	xYMM      = 1 << 2  // upper halves of ymm0-15
	xBNDREGS  = 1 << 3  // MPX
	xBNDCSR   = 1 << 4  // MPX
	xOpmask   = 1 << 5  // AVX-512 k0-k7
	xZMMHi256 = 1 << 6  // AVX-512 upper halves of zmm0-15
	xHi16ZMM  = 1 << 7  // AVX-512 zmm16-31
	xPKRU     = 1 << 9  // protection keys
	xTileCfg  = 1 << 17 // AMX
	xTileData = 1 << 18 // AMX
	xAPX      = 1 << 19 // APX r16-r31

	xAVX    = xSSE | xYMM
	xAVX512 = xAVX | xOpmask | xZMMHi256 | xHi16ZMM
	xAMX    = xTileCfg | xTileData
)

// flag is one feature as CPUID reports it.
type flag struct {
	name      string
	leaf, sub uint32
	reg       reg
	bit       uint
	// os are the XCR0 bits the kernel must have enabled for programs to
	// use the feature; glibc calls a feature "usable" only then, and so
	// does crtool.
	os uint64
	// hint marks features that only make code faster (fast string
	// operations): code chosen for them still runs without them.
	hint bool
}

// flags are the features crtool records and compares, in the order
// messages list them. The list holds the x86-64 levels glibc selects
// libraries by (v2: sse3 to popcnt, v3: avx to movbe, v4: AVX-512) and the
// extensions glibc's string functions, libcrypto, libm and JITs dispatch on.
// Every bit here is also in Linux's /proc/cpuinfo, mostly under the same
// name (lzcnt is "abm" there, sha "sha_ni", lahf "lahf_lm").
var flags = []flag{
	{name: "sse3", leaf: 1, reg: ecx, bit: 0},
	{name: "ssse3", leaf: 1, reg: ecx, bit: 9},
	{name: "sse4_1", leaf: 1, reg: ecx, bit: 19},
	{name: "sse4_2", leaf: 1, reg: ecx, bit: 20},
	{name: "popcnt", leaf: 1, reg: ecx, bit: 23},
	{name: "cx16", leaf: 1, reg: ecx, bit: 13},
	{name: "lahf", leaf: 0x80000001, reg: ecx, bit: 0},
	{name: "pclmulqdq", leaf: 1, reg: ecx, bit: 1},
	{name: "aes", leaf: 1, reg: ecx, bit: 25},
	{name: "rdrand", leaf: 1, reg: ecx, bit: 30},
	{name: "xsave", leaf: 1, reg: ecx, bit: 26, os: xX87 | xSSE},
	{name: "avx", leaf: 1, reg: ecx, bit: 28, os: xAVX},
	{name: "avx2", leaf: 7, reg: ebx, bit: 5, os: xAVX},
	{name: "fma", leaf: 1, reg: ecx, bit: 12, os: xAVX},
	{name: "f16c", leaf: 1, reg: ecx, bit: 29, os: xAVX},
	{name: "bmi1", leaf: 7, reg: ebx, bit: 3},
	{name: "bmi2", leaf: 7, reg: ebx, bit: 8},
	{name: "lzcnt", leaf: 0x80000001, reg: ecx, bit: 5},
	{name: "movbe", leaf: 1, reg: ecx, bit: 22},
	{name: "adx", leaf: 7, reg: ebx, bit: 19},
	{name: "rdseed", leaf: 7, reg: ebx, bit: 18},
	{name: "sha", leaf: 7, reg: ebx, bit: 29},
	{name: "gfni", leaf: 7, reg: ecx, bit: 8},
	{name: "vaes", leaf: 7, reg: ecx, bit: 9, os: xAVX},
	{name: "vpclmulqdq", leaf: 7, reg: ecx, bit: 10, os: xAVX},
	{name: "avxvnni", leaf: 7, sub: 1, reg: eax, bit: 4, os: xAVX},
	{name: "avxifma", leaf: 7, sub: 1, reg: eax, bit: 23, os: xAVX},
	{name: "avxvnniint8", leaf: 7, sub: 1, reg: edx, bit: 4, os: xAVX},
	{name: "avx512f", leaf: 7, reg: ebx, bit: 16, os: xAVX512},
	{name: "avx512vl", leaf: 7, reg: ebx, bit: 31, os: xAVX512},
	{name: "avx512bw", leaf: 7, reg: ebx, bit: 30, os: xAVX512},
	{name: "avx512dq", leaf: 7, reg: ebx, bit: 17, os: xAVX512},
	{name: "avx512cd", leaf: 7, reg: ebx, bit: 28, os: xAVX512},
	{name: "avx512ifma", leaf: 7, reg: ebx, bit: 21, os: xAVX512},
	{name: "avx512vbmi", leaf: 7, reg: ecx, bit: 1, os: xAVX512},
	{name: "avx512vbmi2", leaf: 7, reg: ecx, bit: 6, os: xAVX512},
	{name: "avx512vnni", leaf: 7, reg: ecx, bit: 11, os: xAVX512},
	{name: "avx512bitalg", leaf: 7, reg: ecx, bit: 12, os: xAVX512},
	{name: "avx512vpopcntdq", leaf: 7, reg: ecx, bit: 14, os: xAVX512},
	{name: "avx512bf16", leaf: 7, sub: 1, reg: eax, bit: 5, os: xAVX512},
	{name: "avx512fp16", leaf: 7, reg: edx, bit: 23, os: xAVX512},
	{name: "amx_tile", leaf: 7, reg: edx, bit: 24, os: xAMX},
	{name: "amx_int8", leaf: 7, reg: edx, bit: 25, os: xAMX},
	{name: "amx_bf16", leaf: 7, reg: edx, bit: 22, os: xAMX},
	{name: "apx_f", leaf: 7, sub: 1, reg: edx, bit: 21, os: xAPX},
	{name: "pku", leaf: 7, reg: ecx, bit: 3, os: xPKRU},
	{name: "mpx", leaf: 7, reg: ebx, bit: 14, os: xBNDREGS | xBNDCSR},
	{name: "erms", leaf: 7, reg: ebx, bit: 9, hint: true},
	{name: "fsrm", leaf: 7, reg: edx, bit: 4, hint: true},
}

// flagByName finds a flag of the table; ok is false for names this build
// does not know (an archive of a newer crtool).
func flagByName(name string) (flag, bool) {
	for _, f := range flags {
		if f.name == name {
			return f, true
		}
	}
	return flag{}, false
}

// CPUID is the CPUID instruction: the four registers of leaf and subleaf.
type CPUID func(leaf, sub uint32) (a, b, c, d uint32)

// Decode is the features a CPU reports through cpuid, with xcr0 the XSAVE
// components its kernel enabled (0 when the OS did not enable XSAVE).
// It decides each feature as glibc does: the CPU must report it and, for
// those with register state, the kernel must have enabled that state.
func Decode(cpuid CPUID, xcr0 uint64) format.CPUFeatures {
	out := format.CPUFeatures{Arch: "amd64", Flags: []string{}, XCR0: xcr0}
	maxBasic, _, _, _ := cpuid(0, 0)
	maxExt, _, _, _ := cpuid(0x80000000, 0)
	var max7sub uint32
	if maxBasic >= 7 {
		max7sub, _, _, _ = cpuid(7, 0)
	}
	for _, f := range flags {
		switch {
		case f.leaf >= 0x80000000 && f.leaf > maxExt,
			f.leaf < 0x80000000 && f.leaf > maxBasic,
			f.leaf == 7 && f.sub > max7sub:
			continue
		}
		var r [4]uint32
		r[0], r[1], r[2], r[3] = cpuid(f.leaf, f.sub)
		if r[f.reg]&(1<<f.bit) == 0 || xcr0&f.os != f.os {
			continue
		}
		out.Flags = append(out.Flags, f.name)
	}
	if maxExt >= 0x80000004 {
		out.Model = brand(cpuid)
	}
	return out
}

// brand is the CPU's brand string (leaves 0x80000002-4).
func brand(cpuid CPUID) string {
	var b []byte
	for leaf := uint32(0x80000002); leaf <= 0x80000004; leaf++ {
		a, bx, c, d := cpuid(leaf, 0)
		for _, r := range []uint32{a, bx, c, d} {
			b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
		}
	}
	s, _, _ := strings.Cut(string(b), "\x00")
	return strings.Join(strings.Fields(s), " ")
}

var host = sync.OnceValue(func() format.CPUFeatures {
	if c, xcr0, ok := hostCPUID(); ok {
		return Decode(c, xcr0)
	}
	return format.CPUFeatures{Arch: runtime.GOARCH, Flags: []string{}}
})

// Host is this machine's CPU. On CPUs other than x86-64 it has only Arch:
// crtool compares features of x86-64 CPUs alone.
func Host() format.CPUFeatures {
	h := host()
	h.Flags = append([]string(nil), h.Flags...)
	return h
}

// Has reports whether cpu has the feature name.
func Has(cpu format.CPUFeatures, name string) bool {
	for _, f := range cpu.Flags {
		if f == name {
			return true
		}
	}
	return false
}
