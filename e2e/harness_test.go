package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// The binaries TestMain builds, and the module's root directory.
var (
	root      string
	keydBin   string
	keyctlBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(slowExitEnv); addr != "" {
		slowExit(addr) // this process is a stand-in node (stop_test.go)
	}
	flag.Parse()
	var dir string
	if !testing.Short() {
		var err error
		if dir, err = os.MkdirTemp("", "keyquorum-e2e-bin-"); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		buildErr = build(dir)
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// build finds the module root and builds keyd and keyctl into dir.
func build(dir string) error {
	if _, err := exec.LookPath("bash"); err != nil {
		return fmt.Errorf("these tests need bash to run deploy/local/cluster: %w", err)
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("go env GOMOD: not inside the module")
	}
	root = filepath.Dir(gomod)
	// keyd with the race detector: a node's log is checked for data race
	// reports when its cluster is torn down.
	for _, args := range [][]string{{"-race", "./cmd/keyd"}, {"./cmd/keyctl"}} {
		cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, args...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %v\n%s", args, err, out)
		}
	}
	keydBin, keyctlBin = filepath.Join(dir, "keyd"), filepath.Join(dir, "keyctl")
	return nil
}

// needBinaries skips in -short mode and fails if the build failed.
func needBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with real processes; skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// baseEnv is this process's environment without any KEYQUORUM_* variable
// or KEYD/KEYCTL, so that nothing of the caller's leaks into a test.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KEYQUORUM_") || k == "KEYD" || k == "KEYCTL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// withVar returns env with k set to v (replacing any k), or without k
// if v is "".
func withVar(env []string, k, v string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name != k {
			out = append(out, kv)
		}
	}
	if v != "" {
		out = append(out, k+"="+v)
	}
	return out
}

// parseExports reads the "export K=V" lines of a shell snippet.
func parseExports(text string) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(rest), "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vars[k] = v
	}
	return vars
}

// result is what a process did.
type result struct {
	args   []string
	stdout []byte
	stderr string
	code   int  // exit status; -1 if it did not exit by itself
	hung   bool // killed at the deadline
}

func (r result) String() string {
	s := fmt.Sprintf("%q: exit %d, stdout %q, stderr %q", r.args, r.code, truncate(r.stdout), r.stderr)
	if r.hung {
		s += " (killed: it did not return before the deadline)"
	}
	return s
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// stderrLines are the non-empty lines of r's stderr.
func (r result) stderrLines() []string {
	var lines []string
	for l := range strings.SplitSeq(r.stderr, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// run runs a program to completion or until timeout and returns what it
// did. A failure to start it fails the test.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) result {
	t.Helper()
	return runIn(t, timeout, env, nil, name, args...)
}

// runIn is run with stdin.
func runIn(t *testing.T, timeout time.Duration, env []string, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: append([]string{filepath.Base(name)}, args...), stdout: stdout.Bytes(), stderr: stderr.String(), code: -1}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.hung = true
	case err == nil:
		r.code = 0
	case errors.As(err, &exit) && exit.Exited():
		r.code = exit.ExitCode()
	default:
		t.Fatalf("running %q: %v", r.args, err)
	}
	return r
}

// keyctl runs keyctl with env and a deadline well past keyctl's own.
func keyctl(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return run(t, 3*time.Minute, env, keyctlBin, args...)
}

// localCluster is a cluster that deploy/local/cluster runs in dir.
type localCluster struct {
	t    *testing.T
	dir  string
	base int
	env  []string // base environment with DIR/env.sh's exports
	// keydEnv is added to the script's environment: KEYQUORUM_* variables
	// for the nodes it starts.
	keydEnv []string
}

// e2eHeartbeatTimeout is the nodes' Raft heartbeat and election timeout
// (keyd --heartbeat-timeout). The tests run in parallel on small machines
// (CI's has 2 cores), each cluster of race-built nodes with the others:
// keyd's LAN default, 150 ms, takes starvation for a dead leader, and a
// cluster that has one voter more than its leader (the second node just
// promoted) loses its leader, and the test its operation, on a pause. The
// in-process cluster tests run the same timing (cluster/harness_test.go);
// keybench and the jepsen suite run keyd's defaults.
const e2eHeartbeatTimeout = "500ms"

// e2ePromoteAfter is the nodes' stable period for new members (keyd
// --promote-after, 1 s by default): "cluster up" joins one node at a time
// and each join waits for the node to be a voter, which is waiting that
// none of these tests is about (the cluster package tests the stable
// period: TestNewMemberIsPromotedAfterItsStablePeriod).
const e2ePromoteAfter = "1s"

// script runs deploy/local/cluster with args.
func (c *localCluster) script(timeout time.Duration, args ...string) result {
	c.t.Helper()
	env := baseEnv()
	env = append(env, "KEYD="+keydBin, "KEYCTL="+keyctlBin, "KEYQUORUM_BASE_PORT="+strconv.Itoa(c.base))
	env = append(env, "KEYQUORUM_HEARTBEAT_TIMEOUT="+e2eHeartbeatTimeout, "KEYQUORUM_PROMOTE_AFTER="+e2ePromoteAfter)
	env = append(env, c.keydEnv...)
	return run(c.t, timeout, env, "bash", append([]string{filepath.Join(root, "deploy", "local", "cluster")}, args...)...)
}

// mustScript runs the script and fails the test if it does not succeed.
func (c *localCluster) mustScript(args ...string) result {
	c.t.Helper()
	r := c.script(3*time.Minute, args...)
	if r.code != 0 {
		c.t.Fatalf("cluster script failed: %v", r)
	}
	return r
}

// startCluster runs "cluster up n DIR" on a free base port and registers
// "cluster down DIR" (and kill -9 of anything left) as cleanup.
func startCluster(t *testing.T, n int) *localCluster {
	t.Helper()
	return startClusterEnv(t, n)
}

// startClusterEnv is startCluster with keydEnv in every keyd's
// environment.
func startClusterEnv(t *testing.T, n int, keydEnv ...string) *localCluster {
	t.Helper()
	needBinaries(t)
	for attempt := 1; ; attempt++ {
		c := &localCluster{t: t, dir: t.TempDir(), base: freeBase(t), keydEnv: keydEnv}
		t.Cleanup(c.cleanup)
		r := c.script(5*time.Minute, "up", strconv.Itoa(n), c.dir)
		if r.code == 0 {
			b, err := os.ReadFile(filepath.Join(c.dir, "env.sh"))
			if err != nil {
				t.Fatalf("cluster up wrote no env.sh: %v", err)
			}
			vars := parseExports(string(b))
			if vars["KEYQUORUM_CACERT"] == "" || vars["KEYQUORUM_ADDR"] == "" {
				t.Fatalf("env.sh lacks KEYQUORUM_ADDR or KEYQUORUM_CACERT:\n%s", b)
			}
			c.env = baseEnv()
			for k, v := range vars {
				c.env = append(c.env, k+"="+v)
			}
			t.Logf("cluster of %d nodes up in %s on base port %d", n, c.dir, c.base)
			return c
		}
		// Another process may take a port between our check and keyd's
		// listen; only that is worth another try.
		if attempt < 3 && c.logsContain("address already in use") {
			t.Logf("cluster up on base port %d lost a port race; trying another: %v", c.base, r)
			c.cleanup()
			continue
		}
		t.Fatalf("cluster up %d failed: %v\n%s", n, r, c.logTails())
	}
}

// cleanup stops every node: "cluster down DIR", then kill -9 of any
// keyd a pid file still names.
func (c *localCluster) cleanup() {
	if race := c.raceReport(); race != "" {
		c.t.Errorf("a node reported a data race (keyd is built with -race):\n%s", race)
	}
	if c.t.Failed() {
		c.t.Logf("node logs:\n%s", c.logTails())
	}
	if r := c.script(2*time.Minute, "down", c.dir); r.code != 0 {
		c.t.Logf("cluster down: %v", r)
	}
	pids, _ := filepath.Glob(filepath.Join(c.dir, "n*.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		// Only a keyd of ours: the pid may have been reused.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(keydBin)) {
			continue
		}
		c.t.Logf("node pid %d (%s) survived cluster down: kill -9", pid, filepath.Base(f))
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		os.Remove(f)
	}
}

// raceReport is the first data race report in the nodes' logs, or "".
func (c *localCluster) raceReport() string {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "n*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
			report := b[i:]
			if end := bytes.Index(report, []byte("\n==================")); end > 0 {
				report = report[:end]
			}
			return filepath.Base(l) + ":\n" + string(report)
		}
	}
	return ""
}

func (c *localCluster) logsContain(s string) bool {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "n*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// logTails are the last lines of every node's log.
func (c *localCluster) logTails() string {
	var sb strings.Builder
	logs, _ := filepath.Glob(filepath.Join(c.dir, "n*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&sb, "--- %s (last %d lines)\n%s\n", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
	}
	return sb.String()
}

// addr is node i's API address, as "cluster addr I DIR" prints it.
func (c *localCluster) addr(i int) string {
	c.t.Helper()
	r := c.mustScript("addr", strconv.Itoa(i), c.dir)
	a := strings.TrimSpace(string(r.stdout))
	if _, _, err := net.SplitHostPort(a); err != nil {
		c.t.Fatalf("cluster addr %d printed %q: %v", i, a, err)
	}
	return a
}

// envValue is a variable of the cluster's env.sh, such as KEYQUORUM_CACERT.
func (c *localCluster) envValue(name string) string {
	c.t.Helper()
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	c.t.Fatalf("no %s in the cluster's environment", name)
	return ""
}

func (c *localCluster) caFile() string { return c.envValue("KEYQUORUM_CACERT") }

// tlsConfig trusts the cluster CA and, with operator, presents the
// operator's certificate.
func (c *localCluster) tlsConfig(operator bool) *tls.Config {
	c.t.Helper()
	pemCA, err := os.ReadFile(c.caFile())
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		c.t.Fatalf("%s holds no certificate", c.caFile())
	}
	conf := &tls.Config{RootCAs: pool}
	if operator {
		pair, err := tls.LoadX509KeyPair(c.envValue("KEYQUORUM_CLIENT_CERT"), c.envValue("KEYQUORUM_CLIENT_KEY"))
		if err != nil {
			c.t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf
}

// nodeEnv is the keyctl environment pointed at node i.
func (c *localCluster) nodeEnv(i int) []string {
	c.t.Helper()
	return withVar(c.env, "KEYQUORUM_ADDR", c.addr(i))
}

// keyctl runs keyctl against node i.
func (c *localCluster) keyctl(i int, args ...string) result {
	c.t.Helper()
	return keyctl(c.t, c.nodeEnv(i), args...)
}

// mustKeyctl runs keyctl against node i and fails the test unless it
// exits 0.
func (c *localCluster) mustKeyctl(i int, args ...string) result {
	c.t.Helper()
	r := c.keyctl(i, args...)
	if r.code != 0 {
		c.t.Fatalf("node %d: %v", i, r)
	}
	return r
}

// hostNetwork keeps the tests that change the host's network interfaces
// (the compose test: Docker makes a network for the project and removes
// it) apart from those a change breaks: chromium aborts a page load with
// net::ERR_NETWORK_CHANGED when an interface comes or goes (seen with the
// console's browser test beside the compose test). The first take the
// write lock, the second the read lock; other tests take neither.
var hostNetwork sync.RWMutex

// freeBase picks a random base port for a cluster such that the 78 ports
// base .. base+77 (node I uses base+10*I .. +7, I up to 7) are free for
// TCP and UDP on 127.0.0.1 right now, below the kernel's ephemeral range
// (where any outgoing connection, of a parallel test's say, could take
// one of them while a node is down), and not reserved by another test of
// this process: tests run in parallel, and two could otherwise find the
// same free range before either cluster binds it. The range stays
// reserved until t's cleanup.
func freeBase(t *testing.T) int {
	t.Helper()
	const span = 7*10 + 8
	low, high := 10000, cluster.EphemeralPortsStart()-span
	for range 200 {
		base := low + rand.IntN(high-low)
		if reserveBase(base, span) {
			if portsFree(base, span) {
				t.Cleanup(func() { releaseBase(base) })
				return base
			}
			releaseBase(base)
		}
	}
	t.Fatal("found no free range of loopback ports")
	return 0
}

// reservedBases are the base ports of the clusters of running tests.
var (
	reservedMu    sync.Mutex
	reservedBases = map[int]bool{}
)

// reserveBase reserves base unless its span overlaps a reserved one's.
func reserveBase(base, span int) bool {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	for b := range reservedBases {
		if base < b+span && b < base+span {
			return false
		}
	}
	reservedBases[base] = true
	return true
}

func releaseBase(base int) {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	delete(reservedBases, base)
}

func portsFree(base, span int) bool {
	for p := base; p < base+span; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// eventually calls f until it reports done or timeout passes, then fails
// the test with f's last description of what it saw.
func eventually(t *testing.T, timeout time.Duration, what string, f func() (done bool, saw string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, saw := f()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %v; last: %s", what, timeout, saw)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkOneLineError checks that r failed with nothing on stdout and
// exactly one line on stderr, besides the "Run keyctl help" hint that
// follows a usage error.
func checkOneLineError(t *testing.T, r result) {
	t.Helper()
	if r.hung {
		t.Errorf("did not return: %v", r)
		return
	}
	if r.code == 0 {
		t.Errorf("succeeded, want a failure: %v", r)
	}
	if len(r.stdout) != 0 {
		t.Errorf("wrote to stdout on failure: %v", r)
	}
	lines := r.stderrLines()
	if len(lines) == 2 && lines[1] == `Run "keyctl help" for usage.` {
		lines = lines[:1]
	}
	if len(lines) != 1 {
		t.Errorf("want exactly one line on stderr, got %d: %v", len(lines), r)
	}
}
