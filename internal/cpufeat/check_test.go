package cpufeat

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

// Hosts and sources for the tests: flags as Decode would report them.
var (
	// baseline is an x86-64 CPU with nothing beyond SSE2.
	baseline = format.CPUFeatures{Arch: "amd64", Flags: []string{}, XCR0: xX87 | xSSE}
	// epyc is an AMD EPYC without AVX-512 (Zen 2).
	epyc = format.CPUFeatures{Arch: "amd64", Model: "AMD EPYC 7B12", XCR0: 0x207, Flags: []string{
		"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf", "pclmulqdq", "aes", "rdrand", "xsave",
		"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe", "adx", "rdseed", "sha", "pku"}}
	// xeon is an Intel Xeon with AVX-512 and fast string operations.
	xeon = format.CPUFeatures{Arch: "amd64", Model: "Intel(R) Xeon(R) Processor", XCR0: 0x2e7, Flags: append(
		append([]string(nil), epyc.Flags...), "avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd", "erms", "fsrm")}
)

// thread is a single-threaded process pid with XSTATE_BV bv and the
// protection-key register as Linux set it.
func thread(pid uint32, bv uint64) State {
	return State{PID: pid, TID: pid, XstateBV: bv, PKRU: defaultPKRU, HasPKRU: true}
}

// render names options as the command line does.
func render(err error) string {
	return errdefs.Render(err, func(o string) string {
		return "--" + map[string]string{SkipOption: "skip-cpu-check"}[o]
	})
}

func TestCheck(t *testing.T) {
	const sigill = "code chosen for them would die with SIGILL): restore on a CPU that has them, or pass --skip-cpu-check"
	withPKRU := thread(1, 0x202)
	withPKRU.PKRU = 0x15555554 // key 15 opened by pkey_alloc+pkey_set
	tests := []struct {
		name     string
		states   []State
		source   *format.CPUFeatures
		host     format.CPUFeatures
		missing  []string
		err      string // the whole line, "" when the restore may go on
		warnings []string
	}{
		{
			// bb2-httpd-gzip: opmask and Hi16_ZMM in use.
			name: "AVX-512 registers, host without", states: []State{thread(1, 0x2a2)}, host: epyc,
			missing: []string{"avx512f", "avx512vl", "avx512bw"},
			err:     "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw (process 1 used AVX-512 registers; " + sigill,
		},
		{name: "AVX-512 registers, host with", states: []State{thread(1, 0x2a3)}, host: xeon},
		{
			name: "AVX-512 on some processes", states: []State{thread(1, 0x2a3), thread(6, 0x202), thread(7, 0x2e7), thread(7, 0x2e7)}, host: epyc,
			missing: []string{"avx512f", "avx512vl", "avx512bw"},
			err:     "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw (processes 1, 7 used AVX-512 registers; " + sigill,
		},
		// The *-portable archives: SSE and the kernel's PKRU only.
		{name: "portable on baseline", states: []State{thread(1, 0x202), thread(14, 0x202)}, host: baseline},
		{name: "portable on EPYC", states: []State{thread(1, 0x202)}, host: epyc},
		{
			name: "AVX on baseline", states: []State{thread(1, 0x206), thread(2, 0x2a6)}, host: baseline,
			missing: []string{"avx", "avx512f", "avx512vl", "avx512bw"},
			err:     "checkpoint needs CPU features this host lacks: avx avx512f avx512vl avx512bw (processes 1, 2 used AVX registers; process 2 used AVX-512 registers; " + sigill,
		},
		{
			name: "protection keys set by the process", states: []State{withPKRU}, host: baseline,
			missing: []string{"pku"},
			err:     "checkpoint needs CPU features this host lacks: pku (process 1 used protection keys; " + sigill,
		},
		{name: "protection keys set by the process, host with", states: []State{withPKRU}, host: epyc},
		{
			// Flags say yes, the kernel did not enable the state.
			name: "AVX-512 state disabled by the kernel", states: []State{thread(1, 0x2e2)},
			host:    format.CPUFeatures{Arch: "amd64", Flags: xeon.Flags, XCR0: 0x207},
			missing: []string{"avx512f", "avx512vl", "avx512bw"},
			err:     "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw (process 1 used AVX-512 registers; " + sigill,
		},
		{
			name: "unknown component, host without", states: []State{thread(3, 1<<20|0x3)}, host: xeon,
			missing: []string{"xsave-component-20"},
			err:     "checkpoint needs CPU features this host lacks: xsave-component-20 (process 3 used XSAVE component 20 registers; " + sigill,
		},
		{name: "unknown component, host with", states: []State{thread(3, 1<<20|0x3)}, host: format.CPUFeatures{Arch: "amd64", XCR0: 1<<20 | 0x3}},
		{
			name: "source CPU only", states: []State{thread(1, 0x202)}, source: &xeon, host: epyc,
			missing:  []string{"avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd"},
			err:      "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw avx512dq avx512cd (the CPU it was dumped on, Intel(R) Xeon(R) Processor, had them, and programs chose their code for it when they started; " + sigill,
			warnings: []string{"this host lacks erms fsrm, which the CPU it was dumped on, Intel(R) Xeon(R) Processor, had: code chosen for them still runs, only slower"},
		},
		{
			name: "registers and source CPU", states: []State{thread(1, 0x2a2)}, source: &xeon, host: epyc,
			missing:  []string{"avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd"},
			err:      "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw avx512dq avx512cd (process 1 used AVX-512 registers; the CPU it was dumped on, Intel(R) Xeon(R) Processor, also had avx512dq avx512cd, and programs chose their code for it when they started; " + sigill,
			warnings: []string{"this host lacks erms fsrm, which the CPU it was dumped on, Intel(R) Xeon(R) Processor, had: code chosen for them still runs, only slower"},
		},
		{name: "source CPU older", states: []State{thread(1, 0x206)}, source: &epyc, host: xeon},
		{
			name: "source flag of a newer crtool", source: &format.CPUFeatures{Arch: "amd64", Flags: []string{"avx", "avx10_2"}}, host: epyc,
			warnings: []string{"cannot check CPU features that a newer crtool recorded: avx10_2; if this host lacks them, restored processes may die with SIGILL"},
		},
		{name: "host not x86", states: []State{thread(1, 0x2a2)}, host: format.CPUFeatures{Arch: "arm64"}},
		{name: "source not x86", source: &format.CPUFeatures{Arch: "arm64", Flags: []string{"sve"}}, host: epyc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.states, tt.source, tt.host)
			if !reflect.DeepEqual(r.Missing, tt.missing) {
				t.Errorf("missing %v, want %v", r.Missing, tt.missing)
			}
			if !reflect.DeepEqual(r.Warnings, tt.warnings) {
				t.Errorf("warnings\n got %q\nwant %q", r.Warnings, tt.warnings)
			}
			err := r.Err()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("not refused, want %q", tt.err)
			}
			if got := render(err); got != tt.err {
				t.Errorf("error\n got %s\nwant %s", got, tt.err)
			}
			if !errors.Is(err, ErrMissingFeatures) {
				t.Errorf("%v: not of class ErrMissingFeatures", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
		})
	}
}

func TestProcessesNamesAFew(t *testing.T) {
	if got, want := processes([]uint32{1, 2, 3, 4, 5, 6, 7}), "processes 1, 2, 3, 4, 5, 2 more"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
