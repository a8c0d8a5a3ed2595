package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The keyagent binary, built beside keyd and keyctl on first use.
var (
	agentOnce     sync.Once
	agentBin      string
	agentBuildErr error
)

// needAgent builds keyagent (static, as for an initramfs) once.
func needAgent(t *testing.T) {
	t.Helper()
	needBinaries(t)
	agentOnce.Do(func() {
		out := filepath.Join(filepath.Dir(keydBin), "keyagent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/keyagent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			agentBuildErr = fmt.Errorf("go build ./cmd/keyagent: %v\n%s", err, b)
			return
		}
		agentBin = out
	})
	if agentBuildErr != nil {
		t.Fatal(agentBuildErr)
	}
}

// needTools skips the test when a stock program it drives is missing.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed: %v", n, err)
		}
	}
}

// machine is a keyagent identity made by "keyagent enroll", with the
// config enroll pinned the cluster in.
type machine struct {
	keyFile string
	pub     string // base64
	id      string
	config  string // the config file enroll wrote the pin into
	pin     pin    // as read back from it
}

// pin is a cluster ID and public key, as keyagent's config holds them.
type pin struct {
	ClusterID  string `json:"cluster_id"`
	ClusterKey []byte `json:"cluster_public_key"`
}

var enrollLines = regexp.MustCompile(`^public-key: (\S+)\nmachine-id: ([0-9a-f]+)\n$`)

// enroll runs "keyagent enroll" for machine name with the pin keyctl
// cluster pin printed, or with args instead (--confirm ...) in env.
func (s *agentSetup) enroll(t *testing.T, name string, env []string, args ...string) machine {
	t.Helper()
	m := machine{keyFile: filepath.Join(s.dir, name+".key"), config: filepath.Join(s.dir, name+".json")}
	if args == nil {
		args = []string{"--cluster-key", s.clusterKey, "--cluster-id", s.clusterID}
	}
	if env == nil {
		env = baseEnv()
	}
	r := run(t, time.Minute, env, agentBin, append([]string{"enroll", "--key-file", m.keyFile, "--config", m.config}, args...)...)
	sm := enrollLines.FindStringSubmatch(string(r.stdout))
	if r.code != 0 || sm == nil {
		t.Fatalf("keyagent enroll: %v", r)
	}
	m.pub, m.id = sm[1], sm[2]
	b, err := os.ReadFile(m.config)
	if err != nil {
		t.Fatalf("keyagent enroll wrote no config: %v", err)
	}
	if err := json.Unmarshal(b, &m.pin); err != nil || m.pin.ClusterID != s.clusterID || hex.EncodeToString(m.pin.ClusterKey) != s.clusterKey {
		t.Fatalf("keyagent enroll pinned %s / %x (%v), want keyctl cluster pin's %s / %s", m.pin.ClusterID, m.pin.ClusterKey, err, s.clusterID, s.clusterKey)
	}
	return m
}

// agentSetup is what a machine needs to reach a cluster: its CA
// certificate and the pin (cluster ID and public key) that keyctl
// cluster pin prints.
type agentSetup struct {
	c          *localCluster
	dir        string
	ca         string
	clusterID  string
	clusterKey string // hex, as keyctl cluster pin prints it
}

var pinExports = regexp.MustCompile(`(?m)^export KEYQUORUM_CLUSTER_ID=(\S+)\nexport KEYQUORUM_CLUSTER_KEY=([0-9a-f]{64})$`)

func newAgentSetup(t *testing.T, c *localCluster) *agentSetup {
	t.Helper()
	s := &agentSetup{c: c, dir: t.TempDir()}
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "KEYQUORUM_CACERT="); ok {
			s.ca = v
		}
	}
	r := c.mustKeyctl(1, "cluster", "pin", "--env", "")
	sm := pinExports.FindStringSubmatch(string(r.stdout))
	if sm == nil {
		t.Fatalf("keyctl cluster pin printed no pin: %s", r.stdout)
	}
	s.clusterID, s.clusterKey = sm[1], sm[2]
	return s
}

// config returns keyagent's config for m and servers as a JSON object,
// with the pin enroll wrote and extra fields.
func (s *agentSetup) config(m machine, servers []string, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"servers":            servers,
		"ca":                 s.ca,
		"key_file":           m.keyFile,
		"cluster_id":         m.pin.ClusterID,
		"cluster_public_key": m.pin.ClusterKey,
		"timeout_per_node":   "5s",
		"wait":               "0s",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// configFile writes a config and returns its path.
func (s *agentSetup) configFile(t *testing.T, cfg map[string]any) string {
	t.Helper()
	f, err := os.CreateTemp(s.dir, "agent-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := json.NewEncoder(f).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// servers are the API addresses of nodes 1..n.
func (s *agentSetup) servers(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, s.c.addr(i))
	}
	return out
}

// unlock runs "keyagent unlock --config CFG --key NAME ARGS...".
func unlockWith(t *testing.T, cfg, name string, args ...string) result {
	t.Helper()
	return run(t, 3*time.Minute, baseEnv(), agentBin, append([]string{"unlock", "--config", cfg, "--key", name}, args...)...)
}

// createKey stores secret as key name.
func createSecretKey(t *testing.T, c *localCluster, name string, secret []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustKeyctl(1, "key", "create", name, "--from-file", f)
}

func randomSecret(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// luksImage makes a LUKS2 file image whose only passphrase is key, with
// fast PBKDF2 (the key is random, so iterations buy nothing).
func luksImage(t *testing.T, dir string, key []byte) string {
	t.Helper()
	img, keyFile := filepath.Join(dir, "disk.img"), filepath.Join(dir, "format.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(createEmpty(t, img), 20<<20); err != nil {
		t.Fatal(err)
	}
	r := run(t, 2*time.Minute, baseEnv(), "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img, keyFile)
	if r.code != 0 {
		t.Fatalf("luksFormat: %v", r)
	}
	return img
}

func createEmpty(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// opensLUKS feeds key to "cryptsetup open --test-passphrase --key-file -".
func opensLUKS(t *testing.T, img string, key []byte) result {
	t.Helper()
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", img)
	cmd.Stdin = bytes.NewReader(key)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil || (err != nil && cmd.ProcessState.ExitCode() < 0) {
		t.Fatalf("cryptsetup: %v", err)
	}
	return result{args: cmd.Args, stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// blackholeAt listens on host:0 (a 127.0.0.x address), accepts every
// connection and never answers.
func blackholeAt(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("blackhole listener on %s: %v", host, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// checkKeyOut checks that keyagent printed exactly the key and nothing
// else on stdout, and succeeded.
func checkKeyOut(t *testing.T, r result, want []byte) {
	t.Helper()
	if r.code != 0 || !bytes.Equal(r.stdout, want) {
		t.Fatalf("keyagent unlock: want exit 0 and the %d-byte key on stdout, got %v", len(want), r)
	}
}

// checkAgentError checks a failed keyagent: the exit code, nothing on
// stdout, and one line on stderr containing want.
func checkAgentError(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.hung {
		t.Errorf("keyagent did not return: %v", r)
		return
	}
	if r.code != code {
		t.Errorf("exit %d, want %d: %v", r.code, code, r)
	}
	if len(r.stdout) != 0 {
		t.Errorf("wrote %d bytes to stdout on failure: %v", len(r.stdout), r)
	}
	if lines := r.stderrLines(); len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("want one line on stderr containing %q, got %q", want, r.stderr)
	}
}

func TestAgentUnlocksLUKS(t *testing.T) {
	t.Parallel()
	needAgent(t)
	needTools(t, "cryptsetup")
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	secret := append(randomSecret(t, 30), '\n', 0) // any bytes: a newline and a NUL too
	createSecretKey(t, c, "disk1", secret)
	img := luksImage(t, s.dir, secret)
	m := s.enroll(t, "host1", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1")
	servers := s.servers(3)

	unlockOpens := func(t *testing.T, cfg string, args ...string) result {
		t.Helper()
		r := unlockWith(t, cfg, "disk1", args...)
		checkKeyOut(t, r, secret)
		if o := opensLUKS(t, img, r.stdout); o.code != 0 {
			t.Fatalf("cryptsetup did not open the image with keyagent's output: %v", o)
		}
		return r
	}

	t.Run("all nodes up", func(t *testing.T) {
		cfg := s.configFile(t, s.config(m, servers, nil))
		for range 3 { // random order: different coordinators
			unlockOpens(t, cfg)
		}
		// Through a shell pipe, as a keyscript's output reaches cryptsetup.
		pipe := fmt.Sprintf("%q unlock --config %q --key disk1 | cryptsetup open --test-passphrase --key-file - %q", agentBin, cfg, img)
		if r := run(t, 2*time.Minute, baseEnv(), "sh", "-c", pipe); r.code != 0 {
			t.Fatalf("keyagent | cryptsetup: %v", r)
		}
		// Over TCP only as well as QUIC.
		unlockOpens(t, cfg, "--tcp-only")
	})

	t.Run("first listed server blackholed", func(t *testing.T) {
		hole := blackholeAt(t, "127.0.0.2")
		cfg := s.configFile(t, s.config(m, append([]string{hole}, servers...), map[string]any{"timeout_per_node": "2s"}))
		r := unlockOpens(t, cfg, "--in-order", "-v")
		if !strings.Contains(r.stderr, hole+": no answer within 2s") {
			t.Errorf("the blackholed server was not tried first and abandoned after 2s: %v", r)
		}
		unlockOpens(t, cfg) // and in random order
	})

	t.Run("crypttab keyscript and unlock-volume", func(t *testing.T) {
		cfg := s.configFile(t, s.config(m, servers, nil))
		boot := filepath.Join(root, "deploy", "boot")
		env := append(baseEnv(), "KEYQUORUM_CONFIG="+cfg, "KEYQUORUM_KEYAGENT="+agentBin)

		// cryptsetup runs the keyscript with the crypttab fields in
		// CRYPTTAB_*; its stdout is the key.
		for _, ks := range [][]string{{"CRYPTTAB_KEY=disk1"}, {"CRYPTTAB_KEY=none", "CRYPTTAB_NAME=disk1"}} {
			r := run(t, 2*time.Minute, append(env, ks...), filepath.Join(boot, "keyscript"))
			checkKeyOut(t, r, secret)
			if o := opensLUKS(t, img, r.stdout); o.code != 0 {
				t.Fatalf("keyscript %v: cryptsetup did not open the image: %v", ks, o)
			}
		}
		r := run(t, 2*time.Minute, append(env, "CRYPTTAB_KEY=no-such-key"), filepath.Join(boot, "keyscript"))
		checkAgentError(t, r, 3, "not found")

		// unlock-volume pipes keyagent into "cryptsetup open"; this
		// cryptsetup turns the open into --test-passphrase, as there is no
		// device-mapper here.
		fake := filepath.Join(s.dir, "cryptsetup")
		os.WriteFile(fake, []byte("#!/bin/sh\ncase $1 in\nstatus) exit 4 ;;\nopen) for a; do dev=$last; last=$a; done\n"+
			"\texec cryptsetup open --test-passphrase --key-file - \"$dev\" ;;\nesac\nexit 1\n"), 0o755)
		volumes := filepath.Join(s.dir, "volumes")
		os.WriteFile(volumes, []byte("# NAME DEVICE KEY\nvol1 "+img+" disk1\nwrong "+img+" no-such-key\n"), 0o644)
		env = append(env, "KEYQUORUM_VOLUMES="+volumes, "KEYQUORUM_CRYPTSETUP="+fake)
		if r := run(t, 2*time.Minute, env, filepath.Join(boot, "unlock-volume"), "vol1"); r.code != 0 {
			t.Fatalf("unlock-volume vol1: %v", r)
		}
		r = run(t, 2*time.Minute, env, filepath.Join(boot, "unlock-volume"), "wrong")
		checkAgentError(t, r, 3, "not found") // keyagent's status, not cryptsetup's
		if r := run(t, 2*time.Minute, env, filepath.Join(boot, "unlock-volume"), "absent"); r.code != 1 || !strings.Contains(r.stderr, "not in") {
			t.Errorf("unlock-volume of a volume not listed: %v", r)
		}
		// A key that does not open the volume: cryptsetup's failure.
		other := luksImage(t, t.TempDir(), randomSecret(t, 32))
		os.WriteFile(volumes, []byte("vol2 "+other+" disk1\n"), 0o644)
		if r := run(t, 2*time.Minute, env, filepath.Join(boot, "unlock-volume"), "vol2"); r.code == 0 || !strings.Contains(r.stderr, "cryptsetup could not open") {
			t.Errorf("unlock-volume with a key that does not fit: %v", r)
		}
	})

	t.Run("one node down", func(t *testing.T) {
		c.mustScript("kill", "3", c.dir)
		cfg := s.configFile(t, s.config(m, []string{servers[2], servers[0], servers[1]}, nil))
		r := unlockOpens(t, cfg, "--in-order", "-v")
		if !strings.Contains(r.stderr, servers[2]+": ") {
			t.Errorf("the dead node was not tried first: %v", r)
		}
		for range 3 {
			unlockOpens(t, cfg)
		}
	})
}

func TestAgentApprovalFlow(t *testing.T) {
	t.Parallel()
	needAgent(t)
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	secret := randomSecret(t, 32)
	createSecretKey(t, c, "disk1", secret)
	m := s.enroll(t, "host1", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1", "--approval")
	cfg := s.configFile(t, s.config(m, s.servers(3), map[string]any{"wait": "3m"}))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, "unlock", "--config", cfg, "--key", "disk1")
	cmd.Env = baseEnv()
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The pending session is visible from every node.
	for i := 1; i <= 3; i++ {
		eventually(t, converge, fmt.Sprintf("node %d lists the pending session", i), func() (bool, string) {
			r := keyctl(t, c.env, "session", "list", "--addr", c.addr(i))
			return r.code == 0 && strings.Contains(string(r.stdout), m.id), r.String()
		})
	}
	select {
	case err := <-done:
		t.Fatalf("keyagent returned before the approval: %v, stdout %d bytes, stderr %q", err, stdout.Len(), stderr)
	default:
	}
	want := "waiting for approval: run `keyctl session approve " + m.id + "`"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("keyagent's stderr does not say %q: %q", want, stderr)
	}

	c.mustKeyctl(2, "session", "approve", m.id)
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(stdout.Bytes(), secret) {
			t.Fatalf("keyagent after the approval: %v, stdout %x (want %x), stderr %q", err, stdout.Bytes(), secret, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("keyagent did not finish after the approval; stderr %q", stderr)
	}

	// The approval was for one use: the next unlock waits again.
	r := unlockWith(t, cfg, "disk1", "--wait", "0s")
	checkAgentError(t, r, 9, "keyctl session approve "+m.id)
}

// replayRecorder is a TLS front (with a CA of its own) that records
// request bodies and forwards them to a real node: a man in the middle
// with a certificate the machine was told to trust, or a captured
// request.
type replayRecorder struct {
	caPEM   []byte
	addr    string
	mu      sync.Mutex
	bodies  [][]byte
	forward func(body []byte) (int, []byte, error)
}

func newReplayRecorder(t *testing.T, forward func([]byte) (int, []byte, error)) *replayRecorder {
	t.Helper()
	caPEM, cert := recorderCA(t)
	rr := &replayRecorder{caPEM: caPEM, forward: forward}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rr.mu.Lock()
		rr.bodies = append(rr.bodies, body)
		rr.mu.Unlock()
		status, out, err := rr.forward(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(out)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	rr.addr = l.Addr().String()
	return rr
}

// postUnlock sends a body to a node's /v1/machine/unlock over TLS
// trusting the cluster CA.
func postUnlock(caFile, addr string, body []byte) (int, []byte, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return 0, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cl := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Post("https://"+addr+"/v1/machine/unlock", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func TestAgentReplayRefused(t *testing.T) {
	t.Parallel()
	needAgent(t)
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	secret := randomSecret(t, 32)
	createSecretKey(t, c, "disk1", secret)
	m := s.enroll(t, "host1", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1")

	node1 := c.addr(1)
	rr := newReplayRecorder(t, func(b []byte) (int, []byte, error) { return postUnlock(s.ca, node1, b) })
	caFile := filepath.Join(s.dir, "recorder-ca.pem")
	os.WriteFile(caFile, rr.caPEM, 0o644)
	cfg := s.configFile(t, s.config(m, []string{rr.addr}, map[string]any{"ca": caFile, "tcp_only": true}))

	// The machine's request, captured on its way, released the key.
	checkKeyOut(t, unlockWith(t, cfg, "disk1"), secret)
	rr.mu.Lock()
	captured := rr.bodies[0]
	rr.mu.Unlock()

	// Replayed later, to every node: refused, and no partial comes back.
	for round := 1; round <= 2; round++ {
		for i := 1; i <= 3; i++ {
			status, out, err := postUnlock(s.ca, c.addr(i), captured)
			if err != nil {
				t.Fatalf("replay to node %d: %v", i, err)
			}
			var e struct {
				Error *struct{ Kind, Message string } `json:"error"`
			}
			json.Unmarshal(out, &e)
			if status == http.StatusOK || e.Error == nil || (e.Error.Kind != "unauthenticated" && e.Error.Kind != "clock_skew") {
				t.Errorf("replay %d to node %d: HTTP %d %s; want a refusal (unauthenticated or clock_skew)", round, i, status, out)
			}
			if bytes.Contains(out, []byte("partials")) {
				t.Errorf("replay %d to node %d returned partials: %s", round, i, out)
			}
			t.Logf("replay %d to node %d: HTTP %d %s", round, i, status, bytes.TrimSpace(out))
		}
	}
	// The machine itself still unlocks with fresh requests.
	checkKeyOut(t, unlockWith(t, s.configFile(t, s.config(m, s.servers(3), nil)), "disk1"), secret)
}

func TestAgentRefusals(t *testing.T) {
	t.Parallel()
	needAgent(t)
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	secret := randomSecret(t, 32)
	createSecretKey(t, c, "disk1", secret)
	createSecretKey(t, c, "other", randomSecret(t, 32))
	m := s.enroll(t, "host1", nil)
	stranger := s.enroll(t, "stranger", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1")
	servers := s.servers(3)
	cfg := s.configFile(t, s.config(m, servers, nil))
	checkKeyOut(t, unlockWith(t, cfg, "disk1"), secret)

	t.Run("wrong key name", func(t *testing.T) {
		checkAgentError(t, unlockWith(t, cfg, "no-such-key"), 3, "not found")
	})
	t.Run("key not allowed", func(t *testing.T) {
		checkAgentError(t, unlockWith(t, cfg, "other"), 5, "denied")
	})
	t.Run("machine not registered", func(t *testing.T) {
		checkAgentError(t, unlockWith(t, s.configFile(t, s.config(stranger, servers, nil)), "disk1"), 4, "unauthenticated")
	})
	t.Run("no server answers", func(t *testing.T) {
		dead := s.configFile(t, s.config(m, []string{closedPort(t), closedPort(t)}, nil))
		checkAgentError(t, unlockWith(t, dead, "disk1"), 8, "no server answered")
	})
	t.Run("enroll confirms the pin with the members", func(t *testing.T) {
		// With the operator's credentials of the environment
		// (KEYQUORUM_CLIENT_CERT, KEYQUORUM_CLIENT_KEY, KEYQUORUM_CACERT),
		// asking every node.
		m3 := s.enroll(t, "host3", c.env, "--confirm", "--server", strings.Join(servers, ","))
		c.mustKeyctl(1, "machine", "add", "host3", "--public-key", m3.pub, "--key", "disk1")
		// The config enroll wrote, the rest on the command line.
		r := unlockWith(t, m3.config, "disk1", "--server", strings.Join(servers, ","), "--ca", s.ca, "--key-file", m3.keyFile, "--wait", "0s")
		checkKeyOut(t, r, secret)
	})
	t.Run("no pin", func(t *testing.T) {
		cfg := s.config(m, servers, nil)
		delete(cfg, "cluster_public_key")
		delete(cfg, "cluster_id")
		checkAgentError(t, unlockWith(t, s.configFile(t, cfg), "disk1"), 1, "keyctl cluster pin")
	})
	t.Run("another cluster key pinned", func(t *testing.T) {
		// One server: one line on stderr (a lie of several is also warned about).
		other := s.configFile(t, s.config(m, servers[:1], map[string]any{"cluster_public_key": bytes.Repeat([]byte{0x5a}, 32)}))
		checkAgentError(t, unlockWith(t, other, "disk1"), 10, "pinned cluster public key")
	})
	t.Run("revoked machine, on every node", func(t *testing.T) {
		c.mustKeyctl(1, "machine", "revoke", m.id)
		for i := 1; i <= 3; i++ {
			one := s.configFile(t, s.config(m, []string{c.addr(i)}, nil))
			checkAgentError(t, unlockWith(t, one, "disk1"), 5, "denied")
		}
	})
	t.Run("no quorum", func(t *testing.T) {
		m2 := s.enroll(t, "host2", nil)
		c.mustKeyctl(1, "machine", "add", "host2", "--public-key", m2.pub, "--key", "disk1")
		c.mustScript("kill", "2", c.dir)
		c.mustScript("kill", "3", c.dir)
		one := s.configFile(t, s.config(m2, []string{c.addr(1)}, map[string]any{"timeout_per_node": "60s"}))
		checkAgentError(t, unlockWith(t, one, "disk1"), 7, "no quorum")
	})
}

func TestClevisPin(t *testing.T) {
	t.Parallel()
	needAgent(t)
	needTools(t, "clevis", "jose", "cryptsetup")
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	createSecretKey(t, c, "disk1", randomSecret(t, 32))
	m := s.enroll(t, "host1", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1")

	// Our pin scripts and keyagent first on PATH.
	env := baseEnv()
	path := filepath.Join(root, "deploy", "boot") + string(os.PathListSeparator) + filepath.Dir(agentBin)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path += string(os.PathListSeparator) + v
		}
	}
	env = withVar(env, "PATH", path)
	pinCfg, _ := json.Marshal(s.config(m, s.servers(3), map[string]any{"key": "disk1"}))

	// clevis encrypt / decrypt.
	plain := []byte("a secret the pin protects\n")
	jweFile := filepath.Join(s.dir, "secret.jwe")
	enc := fmt.Sprintf("clevis encrypt keyquorum %s > %q", shellQuoted(string(pinCfg)), jweFile)
	encCmd := exec.Command("sh", "-c", enc)
	encCmd.Env, encCmd.Stdin = env, bytes.NewReader(plain)
	if out, err := encCmd.CombinedOutput(); err != nil {
		t.Fatalf("clevis encrypt keyquorum: %v\n%s", err, out)
	}
	jwe, _ := os.ReadFile(jweFile)
	if bytes.Contains(jwe, plain) {
		t.Fatal("the JWE contains the plaintext")
	}
	dec := exec.Command("clevis", "decrypt")
	dec.Env, dec.Stdin = env, bytes.NewReader(jwe)
	if out, err := dec.Output(); err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("clevis decrypt: %v, got %q, want %q", err, out, plain)
	}

	// clevis luks bind, then clevis luks unlock -t SLOT.
	pass := randomSecret(t, 32)
	img := luksImage(t, s.dir, pass)
	passFile := filepath.Join(s.dir, "format.key")
	r := run(t, 3*time.Minute, env, "clevis", "luks", "bind", "-y", "-d", img, "-k", passFile, "keyquorum", string(pinCfg))
	if r.code != 0 {
		t.Fatalf("clevis luks bind: %v", r)
	}
	list := run(t, time.Minute, env, "clevis", "luks", "list", "-d", img)
	sm := regexp.MustCompile(`(?m)^(\d+): `).FindStringSubmatch(string(list.stdout))
	if sm == nil {
		t.Fatalf("clevis luks list shows no binding: %v", list)
	}
	slot := sm[1]
	if r := run(t, 3*time.Minute, env, "clevis", "luks", "unlock", "-d", img, "-t", slot); r.code != 0 {
		t.Fatalf("clevis luks unlock -t %s: %v", slot, r)
	}

	// Once the machine is revoked, neither opens.
	c.mustKeyctl(1, "machine", "revoke", m.id)
	if r := run(t, 3*time.Minute, env, "clevis", "luks", "unlock", "-d", img, "-t", slot); r.code == 0 {
		t.Errorf("clevis luks unlock after the revoke succeeded: %v", r)
	}
	dec = exec.Command("clevis", "decrypt")
	dec.Env, dec.Stdin = env, bytes.NewReader(jwe)
	if out, err := dec.Output(); err == nil || len(out) != 0 {
		t.Errorf("clevis decrypt after the revoke: %v, %d bytes out", err, len(out))
	}
}

func shellQuoted(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// selfCA makes a CA and a server certificate for 127.0.0.1 signed by it.
func recorderCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "recorder CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "recorder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The boot files install where the docs say, parse, and the systemd unit
// verifies.
func TestBootFilesInstall(t *testing.T) {
	t.Parallel()
	needAgent(t)
	dest := t.TempDir()
	for _, d := range []string{"etc/initramfs-tools", "usr/lib/dracut/modules.d"} {
		os.MkdirAll(filepath.Join(dest, d), 0o755)
	}
	r := run(t, time.Minute, append(baseEnv(), "DESTDIR="+dest), filepath.Join(root, "deploy", "boot", "install"), agentBin)
	if r.code != 0 {
		t.Fatalf("install: %v", r)
	}
	files := map[string]string{ // path: shell to parse it with ("" for none)
		"usr/sbin/keyagent":                                        "",
		"usr/lib/keyquorum/keyscript":                              "dash",
		"usr/lib/keyquorum/unlock-volume":                          "dash",
		"usr/bin/clevis-encrypt-keyquorum":                         "bash",
		"usr/bin/clevis-decrypt-keyquorum":                         "bash",
		"etc/initramfs-tools/hooks/keyquorum":                      "dash",
		"etc/initramfs-tools/scripts/init-premount/keyquorum":      "dash",
		"usr/lib/dracut/modules.d/90keyquorum/module-setup.sh":     "bash",
		"usr/lib/dracut/modules.d/90keyquorum/keyquorum-online.sh": "dash",
	}
	for f, shell := range files {
		p := filepath.Join(dest, f)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: not installed executable (%v)", f, err)
			continue
		}
		if shell == "" {
			continue
		}
		if _, err := exec.LookPath(shell); err != nil {
			continue
		}
		if r := run(t, time.Minute, baseEnv(), shell, "-n", p); r.code != 0 {
			t.Errorf("%s -n %s: %v", shell, f, r)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "etc/keyquorum")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("/etc/keyquorum: %v, want mode 0700", err)
	}
	unit := filepath.Join(dest, "usr/lib/systemd/system/keyquorum-unlock@.service")
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		inst := filepath.Join(dest, "keyquorum-unlock@data.service")
		b, _ := os.ReadFile(unit)
		os.WriteFile(inst, b, 0o644)
		if r := run(t, time.Minute, baseEnv(), "systemd-analyze", "verify", "--root="+dest, inst); r.code != 0 || r.stderr != "" {
			t.Errorf("systemd-analyze verify: %v", r)
		}
	}
}
