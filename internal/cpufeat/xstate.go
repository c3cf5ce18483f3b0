package cpufeat

import (
	"fmt"
	"math/bits"
)

// component is a group of XSAVE state components that one extension
// brings: a process that has them in use ran code for that extension.
type component struct {
	mask uint64
	// what names the registers in messages: "AVX-512 registers".
	what string
	// needs are the features such code may rely on. For AVX-512 they are
	// what glibc's EVEX string functions require, the code that
	// vpbroadcastb %esi,%ymm17 comes from.
	needs []string
}

// components are the user state components of XSAVE that crtool knows. x87
// and SSE state belong to every x86-64 CPU; PKRU is handled apart (see
// defaultPKRU).
var components = []component{
	{mask: xYMM, what: "AVX registers", needs: []string{"avx"}},
	{mask: xBNDREGS | xBNDCSR, what: "MPX bound registers", needs: []string{"mpx"}},
	{mask: xOpmask | xZMMHi256 | xHi16ZMM, what: "AVX-512 registers", needs: []string{"avx512f", "avx512vl", "avx512bw"}},
	{mask: xTileCfg | xTileData, what: "AMX tile registers", needs: []string{"amx_tile"}},
	{mask: xAPX, what: "APX registers", needs: []string{"apx_f"}},
}

// pkruComponent is the protection-key register: Linux gives every process
// a PKRU value on CPUs with protection keys, so it being in use says
// nothing; a value other than the kernel's does.
var pkruComponent = component{mask: xPKRU, what: "protection keys", needs: []string{"pku"}}

// defaultPKRU is the PKRU value Linux starts processes with: key 0 open,
// access through every other key disabled. 0 is the reset value.
const defaultPKRU = 0x55555554

// known are the XSTATE_BV bits components and pkruComponent cover, with x87
// and SSE.
var known = func() uint64 {
	m := uint64(xX87|xSSE) | pkruComponent.mask
	for _, c := range components {
		m |= c.mask
	}
	return m
}()

// State is the extended register state of one dumped thread.
type State struct {
	PID, TID uint32
	// XstateBV is XSAVE's XSTATE_BV as CRIU saved it: the state
	// components in use.
	XstateBV uint64
	// PKRU is the protection-key register, when it was saved.
	PKRU    uint32
	HasPKRU bool
}

// used are the components that s had in use, PKRU only when it holds a
// value the process set itself; unknown are the XSTATE_BV bits crtool has
// no name for.
func (s State) used() (used []component, unknown []uint) {
	for _, c := range components {
		if s.XstateBV&c.mask != 0 {
			used = append(used, c)
		}
	}
	if s.XstateBV&xPKRU != 0 && s.HasPKRU && s.PKRU != defaultPKRU && s.PKRU != 0 {
		used = append(used, pkruComponent)
	}
	for rest := s.XstateBV &^ known; rest != 0; rest &= rest - 1 {
		unknown = append(unknown, uint(bits.TrailingZeros64(rest)))
	}
	return used, unknown
}

// unknownComponent describes an XSAVE component crtool has no name for:
// the registers for messages, and the feature to list as missing.
func unknownComponent(bit uint) (what, feature string) {
	return fmt.Sprintf("XSAVE component %d registers", bit), fmt.Sprintf("xsave-component-%d", bit)
}
