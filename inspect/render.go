package inspect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/units"
)

// RenderJSON writes the report as indented JSON, the same for every run on
// the same checkpoint and options (map keys are sorted).
func RenderJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// RenderOptions tune the tree view.
type RenderOptions struct {
	// Color adds ANSI colors; the caller decides (a terminal, no NO_COLOR).
	Color bool
}

// RenderTree writes the report as a tree that reads at a glance: one
// branch per section, values aligned within each branch. Everything that
// comes from the checkpoint is printed with control characters escaped.
func RenderTree(w io.Writer, r *Report, opts RenderOptions) error {
	bw := bufio.NewWriter(w)
	root := treeOf(r)
	p := &printer{w: bw, color: opts.Color}
	p.line(root.style, root.key)
	p.children(root, "")
	return bw.Flush()
}

// style is how a node's label is colored.
type style int

const (
	plain style = iota
	header
	proc
	note
)

var ansi = map[style]string{header: "\x1b[1m", proc: "\x1b[36m", note: "\x1b[33m"}

const ansiReset = "\x1b[0m"

// node is a line of the tree: a label alone, "key: value" aligned with its
// siblings, or a row of columns aligned with its siblings.
type node struct {
	key      string
	value    string
	cols     []string
	style    style
	children []*node
}

func (n *node) add(key, value string) *node {
	c := &node{key: key, value: value}
	n.children = append(n.children, c)
	return c
}

func (n *node) branch(key string) *node {
	c := &node{key: key, style: header}
	n.children = append(n.children, c)
	return c
}

func (n *node) row(cols ...string) *node {
	c := &node{cols: cols}
	n.children = append(n.children, c)
	return c
}

type printer struct {
	w     *bufio.Writer
	color bool
}

func (p *printer) line(st style, s string, rest ...string) {
	if p.color && ansi[st] != "" {
		s = ansi[st] + s + ansiReset
	}
	p.w.WriteString(strings.TrimRight(s+strings.Join(rest, ""), " "))
	p.w.WriteByte('\n')
}

func (p *printer) children(n *node, prefix string) {
	keyWidth := 0
	var colWidths []int
	for _, c := range n.children {
		if c.value != "" {
			keyWidth = max(keyWidth, width(c.key)+1)
		}
		for i, col := range c.cols {
			if i == len(colWidths) {
				colWidths = append(colWidths, 0)
			}
			colWidths[i] = max(colWidths[i], width(col))
		}
	}
	for i, c := range n.children {
		branch, next := "├── ", "│   "
		if i == len(n.children)-1 {
			branch, next = "└── ", "    "
		}
		switch {
		case c.cols != nil:
			var b strings.Builder
			for j, col := range c.cols {
				b.WriteString(col)
				if j < len(c.cols)-1 {
					b.WriteString(strings.Repeat(" ", colWidths[j]-width(col)+2))
				}
			}
			p.line(plain, prefix+branch, b.String())
		case c.value != "":
			p.line(c.style, prefix+branch+pad(c.key+":", keyWidth), " ", c.value)
		default:
			p.line(c.style, prefix+branch+c.key)
		}
		p.children(c, prefix+next)
	}
}

func width(s string) int { return utf8.RuneCountInString(s) }

func pad(s string, n int) string {
	if w := width(s); w < n {
		return s + strings.Repeat(" ", n-w)
	}
	return s
}

// clean makes a string from the checkpoint safe to print: control
// characters (which could drive the terminal) and invalid UTF-8 are
// escaped by quoting the whole string.
func clean(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}

// treeOf lays the report out as a tree.
func treeOf(r *Report) *node {
	root := &node{key: clean(firstOf(r.Container.Name, shortID(r.Container.ID), r.Source.Path)), style: header}
	summary(root, r)
	if len(r.Processes) > 0 {
		processTree(root.branch("Process tree"), r.Processes)
	}
	if len(r.External) > 0 {
		ext := root.branch("External descriptors (crtool.json)")
		for _, e := range r.External {
			ext.row(clean(e.Key), e.Kind, clean(e.Path), "used by "+strings.Join(e.Users, ", "))
		}
	}
	if r.Mounts != nil {
		mountTree(root, r.Mounts)
	}
	if r.Network != nil {
		networkTree(root.branch("Network"), r.Network)
	}
	if len(r.Notes) > 0 {
		notes := root.branch("Notes")
		for _, n := range r.Notes {
			notes.children = append(notes.children, &node{key: clean(n), style: note})
		}
	}
	return root
}

func summary(root *node, r *Report) {
	ct := r.Container
	engine := ct.Engine
	switch {
	case ct.Manager == "":
	case ct.Engine == EngineCrtool:
		engine += " (the container was managed by " + clean(ct.Manager) + ")"
	default:
		engine += " (" + clean(ct.Manager) + ")"
	}
	root.add("Engine", engine)
	if ct.ID != "" {
		root.add("ID", clean(ct.ID))
	}
	if ct.Pod != "" {
		root.add("Pod", clean(strings.TrimPrefix(ct.Namespace+"/"+ct.Pod, "/")))
	}
	if ct.Image != "" {
		img := clean(ct.Image)
		if ct.ImageID != "" {
			img += " (" + shortID(clean(ct.ImageID)) + ")"
		}
		root.add("Image", img)
	}
	if ct.Runtime != "" {
		root.add("Runtime", clean(ct.Runtime))
	}
	if len(ct.Command) > 0 {
		root.add("Command", strings.Join(cleanAll(ct.Command), " "))
	}
	if ct.Created != nil {
		root.add("Created", ct.Created.Format(time.RFC3339))
	}
	if ct.Checkpointed != nil {
		v := ct.Checkpointed.Format(time.RFC3339)
		if ct.CheckpointedFrom != "" {
			v += " (from " + ct.CheckpointedFrom + ")"
		}
		root.add("Checkpointed", v)
	}
	if ct.IP != "" {
		root.add("IP", clean(ct.IP))
	}
	if ct.MAC != "" {
		root.add("MAC", clean(ct.MAC))
	}
	root.add("CRIU", criuLine(r.CRIU))
	src := clean(r.Source.Path)
	if r.Source.Kind == SourceArchive {
		src = clean(filepath.Base(r.Source.Path))
		if r.Source.Path == "-" {
			src = "standard input"
		}
		src += ", " + r.Source.Compression
		if r.Sizes.Archive != nil {
			src += ", " + units.Bytes(*r.Sizes.Archive)
		}
		root.add("Archive", src)
	} else {
		root.add("Directory", src+" ("+map[string]string{SourceDirectory: "unpacked archive", SourceImages: "CRIU images"}[r.Source.Kind]+")")
	}
	sizeTree(root, r)
	if d := r.CRIU.DumpStats; d != nil {
		st := root.branch("CRIU dump statistics")
		st.add("Freezing time", us(int64(d.FreezingTime)))
		st.add("Frozen time", us(int64(d.FrozenTime)))
		st.add("Memdump time", us(int64(d.MemdumpTime)))
		st.add("Memwrite time", us(int64(d.MemwriteTime)))
		st.add("Pages scanned", strconv.FormatUint(d.PagesScanned, 10))
		st.add("Pages written", strconv.FormatUint(d.PagesWritten, 10))
		if d.PagesSkippedParent > 0 {
			st.add("Pages in parent", strconv.FormatUint(d.PagesSkippedParent, 10))
		}
		if d.PagesLazy > 0 {
			st.add("Pages lazy", strconv.FormatUint(d.PagesLazy, 10))
		}
	}
	if c := r.Crtool; c != nil {
		crtoolTree(root, c)
	}
	if len(ct.Annotations) > 0 {
		ann := root.branch("Annotations")
		for _, k := range sortedKeys(ct.Annotations) {
			ann.add(clean(k), clean(ct.Annotations[k]))
		}
	}
}

func criuLine(c CRIU) string {
	parts := []string{"version " + firstOf(clean(c.Version), "not recorded")}
	if c.ImageVersion != 0 {
		parts = append(parts, fmt.Sprintf("images v%d", c.ImageVersion))
	}
	if c.LSM != "" {
		parts = append(parts, "LSM "+c.LSM)
	}
	return strings.Join(parts, ", ")
}

func sizeTree(root *node, r *Report) {
	s := r.Sizes
	ckpt := "not read"
	if s.Checkpoint != nil {
		ckpt = units.Bytes(*s.Checkpoint)
	}
	n := root.add("Checkpoint size", ckpt)
	switch {
	case s.MemoryPages != nil:
		n.add("Memory pages", units.Bytes(*s.MemoryPages))
	case s.MemoryPagesEstimate != nil:
		n.add("Memory pages", "not read; about "+units.Bytes(*s.MemoryPagesEstimate)+" from CRIU's statistics (--sizes reads them)")
	default:
		n.add("Memory pages", "not read (--sizes reads them)")
	}
	if s.RootfsDiff != nil || s.DeletedFiles > 0 {
		v := "none"
		if s.RootfsDiff != nil {
			v = units.Bytes(*s.RootfsDiff)
		}
		if s.DeletedFiles > 0 {
			v += fmt.Sprintf(", %d deleted %s", s.DeletedFiles, plural(s.DeletedFiles, "file", "files"))
		}
		root.add("Root FS diff", v)
	}
}

func crtoolTree(root *node, c *Crtool) {
	n := root.branch("crtool")
	n.add("Written by", clean(c.CreatedBy))
	if c.Host != "" {
		n.add("Host", clean(c.Host))
	}
	if c.Kernel != "" {
		n.add("Kernel", clean(c.Kernel))
	}
	if c.CPU != nil {
		model := c.CPU.Model
		if model == "" {
			model = c.CPU.Arch
		}
		n.add("CPU", fmt.Sprintf("%s, XCR0 %#x", clean(model), c.CPU.XCR0))
		n.add("CPU features", clean(strings.Join(c.CPU.Flags, " ")))
	}
	if c.PID != 0 {
		n.add("Host PID", strconv.Itoa(c.PID))
	}
	if c.Root != "" {
		n.add("Root", clean(c.Root))
	}
	var opts []string
	if c.LeaveRunning {
		opts = append(opts, "--leave-running")
	}
	if c.TCPEstablished {
		opts = append(opts, "--tcp-established")
	}
	if len(opts) > 0 {
		n.add("Options", strings.Join(opts, " "))
	}
	n.add("Freezing time", us(c.Stats.FreezingTime))
	n.add("Frozen time", us(c.Stats.FrozenTime))
	n.add("CRIU time", us(c.Stats.CRIUTime))
	if c.Stats.WriteTime > 0 {
		n.add("Archive write time", us(c.Stats.WriteTime))
	}
	n.add("Total time", us(c.Stats.TotalTime))
	if len(c.Namespaces) > 0 {
		ns := n.branch("Namespaces")
		for _, k := range sortedKeys(c.Namespaces) {
			ns.add(clean(k), clean(c.Namespaces[k]))
		}
	}
	if len(c.Cgroups) > 0 {
		cg := n.branch("Cgroups")
		for _, k := range sortedKeys(c.Cgroups) {
			cg.add(firstOf(clean(k), "unified"), clean(c.Cgroups[k]))
		}
	}
}

// processTree nests processes under their parents; processes whose parent
// is not in the list (the root, or a hostile tree) start their own tree.
func processTree(n *node, procs []Process) {
	byPID := map[uint32]bool{}
	children := map[uint32][]int{}
	for i, p := range procs {
		byPID[p.PID] = true
		children[p.PPID] = append(children[p.PPID], i)
	}
	done := map[uint32]bool{}
	var add func(parent *node, i int)
	add = func(parent *node, i int) {
		p := procs[i]
		if done[p.PID] {
			return
		}
		done[p.PID] = true
		pn := processNode(p)
		parent.children = append(parent.children, pn)
		for _, j := range children[p.PID] {
			add(pn, j)
		}
	}
	for i, p := range procs {
		if !byPID[p.PPID] || p.PPID == p.PID {
			add(n, i)
		}
	}
	// Whatever is left sits in a parent cycle.
	for i := range procs {
		add(n, i)
	}
}

func processNode(p Process) *node {
	label := fmt.Sprintf("[%d] %s", p.PID, clean(p.Comm))
	var extra []string
	if p.State != StateAlive {
		extra = append(extra, p.State)
	}
	if p.UID != nil && *p.UID != 0 {
		extra = append(extra, fmt.Sprintf("uid %d", *p.UID))
	}
	if len(p.Threads) > 1 {
		extra = append(extra, fmt.Sprintf("%d threads", len(p.Threads)))
	}
	if len(extra) > 0 {
		label += " (" + strings.Join(extra, ", ") + ")"
	}
	n := &node{key: label, style: proc}
	if len(p.Cmdline) > 0 {
		n.add("Cmdline", strings.Join(cleanAll(p.Cmdline), " "))
	}
	if len(p.Env) > 0 {
		env := n.branch("Environment")
		for _, e := range p.Env {
			env.children = append(env.children, &node{key: clean(e)})
		}
	}
	if len(p.Files) > 0 || p.Cwd != "" {
		files := n.branch("Open files")
		for _, f := range p.Files {
			path := clean(f.Path)
			if f.Detail != "" {
				path += "  " + clean(f.Detail)
			}
			if f.External {
				path += "  (outside the container)"
			}
			files.row(strconv.FormatUint(uint64(f.Fd), 10), f.Type, firstOf(f.Mode, "-"), path)
		}
		files.row("cwd", "", "", clean(p.Cwd))
		files.row("root", "", "", clean(p.Root))
	}
	if len(p.Sockets) > 0 {
		sks := n.branch("Sockets")
		for _, s := range p.Sockets {
			kind := s.Proto
			if s.Family == "unix" || kind == "" {
				kind = s.Family + " " + s.Type
			}
			addr := clean(s.Local)
			switch {
			case s.Family == "unix":
				addr = firstOf(addr, "unnamed")
				if s.Peer != 0 {
					addr += fmt.Sprintf(" -> socket:[%d]", s.Peer)
				}
			case s.Remote != "":
				addr += " -> " + clean(s.Remote)
			}
			if s.InQueue != nil && s.OutQueue != nil {
				addr += fmt.Sprintf("  (queued: %s in, %s out)", units.Bytes(int64(*s.InQueue)), units.Bytes(int64(*s.OutQueue)))
			}
			sks.row(strconv.FormatUint(uint64(s.Fd), 10), kind, firstOf(s.State, "-"), addr)
		}
	}
	if m := p.Memory; m != nil {
		v := fmt.Sprintf("%s mapped, %s dumped to %s", units.Bytes(int64(m.Mapped)), units.Bytes(int64(m.Dumped)), filepath.Base(m.PagesImage))
		if m.Exe != "" {
			v += ", exe " + clean(m.Exe)
		}
		mem := n.add("Memory", v)
		mem.style = header
		for _, v := range m.Mappings {
			mem.row(v.Start+"-"+v.End, v.Prot, units.Bytes(int64(v.Size)), "dumped "+units.Bytes(int64(v.Dumped)), clean(v.Name))
		}
	}
	return n
}

func mountTree(root *node, m *Mounts) {
	if len(m.Spec) > 0 {
		n := root.branch("Mounts (spec.dump)")
		for _, s := range m.Spec {
			n.row(clean(s.Destination), clean(s.Type), clean(s.Source))
		}
	}
	if len(m.CRIU) > 0 {
		n := root.branch("Mounts (CRIU mountpoints)")
		for _, s := range m.CRIU {
			var flags []string
			if s.ReadOnly {
				flags = append(flags, "ro")
			}
			if s.ExternalKey != "" {
				flags = append(flags, "external "+clean(s.ExternalKey))
			}
			src := clean(s.Source)
			if s.Root != "" && s.Root != "/" {
				src += ":" + clean(s.Root)
			}
			n.row(clean(s.Mountpoint), clean(s.FSType), firstOf(strings.Join(flags, ", "), "-"), src)
		}
	}
	if len(m.External) > 0 {
		n := root.branch("External mounts (crtool.json)")
		for _, e := range m.External {
			src := clean(e.Source)
			if e.Content != "" {
				src += " (private: " + clean(e.Content) + " in the archive)"
			}
			n.row(clean(e.Key), clean(e.Kind), src)
		}
	}
	if len(m.BindMounts) > 0 {
		n := root.branch("Bind mounts (bind.mounts)")
		for _, b := range m.BindMounts {
			n.row(clean(b.Destination), clean(b.FileType), clean(b.Source))
		}
	}
}

func networkTree(n *node, net *Network) {
	if net.CRIUExternalKey != "" {
		n.add("Namespace", "external to CRIU ("+clean(net.CRIUExternalKey)+"): the engine recreates it")
	}
	for _, name := range sortedKeys(net.Podman) {
		pn := n.branch("Podman network " + clean(name))
		for _, ifname := range sortedKeys(net.Podman[name].Interfaces) {
			iface := net.Podman[name].Interfaces[ifname]
			for _, s := range iface.Subnets {
				v := clean(s.IPNet)
				if s.Gateway != "" {
					v += " via " + clean(s.Gateway)
				}
				pn.row(clean(ifname), v, clean(iface.MAC))
			}
			if len(iface.Subnets) == 0 {
				pn.row(clean(ifname), "", clean(iface.MAC))
			}
		}
	}
	if len(net.Ports) > 0 {
		pn := n.branch("Published ports")
		for _, p := range net.Ports {
			pn.row(clean(p.String()))
		}
	}
	cfg := net.Captured
	if cfg == nil {
		if net.CRIUExternalKey == "" && len(net.Podman) == 0 {
			n.children = append(n.children, &node{key: "nothing recorded", style: note})
		}
		return
	}
	if len(cfg.Links) > 0 {
		links := n.branch("Links (captured by crtool)")
		for _, l := range cfg.Links {
			kind := l.Kind
			if l.Driver != "" {
				kind += "/" + l.Driver
			}
			if l.Peer != nil {
				kind += " peer " + clean(l.Peer.Name)
				if l.Peer.Netns != "" {
					kind += "@" + clean(l.Peer.Netns)
				}
			}
			mtu := ""
			if l.MTU > 0 {
				mtu = fmt.Sprintf("mtu %d", l.MTU)
			}
			links.row(clean(l.Name), kind, firstOf(clean(l.MAC), "-"), firstOf(mtu, "-"), strings.Join(l.Flags, ","))
		}
	}
	if len(cfg.Addrs) > 0 {
		addrs := n.branch("Addresses")
		for _, a := range cfg.Addrs {
			auto := ""
			if a.Auto {
				auto = "(kernel)"
			}
			addrs.row(clean(a.Link), clean(a.CIDR), a.Scope, auto)
		}
	}
	if len(cfg.Routes) > 0 {
		routes := n.branch("Routes")
		for _, rt := range cfg.Routes {
			dst := firstOf(clean(rt.Dst), "default")
			via := ""
			if rt.Gateway != "" {
				via = "via " + clean(rt.Gateway)
			}
			routes.row(dst, via, "dev "+clean(rt.Link), fmt.Sprintf("table %d", rt.Table))
		}
	}
	if len(cfg.Rules) > 0 {
		rules := n.branch("Rules")
		for _, ru := range cfg.Rules {
			rules.row(strconv.Itoa(ru.Priority), firstOf(clean(ru.Src), "all"), fmt.Sprintf("table %d", ru.Table))
		}
	}
	if len(cfg.Neighbors) > 0 {
		neigh := n.branch("Neighbors")
		for _, ne := range cfg.Neighbors {
			neigh.row(clean(ne.IP), clean(ne.MAC), "dev "+clean(ne.Link))
		}
	}
	if len(cfg.Sockets) > 0 {
		sks := n.branch("Sockets at capture time")
		socks := append([]format.Socket(nil), cfg.Sockets...)
		sort.SliceStable(socks, func(i, j int) bool { return socks[i].Local < socks[j].Local })
		for _, s := range socks {
			sks.row(s.Proto, s.State, clean(s.Local), clean(s.Remote))
		}
	}
	for _, u := range cfg.Unsupported {
		n.children = append(n.children, &node{key: "not replayed: " + clean(u), style: note})
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
