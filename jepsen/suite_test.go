package jepsen

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The suite's own end-to-end test: a build of keyd whose reads skip the
// read index (cluster/stale_reads.go) must be caught as not
// linearizable, and the correct build, under the same schedule, must
// pass. It needs root and ip netns, builds keyd twice with -race, and
// takes two to three minutes.

// moduleRoot finds the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside the module")
	}
	return filepath.Dir(gomod)
}

// build builds a package of the module into dir with extra flags.
func build(t *testing.T, root, out, pkg string, flags ...string) {
	t.Helper()
	args := append(append([]string{"build", "-o", out}, flags...), pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

func TestBrokenBuildIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real keyd processes for minutes; skipped in -short mode")
	}
	if err := CheckHost(DefaultSubnet); err != nil {
		t.Skipf("cannot run the suite here: %v", err)
	}
	if _, err := exec.Command("ip", "netns", "list").Output(); err != nil {
		t.Skipf("ip netns does not work here: %v", err)
	}
	root := moduleRoot(t)
	bin := t.TempDir()
	jepsenBin := filepath.Join(bin, "jepsen")
	correct := filepath.Join(bin, "keyd-race")
	broken := filepath.Join(bin, "keyd-race-stale-reads")
	build(t, root, jepsenBin, "./jepsen/cmd/jepsen")
	build(t, root, correct, "./cmd/keyd", "-race")
	build(t, root, broken, "./cmd/keyd", "-race", "-tags", "keyquorum_stale_reads")

	// Partitions leave a node alone long enough for it to miss swaps and
	// answer reads of the key's version from its stale state.
	run := func(keyd string) *Summary {
		t.Helper()
		cfg := Config{Seed: 2, Nemesis: NemesisPartition, Workloads: []string{WorkloadRegister},
			Duration: 30 * time.Second, Keyd: keyd, OutDir: filepath.Join(t.TempDir(), "run")}
		var progress strings.Builder
		s, err := RunIsolated(context.Background(), cfg, jepsenBin, &progress)
		if errors.Is(err, ErrBusy) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatalf("run with %s: %v\n%s", filepath.Base(keyd), err, progress.String())
		}
		var text strings.Builder
		s.Text(&text)
		t.Logf("%s:\n%s", filepath.Base(keyd), text.String())
		if s.Error != "" {
			t.Fatalf("run with %s could not be carried out: %s", filepath.Base(keyd), s.Error)
		}
		return s
	}

	s := run(broken)
	if !hasCheck(s, "linearizable") {
		t.Errorf("the build with stale reads was not caught: anomalies %v", s.Anomalies)
	}
	s = run(correct)
	if !s.Valid {
		t.Errorf("the correct build failed the same schedule: anomalies %v", s.Anomalies)
	}
}

func hasCheck(s *Summary, check string) bool {
	for _, a := range s.Anomalies {
		if a.Check == check {
			return true
		}
	}
	return false
}

// A crashed run leaves namespaces with processes in them; Teardown
// removes both, and does not mind finding nothing.
func TestTeardownRemovesLeftovers(t *testing.T) {
	if err := CheckHost(DefaultSubnet); err != nil {
		t.Skipf("cannot run the suite here: %v", err)
	}
	unlock, err := lockMachine()
	if err != nil {
		t.Skip(err)
	}
	defer unlock()
	ctx := context.Background()
	if names, _ := ownNamespaces(ctx); len(names) > 0 {
		t.Skipf("namespaces of another run exist: %v", names)
	}
	left := slotNS(9)
	if err := run(ctx, "ip", "netns", "add", left); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", left, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		run(ctx, "ip", "netns", "delete", left)
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	if err := Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		sleeper.Process.Kill()
		t.Error("the process in the leftover namespace survived teardown")
	}
	if names, _ := ownNamespaces(ctx); len(names) > 0 {
		t.Errorf("namespaces survived teardown: %v", names)
	}
	if err := Teardown(ctx); err != nil {
		t.Errorf("teardown with nothing to remove: %v", err)
	}
}
