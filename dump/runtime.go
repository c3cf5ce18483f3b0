package dump

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// DefaultRuntimeRoots are the state directories of OCI runtimes that crtool
// searches for the container whose init it dumps.
var DefaultRuntimeRoots = []string{"/run/runc", "/run/crun"}

// runtimeState is what an OCI runtime knows about the container.
type runtimeState struct {
	Name   string // "runc" or "crun"
	ID     string
	Bundle string
}

// findRuntime looks through the runtime state directories for the container
// whose init is pid. It returns the zero value when none knows it: a
// container started some other way is still dumpable.
func findRuntime(pid int, roots []string) runtimeState {
	for _, root := range roots {
		entries, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range entries {
			dir := filepath.Join(root, e.Name())
			if rs, ok := runcState(dir, pid); ok {
				return rs
			}
			if rs, ok := crunState(dir, pid); ok {
				return rs
			}
		}
	}
	return runtimeState{}
}

func runcState(dir string, pid int) (runtimeState, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return runtimeState{}, false
	}
	var st struct {
		ID     string `json:"id"`
		Pid    int    `json:"init_process_pid"`
		Config struct {
			Labels []string `json:"labels"`
		} `json:"config"`
	}
	if json.Unmarshal(b, &st) != nil || st.Pid != pid {
		return runtimeState{}, false
	}
	rs := runtimeState{Name: "runc", ID: st.ID}
	for _, l := range st.Config.Labels {
		if v, ok := strings.CutPrefix(l, "bundle="); ok {
			rs.Bundle = v
		}
	}
	return rs, true
}

func crunState(dir string, pid int) (runtimeState, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return runtimeState{}, false
	}
	var st struct {
		Pid    int    `json:"pid"`
		Bundle string `json:"bundle"`
	}
	if json.Unmarshal(b, &st) != nil || st.Pid != pid {
		return runtimeState{}, false
	}
	return runtimeState{Name: "crun", ID: filepath.Base(dir), Bundle: st.Bundle}, true
}
