package criu

import (
	"bufio"
	"os"
	"strings"
)

// harmless lists log errors that CRIU prints on every run on hosts where
// root lacks CAP_SYS_RESOURCE; quoting them would only hide the real cause.
var harmless = []string{
	"Can't setup RLIMIT_NOFILE for self",
}

// LogErrors returns the error lines of a CRIU log, at most max, first
// first: the first errors are the cause, later ones the unwinding. It
// returns nil when the log is unreadable.
func LogErrors(path string, max int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() && len(out) < max {
		line := strings.TrimSpace(sc.Text())
		if isError(line) && !isHarmless(line) && !seen[line] {
			seen[line] = true
			out = append(out, line)
		}
	}
	return out
}

func isError(line string) bool {
	return strings.Contains(line, "Error (") || strings.HasPrefix(strings.TrimSpace(line), "Error:")
}

func isHarmless(line string) bool {
	for _, h := range harmless {
		if strings.Contains(line, h) {
			return true
		}
	}
	return false
}

// errorMessage strips a CRIU log line down to its message:
// "(00.318030) 1: Error (criu/files-reg.c:2353): Can't open file www" gives
// "Can't open file www".
func errorMessage(line string) string {
	if i := strings.Index(line, "Error ("); i >= 0 {
		if j := strings.Index(line[i:], "): "); j >= 0 {
			return line[i+j+3:]
		}
	}
	return strings.TrimPrefix(line, "Error: ")
}
