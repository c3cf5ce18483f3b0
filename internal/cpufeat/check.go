package cpufeat

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
)

// ErrMissingFeatures is the class of Report.Err: the checkpoint needs CPU
// features this host lacks. It belongs to no errdefs class: the archive
// does not fit this host, as any other blocker of a restore.
var ErrMissingFeatures = errors.New("checkpoint needs CPU features this host lacks")

// SkipOption is the Options field of restore that turns the check off;
// Report.Err names it so the command line can name its flag.
const SkipOption = "SkipCPUCheck"

// taskDead is CRIU's TASK_DEAD task state: a zombie.
const taskDead = 2

// Dumped reads the extended register state of every thread of the dump
// from its core images, processes in the tree's order. Threads saved
// without an XSAVE area (zombies, CPUs without XSAVE) are left out: they
// used no more than x87 and SSE.
func Dumped(set *criuimg.Set) ([]State, error) {
	tree, err := set.Tree()
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range tree {
		// A zombie runs no code again, and CRIU records no thread of its
		// own for it (its pstree entry's thread id is not meaningful).
		if main, err := set.Core(e.GetPid()); err == nil && main.GetTc().GetTaskState() == taskDead {
			continue
		}
		tids := e.GetThreads()
		if len(tids) == 0 {
			tids = []uint32{e.GetPid()}
		}
		for _, tid := range tids {
			bv, ok, err := set.FPU(tid)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			s := State{PID: e.GetPid(), TID: tid, XstateBV: bv}
			core, err := set.Core(tid)
			if err != nil {
				return nil, err
			}
			if pkru := core.GetThreadInfo().GetFpregs().GetXsave().GetPkru(); len(pkru) > 0 {
				s.PKRU, s.HasPKRU = pkru[0], true
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Report is what Check found.
type Report struct {
	// Missing are the features the checkpoint needs that the host lacks,
	// in the order messages list features.
	Missing []string
	// reasons say why they are needed, for Err.
	reasons []string
	// Warnings are lines for the user about differences that do not
	// stop a restore.
	Warnings []string
}

// Err is the one-line refusal when features are missing, nil otherwise. It
// matches ErrMissingFeatures and names SkipOption as the way past it.
func (r *Report) Err() error {
	if len(r.Missing) == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %s (%s)", ErrMissingFeatures, strings.Join(r.Missing, " "), strings.Join(r.reasons, "; "))
	return errdefs.Hint(err, "restore on a CPU that has them, or pass ", SkipOption, "")
}

// Check compares a checkpoint with host: states are the dumped threads'
// register state (Dumped), source the dumping CPU as crtool.json records
// it (nil for archives of other tools). A feature is missing when a thread
// used registers of it, or when the dumping CPU offered it: programs chose
// their code for that CPU when they started. Features that only speed up
// code and features this build does not know give warnings.
func Check(states []State, source *format.CPUFeatures, host format.CPUFeatures) *Report {
	r := &Report{}
	if host.Arch != "amd64" || (source != nil && source.Arch != "amd64") {
		// Nothing to compare: CRIU refuses images of another
		// architecture itself.
		return r
	}
	fromRegs, unnamed := r.registers(states, host)
	fromSource := r.sourceCPU(source, host, fromRegs)
	if len(fromRegs) == 0 && len(unnamed) == 0 && len(fromSource) == 0 {
		return r
	}
	for _, f := range flags {
		if fromRegs[f.name] || slices.Contains(fromSource, f.name) {
			r.Missing = append(r.Missing, f.name)
		}
	}
	r.Missing = append(r.Missing, unnamed...)
	r.reasons = append(r.reasons, "code chosen for them would die with SIGILL")
	return r
}

// registers finds the features that the register state of the threads
// needs and host lacks: named ones, and XSAVE components crtool has no
// name for, in the order found. It gives one reason per kind of register,
// with the processes that used them in the order of the tree.
func (r *Report) registers(states []State, host format.CPUFeatures) (lacking map[string]bool, unnamed []string) {
	lacking = map[string]bool{}
	type use struct {
		what string
		pids []uint32
	}
	var uses []*use
	note := func(what string, pid uint32) {
		for _, u := range uses {
			if u.what == what {
				if u.pids[len(u.pids)-1] != pid {
					u.pids = append(u.pids, pid)
				}
				return
			}
		}
		uses = append(uses, &use{what: what, pids: []uint32{pid}})
	}
	for _, s := range states {
		used, unknown := s.used()
		for _, c := range used {
			var lack []string
			for _, f := range c.needs {
				if !Has(host, f) {
					lack = append(lack, f)
				}
			}
			if len(lack) == 0 && s.XstateBV&c.mask&^host.XCR0 != 0 {
				lack = c.needs // the CPU has it, the kernel did not enable it
			}
			for _, f := range lack {
				lacking[f] = true
			}
			if len(lack) > 0 {
				note(c.what, s.PID)
			}
		}
		for _, bit := range unknown {
			if host.XCR0&(1<<bit) != 0 {
				continue
			}
			what, f := unknownComponent(bit)
			if !slices.Contains(unnamed, f) {
				unnamed = append(unnamed, f)
			}
			note(what, s.PID)
		}
	}
	for _, u := range uses {
		r.reasons = append(r.reasons, processes(u.pids)+" used "+u.what)
	}
	return lacking, unnamed
}

// sourceCPU finds the features of the dumping CPU that host lacks, beyond
// those the registers already need (fromRegs), and says why they count.
// Missing speed-ups and features this build does not know become warnings.
func (r *Report) sourceCPU(source *format.CPUFeatures, host format.CPUFeatures, fromRegs map[string]bool) (lacking []string) {
	if source == nil {
		return nil
	}
	cpu := "the CPU it was dumped on"
	if source.Model != "" {
		cpu += ", " + source.Model + ","
	}
	var hints, unknown []string
	for _, f := range source.Flags {
		if Has(host, f) || fromRegs[f] {
			continue
		}
		def, ok := flagByName(f)
		switch {
		case !ok:
			unknown = append(unknown, f)
		case def.hint:
			hints = append(hints, f)
		default:
			lacking = append(lacking, f)
		}
	}
	switch {
	case len(lacking) == 0:
	case len(fromRegs) == 0:
		r.reasons = append(r.reasons, cpu+" had them, and programs chose their code for it when they started")
	default:
		r.reasons = append(r.reasons, cpu+" also had "+strings.Join(lacking, " ")+", and programs chose their code for it when they started")
	}
	if len(hints) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("this host lacks %s, which %s had: code chosen for them still runs, only slower", strings.Join(hints, " "), cpu))
	}
	if len(unknown) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("cannot check CPU features that a newer crtool recorded: %s; if this host lacks them, restored processes may die with SIGILL", strings.Join(unknown, " ")))
	}
	return lacking
}

// processes names pids in messages: "process 1", "processes 1, 6".
func processes(pids []uint32) string {
	const show = 5
	var ids []string
	for i, p := range pids {
		if i == show {
			ids = append(ids, fmt.Sprintf("%d more", len(pids)-show))
			break
		}
		ids = append(ids, strconv.Itoa(int(p)))
	}
	if len(pids) == 1 {
		return "process " + ids[0]
	}
	return "processes " + strings.Join(ids, ", ")
}

// CheckImages is Check for the dump whose images set holds, against this
// host.
func CheckImages(set *criuimg.Set, source *format.CPUFeatures) (*Report, error) {
	states, err := Dumped(set)
	if err != nil {
		return nil, fmt.Errorf("read the checkpoint's register state: %w", err)
	}
	return Check(states, source, Host()), nil
}
