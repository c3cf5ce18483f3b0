package inspect

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"google.golang.org/protobuf/encoding/protowire"
)

// pagePresent is the flag of a pagemap entry whose pages are in the pages
// image (CRIU's PE_PRESENT); others are in a parent dump or never touched.
const pagePresent = 1 << 2

const (
	// maxStringArea bounds how much of a process's argument or environment
	// area inspect reads; Linux allows a few MiB, real ones are far smaller.
	maxStringArea = 1 << 20
	// maxCapture bounds the pages held for --cmdline and --env together.
	maxCapture = 64 << 20
)

// run is a pagemap entry: nr pages from vaddr, stored at off in the pages
// image when present.
type run struct {
	vaddr   uint64
	nr      uint64
	present bool
	off     uint64
}

// procMem is what mm-PID.img and pagemap-PID.img say about a process's
// memory.
type procMem struct {
	mm    *mm.MmEntry
	pages string // the member holding its pages, checkpoint/pages-N.img
	runs  []run  // sorted by vaddr
}

// procMem decodes the memory images of pid, once. ok is false when the
// checkpoint has no mm image for it.
func (c *contents) procMem(pid uint32) (*procMem, bool, error) {
	if c.mems == nil {
		c.mems = map[uint32]*procMem{}
	}
	if pm, ok := c.mems[pid]; ok {
		return pm, pm != nil, nil
	}
	mmName := fmt.Sprintf("%smm-%d.img", checkpointPrefix, pid)
	pmName := fmt.Sprintf("%spagemap-%d.img", checkpointPrefix, pid)
	if !c.has(mmName) || !c.has(pmName) {
		c.mems[pid] = nil
		return nil, false, nil
	}
	msg, err := c.firstEntry(mmName, mmImage)
	if err != nil {
		return nil, false, err
	}
	entries, err := c.image(pmName, pagemapImage)
	if err != nil {
		return nil, false, err
	}
	if len(entries) == 0 {
		return nil, false, corruptImage(pmName, "no pagemap head")
	}
	head, ok := entries[0].(*pagemap.PagemapHead)
	if !ok {
		return nil, false, corruptImage(pmName, "first entry is not a pagemap head")
	}
	pm := &procMem{mm: msg.(*mm.MmEntry), pages: fmt.Sprintf("%spages-%d.img", checkpointPrefix, head.GetPagesId())}
	ps := uint64(c.pageSize)
	var off uint64
	for i, e := range entries[1:] {
		pe := e.(*pagemap.PagemapEntry)
		present := !pe.GetInParent()
		if pe.Flags != nil {
			present = pe.GetFlags()&pagePresent != 0
		}
		r := run{vaddr: pe.GetVaddr(), nr: nrPages(pe), present: present, off: off}
		if r.vaddr%ps != 0 || r.nr > (1<<64-1-r.vaddr)/ps {
			return nil, false, corruptImage(pmName, "entry %d: %d pages at 0x%x do not fit the address space", i+1, r.nr, r.vaddr)
		}
		if present {
			// Saturates rather than wraps; offsets past the pages
			// image are refused when read.
			if r.nr*ps > 1<<62-off {
				off = 1 << 62
			} else {
				off += r.nr * ps
			}
		}
		pm.runs = append(pm.runs, r)
	}
	sort.SliceStable(pm.runs, func(i, j int) bool { return pm.runs[i].vaddr < pm.runs[j].vaddr })
	for i := 1; i < len(pm.runs); i++ {
		// CRIU never writes overlapping entries; refusing them keeps
		// the lookups below simple and linear.
		if prev := pm.runs[i-1]; pm.runs[i].vaddr < prev.vaddr+prev.nr*ps {
			return nil, false, corruptImage(pmName, "entries at 0x%x and 0x%x overlap", prev.vaddr, pm.runs[i].vaddr)
		}
	}
	c.mems[pid] = pm
	return pm, true, nil
}

// pagemapNrPages is the field number of pagemap_entry's 64-bit nr_pages,
// which CRIU 4 writes instead of the 32-bit one (then compat_nr_pages, 0).
// go-criu v7's pagemap.proto predates it, so it arrives as an unknown field.
const pagemapNrPages = 5

// nrPages returns a pagemap entry's page count in either encoding.
func nrPages(pe *pagemap.PagemapEntry) uint64 {
	b := pe.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == pagemapNrPages && typ == protowire.VarintType {
			if v, m := protowire.ConsumeVarint(b); m > 0 {
				return v
			}
			break
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			break
		}
		b = b[n:]
	}
	return uint64(pe.GetNrPages())
}

// find returns the run holding the page at addr.
func (pm *procMem) find(addr uint64, pageSize uint64) (run, bool) {
	i := sort.Search(len(pm.runs), func(i int) bool {
		r := pm.runs[i]
		return r.vaddr+r.nr*pageSize > addr
	})
	if i < len(pm.runs) && pm.runs[i].vaddr <= addr {
		return pm.runs[i], true
	}
	return run{}, false
}

// dumped returns how many bytes of [start, end) the pages image holds.
func (pm *procMem) dumped(start, end, pageSize uint64) uint64 {
	var n uint64
	i := sort.Search(len(pm.runs), func(i int) bool {
		r := pm.runs[i]
		return r.vaddr+r.nr*pageSize > start
	})
	for ; i < len(pm.runs) && pm.runs[i].vaddr < end; i++ {
		r := pm.runs[i]
		lo, hi := max(r.vaddr, start), min(r.vaddr+r.nr*pageSize, end)
		if r.present && lo < hi {
			n += hi - lo
		}
	}
	return n
}

// eachPage calls fn for each page of [start, end) with the part of the
// range in it; the address space's last page does not wrap around.
func eachPage(start, end, pageSize uint64, fn func(page, lo, hi uint64) error) error {
	for page := start &^ (pageSize - 1); page < end; {
		next := page + pageSize
		if next < page {
			next = end
		}
		if err := fn(page, max(page, start), min(next, end)); err != nil {
			return err
		}
		page = next
	}
	return nil
}

// area returns the bounds of a process's argument (env false) or
// environment area, cut to maxStringArea; cut tells whether it was.
func (pm *procMem) area(env bool) (start, end uint64, cut bool) {
	start, end = pm.mm.GetMmArgStart(), pm.mm.GetMmArgEnd()
	if env {
		start, end = pm.mm.GetMmEnvStart(), pm.mm.GetMmEnvEnd()
	}
	if end < start {
		return start, start, true
	}
	if end-start > maxStringArea {
		return start, start + maxStringArea, true
	}
	return start, end, false
}

// pagePlan lists the page offsets of each pages image that --cmdline and
// --env need.
type pagePlan struct {
	offsets map[string][]int64
}

// planPages works out which pages hold the argument and environment areas
// of every process whose memory images were read.
func planPages(c *contents) (*pagePlan, error) {
	plan := &pagePlan{offsets: map[string][]int64{}}
	ps := uint64(c.pageSize)
	want := map[string]map[int64]bool{}
	var total int64
	for _, name := range c.names("mm-", ".img") {
		pid, ok := baseID(name, "mm-")
		if !ok {
			continue
		}
		pm, ok, err := c.procMem(pid)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, env := range []bool{false, true} {
			start, end, _ := pm.area(env)
			eachPage(start, end, ps, func(page, _, _ uint64) error {
				r, ok := pm.find(page, ps)
				if !ok || !r.present {
					return nil
				}
				off := int64(r.off + (page - r.vaddr))
				if want[pm.pages] == nil {
					want[pm.pages] = map[int64]bool{}
				}
				if !want[pm.pages][off] && total+int64(ps) <= maxCapture {
					want[pm.pages][off] = true
					total += int64(ps)
				}
				return nil
			})
		}
	}
	for name, set := range want {
		for off := range set {
			plan.offsets[name] = append(plan.offsets[name], off)
		}
		sort.Slice(plan.offsets[name], func(i, j int) bool { return plan.offsets[name][i] < plan.offsets[name][j] })
	}
	return plan, nil
}

// members lists the pages images the plan reads from.
func (p *pagePlan) members() []string {
	var out []string
	for name := range p.offsets {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// capture keeps the planned pages of the pages image name, read from r
// (size bytes) in one forward pass.
func (p *pagePlan) capture(c *contents, name string, size int64, r io.Reader) error {
	ps := int64(c.pageSize)
	var pos int64
	for _, off := range p.offsets[name] {
		if off > size-ps {
			break // past the end: reported when the area is read
		}
		if s, ok := r.(io.Seeker); ok {
			if _, err := s.Seek(off, io.SeekStart); err != nil {
				return memberErr(name, err)
			}
		} else if _, err := io.CopyN(io.Discard, r, off-pos); err != nil {
			return memberErr(name, err)
		}
		page := make([]byte, ps)
		if _, err := io.ReadFull(r, page); err != nil {
			return memberErr(name, err)
		}
		if c.pages[name] == nil {
			c.pages[name] = map[int64][]byte{}
		}
		c.pages[name][off] = page
		pos = off + ps
	}
	return nil
}

// readArea returns the bytes of a process's argument or environment area.
// Pages the dump left out (never touched) read as zeros, as crit's do. A
// note explains why it could not be read.
func (c *contents) readArea(pid uint32, env bool) (b []byte, cut bool, note string, err error) {
	what := "command line"
	if env {
		what = "environment"
	}
	pm, ok, err := c.procMem(pid)
	if err != nil {
		return nil, false, "", err
	}
	if !ok {
		return nil, false, fmt.Sprintf("%s of pid %d not read: no mm-%d.img or pagemap-%d.img", what, pid, pid, pid), nil
	}
	pages, ok := c.members[pm.pages]
	if !ok {
		return nil, false, fmt.Sprintf("%s of pid %d not read: %s is not in the checkpoint", what, pid, pm.pages), nil
	}
	ps := uint64(c.pageSize)
	start, end, cut := pm.area(env)
	errTooMuch := errors.New("too many pages")
	err = eachPage(start, end, ps, func(page, lo, hi uint64) error {
		r, ok := pm.find(page, ps)
		if !ok || !r.present {
			b = append(b, make([]byte, hi-lo)...)
			return nil
		}
		off := r.off + (page - r.vaddr)
		if off > uint64(pages.size) || uint64(pages.size)-off < ps {
			return corruptImage(fmt.Sprintf("%spagemap-%d.img", checkpointPrefix, pid),
				"the page at 0x%x lies past the end of %s (%d bytes)", page, pm.pages, pages.size)
		}
		data, ok := c.pages[pm.pages][int64(off)]
		if !ok {
			return errTooMuch
		}
		b = append(b, data[lo-page:hi-page]...)
		return nil
	})
	if errors.Is(err, errTooMuch) {
		return nil, false, fmt.Sprintf("%s of pid %d not read: more than %d bytes of pages needed", what, pid, maxCapture), nil
	}
	if err != nil {
		return nil, false, "", err
	}
	return b, cut, "", nil
}
