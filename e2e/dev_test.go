package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/vocab"
)

// devRun is one running "keyd dev".
type devRun struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan error
	stopped        bool
	printed        map[string]string // the export lines it printed
}

var devRequired = []string{"KEYQUORUM_ADDR", "KEYQUORUM_CACERT", "KEYQUORUM_CLIENT_CERT", "KEYQUORUM_CLIENT_KEY", "KEYQUORUM_CLUSTER_KEY"}

// startDev runs keyd dev with args and waits until it has printed its
// export lines (and, with --dir, written env.sh).
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := &devRun{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	d.cmd = exec.Command(keydBin, append([]string{"dev"}, args...)...)
	d.cmd.Env = baseEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.stopped {
			return
		}
		d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("keyd dev (pid %d) did not die of SIGKILL", d.cmd.Process.Pid)
		}
	})
	eventually(t, 3*time.Minute, "keyd dev prints the exports", func() (bool, string) {
		select {
		case err := <-d.exited:
			d.stopped = true
			t.Fatalf("keyd dev exited early (%v):\nstdout:\n%s\nstderr:\n%s", err, d.stdout.String(), d.stderr.String())
		default:
		}
		vars := parseExports(d.stdout.String())
		for _, k := range devRequired {
			if vars[k] == "" {
				return false, "stdout so far:\n" + d.stdout.String()
			}
		}
		return true, ""
	})
	d.printed = parseExports(d.stdout.String())
	return d
}

// env is the environment keyctl gets from the printed lines alone.
func (d *devRun) env() []string {
	env := baseEnv()
	for k, v := range d.printed {
		env = append(env, k+"="+v)
	}
	return env
}

// stop sends SIGTERM and waits for a clean exit.
func (d *devRun) stop() {
	t := d.t
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.stopped = true
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Errorf("keyd dev exited with status %d after SIGTERM; stderr:\n%s", exit.ExitCode(), d.stderr.String())
		} else if err != nil {
			t.Errorf("keyd dev: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("keyd dev did not exit within 2 minutes of SIGTERM; stderr:\n%s", d.stderr.String())
	}
}

func TestKeydDevPrintsWorkingExports(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := t.TempDir()
	d := startDev(t, "--dir", dir)
	printed := d.printed
	for _, k := range devRequired[1:4] {
		if _, err := os.Stat(printed[k]); err != nil {
			t.Errorf("%s names a file that is not there: %v", k, err)
		}
	}
	envFile := filepath.Join(dir, "env.sh")
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
	env := d.env()
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
	d.stop()
}

// TestKeydDevResumesItsDir: keyd dev run a second time on the same --dir
// resumes the same cluster on the same ports with its keys, so the
// env.sh of the first run still works; while it is stopped, keyctl says
// it cannot reach the node (exit 8), not "no quorum".
func TestKeydDevResumesItsDir(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := t.TempDir()
	first := startDev(t, "--dir", dir)
	env := first.env()
	secret := []byte("kept across restarts\n")
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := keyctl(t, env, "key", "create", "kept", "--from-file", f); r.code != 0 {
		t.Fatalf("key create: %v", r)
	}
	first.stop()

	r := keyctl(t, env, "key", "get", "kept")
	checkOneLineError(t, r)
	if r.code != vocab.ExitUnreachable || !strings.Contains(r.stderr, "cannot reach node at "+first.printed["KEYQUORUM_ADDR"]) {
		t.Errorf("key get while keyd dev is stopped: want exit %d and \"cannot reach node at %s\", got %v", vocab.ExitUnreachable, first.printed["KEYQUORUM_ADDR"], r)
	}

	second := startDev(t, "--dir", dir)
	if !strings.Contains(second.stdout.String(), "dev cluster resumed") {
		t.Errorf("the second run does not say it resumed:\n%s", second.stdout.String())
	}
	for k, v := range first.printed {
		if second.printed[k] != v {
			t.Errorf("the second run printed %s=%q, the first %q", k, second.printed[k], v)
		}
	}
	// The first run's lines, not the second's: they are what a user kept.
	if r := keyctl(t, env, "key", "get", "kept"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Fatalf("key get after the restart: want %q, got %v", secret, r)
	}
	second.stop()

	// A different --nodes on the same directory is refused, with a reason.
	out, err := exec.Command(keydBin, "dev", "--dir", dir, "--nodes", "5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds a dev cluster of 3 nodes") {
		t.Errorf("keyd dev --nodes 5 on a 3-node dir: %v\n%s", err, out)
	}
}

// TestKeydDevWithoutDirIsTemporary: without --dir the data is temporary,
// and says so: the directory is gone after it exits.
func TestKeydDevWithoutDirIsTemporary(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	d := startDev(t)
	m := regexp.MustCompile(`data in (\S+) \(temporary`).FindStringSubmatch(d.stdout.String())
	if m == nil {
		t.Fatalf("keyd dev without --dir does not say its data is temporary:\n%s", d.stdout.String())
	}
	if _, err := os.Stat(m[1]); err != nil {
		t.Fatalf("its data directory: %v", err)
	}
	d.stop()
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after keyd dev exited (%v)", m[1], err)
	}
}
