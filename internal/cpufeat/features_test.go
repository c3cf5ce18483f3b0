package cpufeat

import (
	"reflect"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/crtool/crtool/internal/testutil"
)

// fakeCPU answers CPUID from a table of leaves; absent leaves read as 0.
type fakeCPU map[[2]uint32][4]uint32

func (f fakeCPU) cpuid(leaf, sub uint32) (a, b, c, d uint32) {
	r := f[[2]uint32{leaf, sub}]
	return r[0], r[1], r[2], r[3]
}

// brandLeaves spreads s over CPUID leaves 0x80000002-4 as a CPU does.
func brandLeaves(f fakeCPU, s string) {
	b := make([]byte, 48)
	copy(b, s)
	for i := 0; i < 3; i++ {
		var r [4]uint32
		for j := range r {
			o := i*16 + j*4
			r[j] = uint32(b[o]) | uint32(b[o+1])<<8 | uint32(b[o+2])<<16 | uint32(b[o+3])<<24
		}
		f[[2]uint32{0x80000002 + uint32(i), 0}] = r
	}
}

// skylakeX is a CPU with AVX-512 F/CD/BW/DQ/VL, AVX2, BMI, ERMS, no SHA.
func skylakeX() fakeCPU {
	f := fakeCPU{
		{0, 0}:          {0xd, 0, 0, 0},
		{1, 0}:          {0, 0, 1<<0 | 1<<1 | 1<<9 | 1<<12 | 1<<13 | 1<<19 | 1<<20 | 1<<22 | 1<<23 | 1<<25 | 1<<26 | 1<<27 | 1<<28 | 1<<29 | 1<<30, 0},
		{7, 0}:          {0, 1<<3 | 1<<5 | 1<<8 | 1<<9 | 1<<16 | 1<<17 | 1<<18 | 1<<19 | 1<<28 | 1<<30 | 1<<31, 1<<3 | 1<<4, 0},
		{0x80000000, 0}: {0x80000008, 0, 0, 0},
		{0x80000001, 0}: {0, 0, 1<<0 | 1<<5, 0},
	}
	brandLeaves(f, "  Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz")
	return f
}

func TestDecode(t *testing.T) {
	v3 := []string{"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf", "pclmulqdq", "aes", "rdrand", "xsave", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe", "adx", "rdseed"}
	tests := []struct {
		name string
		cpu  fakeCPU
		xcr0 uint64
		want []string
	}{
		{"AVX-512 enabled", skylakeX(), 0x2e7, append(slices.Clone(v3), "avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd", "pku", "erms")},
		// A kernel that left AVX-512 state off (or a hypervisor that
		// hides it): glibc would not use AVX-512, so the host lacks it.
		{"AVX-512 state off", skylakeX(), 0x207, append(slices.Clone(v3), "pku", "erms")},
		{"XSAVE off", skylakeX(), 0, []string{"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf", "pclmulqdq", "aes", "rdrand", "bmi1", "bmi2", "lzcnt", "movbe", "adx", "rdseed", "erms"}},
		// Leaf 7 beyond the highest basic leaf reads as garbage on real
		// CPUs: it must not be consulted.
		{"no leaf 7", func() fakeCPU {
			f := skylakeX()
			f[[2]uint32{0, 0}] = [4]uint32{1, 0, 0, 0}
			return f
		}(), 0x7, []string{"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf", "pclmulqdq", "aes", "rdrand", "xsave", "avx", "fma", "f16c", "lzcnt", "movbe"}},
		{"baseline x86-64", fakeCPU{{0, 0}: {1, 0, 0, 0}}, 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decode(tt.cpu.cpuid, tt.xcr0)
			if !reflect.DeepEqual(got.Flags, tt.want) {
				t.Errorf("flags\n got %v\nwant %v", got.Flags, tt.want)
			}
			if got.Arch != "amd64" || got.XCR0 != tt.xcr0 {
				t.Errorf("arch %q xcr0 %#x, want amd64 %#x", got.Arch, got.XCR0, tt.xcr0)
			}
		})
	}
	if m := Decode(skylakeX().cpuid, 0x2e7).Model; m != "Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz" {
		t.Errorf("model %q", m)
	}
}

// TestHostAgreesWithXSysCPU checks the CPUID decoding on the real CPU
// against golang.org/x/sys/cpu for the features both know and decide the
// same way (x/sys/cpu does not require the OS to enable state for FMA,
// F16C and AMX).
func TestHostAgreesWithXSysCPU(t *testing.T) {
	// CI runs on x86-64: there the comparison must run.
	testutil.Require(t, runtime.GOARCH == "amd64", "CPUID exists on x86-64 only")
	x := cpu.X86
	pairs := map[string]bool{
		"sse3": x.HasSSE3, "ssse3": x.HasSSSE3, "sse4_1": x.HasSSE41, "sse4_2": x.HasSSE42,
		"popcnt": x.HasPOPCNT, "cx16": x.HasCX16, "lahf": x.HasLAHF, "pclmulqdq": x.HasPCLMULQDQ,
		"aes": x.HasAES, "rdrand": x.HasRDRAND, "avx": x.HasAVX, "avx2": x.HasAVX2,
		"bmi1": x.HasBMI1, "bmi2": x.HasBMI2, "lzcnt": x.HasLZCNT, "movbe": x.HasMOVBE,
		"adx": x.HasADX, "rdseed": x.HasRDSEED, "erms": x.HasERMS,
		"avx512f": x.HasAVX512F, "avx512vl": x.HasAVX512VL, "avx512bw": x.HasAVX512BW,
		"avx512dq": x.HasAVX512DQ, "avx512cd": x.HasAVX512CD, "avx512ifma": x.HasAVX512IFMA,
		"avx512vbmi": x.HasAVX512VBMI, "avx512vbmi2": x.HasAVX512VBMI2, "avx512vnni": x.HasAVX512VNNI,
		"avx512bitalg": x.HasAVX512BITALG, "avx512vpopcntdq": x.HasAVX512VPOPCNTDQ,
		"avx512bf16": x.HasAVX512BF16, "avxvnni": x.HasAVXVNNI, "avxifma": x.HasAVXIFMA,
		"avxvnniint8": x.HasAVXVNNIInt8,
	}
	h := Host()
	t.Logf("host: %s, xcr0 %#x, %v", h.Model, h.XCR0, h.Flags)
	for name, want := range pairs {
		if got := Has(h, name); got != want {
			t.Errorf("%s: crtool says %v, x/sys/cpu %v", name, got, want)
		}
	}
	if x.HasAVX != (h.XCR0&xAVX == xAVX && Has(h, "avx")) {
		t.Errorf("xcr0 %#x does not match AVX %v", h.XCR0, x.HasAVX)
	}
}
