package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestKeydDevPrintsWorkingExports(t *testing.T) {
	needBinaries(t)
	dir := t.TempDir()
	var stdout, stderr syncBuffer
	cmd := exec.Command(keydBin, "dev", "--dir", dir)
	cmd.Env = baseEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("keyd dev (pid %d) did not die of SIGKILL", cmd.Process.Pid)
		}
	})

	required := []string{"KEYQUORUM_ADDR", "KEYQUORUM_CACERT", "KEYQUORUM_CLIENT_CERT", "KEYQUORUM_CLIENT_KEY"}
	envFile := filepath.Join(dir, "env.sh")
	eventually(t, 3*time.Minute, "keyd dev writes "+envFile+" and prints the exports", func() (bool, string) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("keyd dev exited early (%v):\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if _, err := os.Stat(envFile); err != nil {
			return false, err.Error()
		}
		vars := parseExports(stdout.String())
		for _, k := range required {
			if vars[k] == "" {
				return false, "stdout so far:\n" + stdout.String()
			}
		}
		return true, ""
	})
	printed := parseExports(stdout.String())
	for _, k := range required {
		if !strings.Contains(stdout.String(), "export "+k+"=") {
			t.Errorf("keyd dev did not print export %s=...:\n%s", k, stdout.String())
		}
	}
	for _, k := range required[1:] {
		if _, err := os.Stat(printed[k]); err != nil {
			t.Errorf("%s names a file that is not there: %v", k, err)
		}
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range parseExports(string(b)) {
		if printed[k] != v {
			t.Errorf("%s says %s=%s, keyd dev printed %q", envFile, k, v, printed[k])
		}
	}

	// The printed lines are all keyctl needs.
	env := baseEnv()
	for k, v := range printed {
		env = append(env, k+"="+v)
	}
	st := keyctl(t, env, "cluster", "status")
	if st.code != 0 {
		t.Fatalf("cluster status with the printed exports: %v", st)
	}
	s, err := parseStatus(string(st.stdout))
	if err != nil {
		t.Fatalf("cluster status: %v in\n%s", err, st.stdout)
	}
	if len(s.members) != 3 || s.n != 3 {
		t.Errorf("cluster status lists %d members (n %d), want 3:\n%s", len(s.members), s.n, st.stdout)
	}
	secret := []byte("dev\x00secret\n")
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := keyctl(t, env, "key", "create", "dev", "--from-file", f); r.code != 0 {
		t.Fatalf("key create: %v", r)
	}
	if r := keyctl(t, env, "key", "get", "dev"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Fatalf("key get: want %q, got %v", secret, r)
	}

	// SIGTERM stops it, all three nodes with it.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Errorf("keyd dev exited with status %d after SIGTERM; stderr:\n%s", exit.ExitCode(), stderr.String())
		} else if err != nil {
			t.Errorf("keyd dev: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("keyd dev did not exit within 2 minutes of SIGTERM; stderr:\n%s", stderr.String())
	}
}
