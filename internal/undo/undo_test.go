package undo

import (
	"errors"
	"strings"
	"testing"
)

func TestRunNewestFirstAndForgets(t *testing.T) {
	var s Stack
	var order []string
	for _, name := range []string{"a", "b", "c"} {
		s.Push("step "+name, func() error { order = append(order, name); return nil })
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
	if err := s.Run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := strings.Join(order, ""); got != "cba" {
		t.Fatalf("steps ran in order %q, want newest first (cba)", got)
	}
	if s.Len() != 0 {
		t.Fatalf("Len after Run = %d, want 0", s.Len())
	}
	// A second Run must not repeat what was undone.
	if err := s.Run(); err != nil || len(order) != 3 {
		t.Fatalf("second Run: %v, ran %q", err, order)
	}
}

func TestRunRunsEveryStepAndJoinsFailures(t *testing.T) {
	var s Stack
	errA, errC := errors.New("a broke"), errors.New("c broke")
	ran := map[string]bool{}
	s.Push("remove a", func() error { ran["a"] = true; return errA })
	s.Push("remove b", func() error { ran["b"] = true; return nil })
	s.Push("remove c", func() error { ran["c"] = true; return errC })
	err := s.Run()
	if len(ran) != 3 {
		t.Fatalf("ran %v, want every step despite failures", ran)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Fatalf("Run = %v, want both failures", err)
	}
	fs := Failures(err)
	if len(fs) != 2 {
		t.Fatalf("Failures = %v, want 2", fs)
	}
	// Newest first, each named after what it undoes.
	if fs[0].Error() != "undo remove c: c broke" || fs[1].Error() != "undo remove a: a broke" {
		t.Fatalf("Failures = %q, %q", fs[0], fs[1])
	}
	if !errors.Is(fs[0], errC) || !errors.Is(fs[1], errA) {
		t.Fatal("a failure lost its cause")
	}
}

func TestReleaseForgets(t *testing.T) {
	var s Stack
	s.Push("never", func() error { t.Fatal("a released step ran"); return nil })
	s.Release()
	if s.Len() != 0 {
		t.Fatalf("Len after Release = %d", s.Len())
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
}

func TestFailures(t *testing.T) {
	if Failures(nil) != nil {
		t.Fatal("Failures(nil) is not empty")
	}
	one := errors.New("alone")
	if fs := Failures(one); len(fs) != 1 || !errors.Is(fs[0], one) {
		t.Fatalf("Failures(single) = %v", fs)
	}
	a, b := errors.New("a"), errors.New("b")
	if fs := Failures(errors.Join(a, b)); len(fs) != 2 || !errors.Is(fs[0], a) || !errors.Is(fs[1], b) {
		t.Fatalf("Failures(joined) = %v", fs)
	}
}

func TestPushRecordJournals(t *testing.T) {
	var got [][]Record
	s := Stack{Journal: func(r []Record) error { got = append(got, r); return nil }}
	s.Push("no record", func() error { return nil })
	if err := s.PushRecord("thaw x", Record{Kind: "thaw", Path: "x"}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0]) != 1 || got[0][0].What != "thaw x" || got[0][0].Path != "x" {
		t.Fatalf("journal got %+v", got)
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[1]) != 0 {
		t.Fatalf("after Run the journal got %+v, want it emptied", got)
	}
	s.Journal = func([]Record) error { return errors.New("disk full") }
	if err := s.PushRecord("x", Record{Kind: "remove"}, func() error { return nil }); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a failed journal write = %v", err)
	}
}
