package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsage covers what is decided before the benchmark starts (and so
// before it needs root).
func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"-h"}, 0, "usage: crtool-bench"},
		{[]string{"-sizes", "64,x"}, 2, "-sizes: bad size"},
		{[]string{"-runs", "0"}, 2, "-runs 0"},
		{[]string{"-tools", "crtool,docker"}, 2, `unknown tool "docker"`},
		{[]string{"-small", "nginx"}, 2, `-small "nginx"`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, stderr.String())
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}
