package cli

import (
	"github.com/keyquorum/keyquorum/vocab"

	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/gateway/https"
)

// testNode is an unjoined node with its REST API, in this process.
type testNode struct {
	n       *cluster.Node
	addr    string
	dataDir string
}

func (tn *testNode) fingerprint() string { return api.Fingerprint(tn.n.Identity().SignKey) }

// startUnjoined starts a node that requires token (its own, in its data
// directory, when token is empty) and serves its API on loopback.
func startUnjoined(t *testing.T, id, token string) *testNode {
	t.Helper()
	ports, err := cluster.FreeLoopbackPorts(3) // below the ephemeral range, TCP and UDP free
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.JoinToken = id, filepath.Join(t.TempDir(), id), token
	cfg.APIAddr, cfg.RaftAddr, cfg.GossipAddr = ports[0], ports[1], ports[2]
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := cluster.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := https.NewServer(n, n.ServingCert(), cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		n.Shutdown(ctx)
	})
	return &testNode{n: n, addr: cfg.APIAddr, dataDir: cfg.DataDir}
}

// initOneNode starts a node, makes it a cluster of one with keyctl
// cluster init (with the join token the node made), and sets the
// environment the init wrote for the keyctl calls that follow.
func initOneNode(t *testing.T) {
	t.Helper()
	n1 := startUnjoined(t, "n1", "")
	creds := filepath.Join(t.TempDir(), "creds")
	if code, _, errb := keyctl(t, "cluster", "init", "--node", n1.addr, "--nodes", "1", "--dir", creds,
		"--token-file", cluster.JoinTokenPath(n1.dataDir), "--fingerprint", n1.fingerprint()); code != ExitOK {
		t.Fatalf("init: exit %d, %s", code, errb)
	}
	setEnv(t, filepath.Join(creds, "env.sh"))
}

// setEnv sets the variables of an env.sh keyctl wrote.
func setEnv(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			t.Fatalf("env.sh line %q", line)
		}
		t.Setenv(k, v)
	}
}

// TestClusterJoinChecksFingerprintAndToken: keyctl issues nothing to a
// node whose fingerprint is not the one the operator gave, or without a
// fingerprint off a terminal, or with a spent token; the honest init and
// join work, and the join spends the token.
func TestClusterJoinChecksFingerprintAndToken(t *testing.T) {
	n1 := startUnjoined(t, "n1", "")
	creds := filepath.Join(t.TempDir(), "creds")
	if code, _, errb := keyctl(t, "cluster", "init", "--node", n1.addr, "--nodes", "1", "--dir", creds,
		"--token", "kqjoin.0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "--fingerprint", n1.fingerprint()); code != vocab.ExitUnauthenticated || !strings.Contains(errb, "join token") {
		t.Fatalf("init with a token the node was not started with: exit %d, %q", code, errb)
	}
	if n1.n.Identity().Joined {
		t.Fatal("a wrong token started n1")
	}
	// n1 was started without a token: it made its own, which the
	// operator reads on its machine.
	if code, _, errb := keyctl(t, "cluster", "init", "--node", n1.addr, "--nodes", "1", "--dir", creds,
		"--token-file", cluster.JoinTokenPath(n1.dataDir), "--fingerprint", n1.fingerprint()); code != ExitOK {
		t.Fatalf("init: exit %d, %s", code, errb)
	}
	setEnv(t, filepath.Join(creds, "env.sh"))

	code, out, errb := keyctl(t, "cluster", "token", "create", "--ttl", "1h")
	if code != ExitOK {
		t.Fatalf("token create: exit %d, %s", code, errb)
	}
	token := strings.TrimSpace(out)
	n2 := startUnjoined(t, "n2", token)

	wrong := strings.Repeat("ab", 32)
	code, _, errb = keyctl(t, "cluster", "join", n2.addr, "--token", token, "--fingerprint", wrong)
	if code != ExitError || !strings.Contains(errb, "fingerprint mismatch") || !strings.Contains(errb, n2.fingerprint()) {
		t.Fatalf("join with a wrong fingerprint: exit %d, stderr %q", code, errb)
	}
	if code, _, errb := keyctl(t, "cluster", "join", n2.addr, "--token", token); code != ExitUsage || !strings.Contains(errb, "--fingerprint") {
		t.Fatalf("join without a fingerprint off a terminal: exit %d, stderr %q", code, errb)
	}
	if n2.n.Identity().Joined {
		t.Fatal("n2 was started though its fingerprint was never confirmed")
	}
	if code, _, errb := keyctl(t, "cluster", "join", n2.addr, "--token", token, "--fingerprint", "SHA256:"+strings.ToUpper(n2.fingerprint())); code != ExitOK {
		t.Fatalf("honest join: exit %d, %s", code, errb)
	}
	if !n2.n.Identity().Joined {
		t.Fatal("n2 did not join")
	}
	id, _, err := api.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errb := keyctl(t, "cluster", "token", "list"); code != ExitOK || !strings.Contains(out, id) || !strings.Contains(out, "n2") {
		t.Fatalf("token list: exit %d, %q %q: want token %s spent by n2", code, out, errb, id)
	}

	n3 := startUnjoined(t, "n3", token)
	code, _, errb = keyctl(t, "cluster", "join", n3.addr, "--token", token, "--fingerprint", n3.fingerprint())
	if code != vocab.ExitDenied || !strings.Contains(errb, "spent") {
		t.Fatalf("join with a spent token: exit %d, stderr %q", code, errb)
	}
	if n3.n.Identity().Joined {
		t.Fatal("a spent token started n3")
	}
	if code, out, _ := keyctl(t, "cluster", "status"); code != ExitOK || strings.Contains(out, "n3") {
		t.Fatalf("status after the refused join: exit %d\n%s", code, out)
	}
}

// TestClusterJoinFailureNamesItsStep: a join whose node fails to start
// for a cause of its own (here its Raft directory cannot be made; in
// session 13, a node port taken at the join) says which step failed, on
// which node, and where the cause is: keyctl printed "internal: internal
// error" alone, dropping the "starting node" its client had wrapped
// around the node's answer.
func TestClusterJoinFailureNamesItsStep(t *testing.T) {
	initOneNode(t)
	code, out, errb := keyctl(t, "cluster", "token", "create", "--ttl", "1h")
	if code != ExitOK {
		t.Fatalf("token create: exit %d, %s", code, errb)
	}
	token := strings.TrimSpace(out)
	n2 := startUnjoined(t, "n2", token)
	// A file where the node makes its Raft directory: its start fails
	// with an error of its own, which its API answers as internal.
	if err := os.WriteFile(filepath.Join(n2.dataDir, "raft"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errb = keyctl(t, "cluster", "join", n2.addr, "--token", token, "--fingerprint", n2.fingerprint())
	want := `keyctl: internal: starting node "n2": internal error on node "n2" (its log has the cause)` + "\n"
	if code != vocab.KindInternal.ExitCode() || errb != want {
		t.Fatalf("a join whose node cannot start: exit %d, stderr %q; want %q", code, errb, want)
	}
	if n2.n.Identity().Joined {
		t.Fatal("n2 joined though it could not start")
	}
}

// TestClusterAutopilotCommand: an admin turns the autopilot on, status
// shows its period and the failure tolerance, a period too short is
// refused with the rule, and 0 turns it off.
func TestClusterAutopilotCommand(t *testing.T) {
	initOneNode(t)
	if code, _, errb := keyctl(t, "cluster", "autopilot", "--remove-dead-after", "1m"); code != ExitOK {
		t.Fatalf("autopilot on: exit %d, %s", code, errb)
	}
	code, out, errb := keyctl(t, "cluster", "status")
	if code != ExitOK || !strings.Contains(out, "autopilot: removes a member down for 1m0s") || !strings.Contains(out, "failure tolerance: 0 more nodes may fail before releases stop") {
		t.Fatalf("status: exit %d, %q %q", code, out, errb)
	}
	if code, _, errb := keyctl(t, "cluster", "autopilot", "--remove-dead-after", "1ms"); code == ExitOK || !strings.Contains(errb, "at least") {
		t.Fatalf("a period too short: exit %d, %q", code, errb)
	}
	if code, _, errb := keyctl(t, "cluster", "autopilot", "--remove-dead-after", "0"); code != ExitOK {
		t.Fatalf("autopilot off: exit %d, %s", code, errb)
	}
	if _, out, _ := keyctl(t, "cluster", "status"); strings.Contains(out, "autopilot:") {
		t.Fatalf("status after turning the autopilot off: %q", out)
	}
}
