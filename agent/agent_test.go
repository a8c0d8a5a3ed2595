package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

var secret = []byte("the unlock key\x00 of disk 1\n")

func TestUnlockCombinesPartials(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	for _, tc := range []struct {
		name    string
		holders []uint32
	}{
		{"all three holders", nil},
		{"two holders, the threshold", []uint32{3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.node()
			n.holders = tc.holders
			n.start(t, false)
			a, _ := c.testAgent(t, false, n.addr)
			got, err := unlock(t, a, "disk1")
			if err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatalf("Unlock = %q, want %q", got, secret)
			}
		})
	}
}

// The request is what the integrator's server expects: a machine-signed
// release with a fresh nonce, the time and a valid ephemeral key.
func TestRequestIsSignedRelease(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node().start(t, false)
	a, _ := c.testAgent(t, false, n.addr)
	before := time.Now()
	if _, err := unlock(t, a, "disk1"); err != nil {
		t.Fatal(err)
	}
	var sg fsm.Signed
	if err := json.Unmarshal(n.lastBody(), &sg); err != nil {
		t.Fatal(err)
	}
	if sg.Signer != a.MachineID() {
		t.Errorf("signer %q, want the machine ID %q", sg.Signer, a.MachineID())
	}
	if !ed25519.Verify(a.key.Public().(ed25519.PublicKey), fsm.SigningInput(sg.Payload), sg.Signature) {
		t.Error("the signature does not verify with the machine key")
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.Type != fsm.TypeRelease || cmd.Release == nil || cmd.Release.Key != "disk1" || cmd.Release.Op != fsm.OpGet {
		t.Errorf("command %+v, want a get release of disk1", cmd)
	}
	if len(cmd.Nonce) != 16 || len(cmd.Release.Ephemeral) != 32 {
		t.Errorf("nonce %d bytes, ephemeral %d bytes; want 16 and 32", len(cmd.Nonce), len(cmd.Release.Ephemeral))
	}
	if at := time.Unix(0, cmd.IssuedAt); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("issued_at %v is not the time of the request", at)
	}
}

func TestCorruptedPartial(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)

	// Two good partials besides the bad one: the key opens, and the bad
	// holder is named on the log.
	n := c.node()
	n.holders = []uint32{2, 1, 3}
	n.corrupt = map[uint32]bool{2: true}
	n.start(t, false)
	a, log := c.testAgent(t, false, n.addr)
	got, err := unlock(t, a, "disk1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unlock with one bad partial of three = %q, %v; want the key", got, err)
	}
	if !strings.Contains(log.String(), "rejected partial") || !strings.Contains(log.String(), "partial from 2") {
		t.Errorf("the bad partial of holder 2 is not reported:\n%s", log)
	}

	// Only the threshold, one of them bad: refused as a bad reply.
	n = c.node()
	n.holders = []uint32{1, 3}
	n.corrupt = map[uint32]bool{3: true}
	n.start(t, false)
	a, _ = c.testAgent(t, false, n.addr)
	got, err = unlock(t, a, "disk1")
	if KindOf(err) != vocab.KindBadReply || got != nil {
		t.Fatalf("Unlock with one good partial = %q, %v; want a bad_reply error", got, err)
	}
	if ExitCode(err) != vocab.ExitBadReply {
		t.Errorf("exit code %d, want %d", ExitCode(err), vocab.ExitBadReply)
	}
	if !strings.Contains(err.Error(), "1 of 2 partials verified") {
		t.Errorf("error does not say how many partials verified: %v", err)
	}
}

// The pin is required: an agent without one is refused before it asks
// any node.
func TestNoPinRefusedBeforeAnyNetworkCall(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node().start(t, false)
	key := newKey(t)
	c.addMachine(key)
	for _, cfg := range []Config{
		{Servers: []string{n.addr}, CA: string(c.caPEM), TCPOnly: true},
		{Servers: []string{n.addr}, CA: string(c.caPEM), TCPOnly: true, ClusterID: c.id},
	} {
		a, err := New(cfg, key)
		if a != nil || KindOf(err) != vocab.KindConfig || !strings.Contains(err.Error(), ErrNoPin.Error()) {
			t.Fatalf("New without a pinned key = %v, %v; want the no-pin config error", a, err)
		}
		for _, want := range []string{"--cluster-key", "keyctl cluster pin"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not name %q: %v", want, err)
			}
		}
		if ExitCode(err) != vocab.KindConfig.ExitCode() {
			t.Errorf("exit code %d, want config's %d", ExitCode(err), vocab.KindConfig.ExitCode())
		}
	}
	if got := n.seen(); len(got) != 0 {
		t.Errorf("the node was asked %d times by an agent without a pin", len(got))
	}
	// A pin of the wrong size is refused too.
	if _, err := New(Config{Servers: []string{n.addr}, ClusterPublicKey: []byte("short")}, newKey(t)); KindOf(err) != vocab.KindConfig {
		t.Errorf("New with a 5-byte pin: %v, want a config error", err)
	}
}

// A lying node answers with a sharing of its own: a polynomial whose
// constant term is another key, partials that verify against it, and a
// key sealed to it. Pinned to the cluster key, the agent refuses it as a
// bad reply and returns no key; an honest node still works.
func TestPinnedClusterKey(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	forged := []byte("a key the coordinator chose")
	liar := c.node()
	liar.forge = forged
	liar.start(t, false)

	liar.forgedPoly, liar.forgedShares = dealSharing(t, 2, 3)

	// Pinned to the liar's own key, its answer opens: the forgery is
	// consistent in every check but the pin, so the pin is what refuses
	// it below.
	a, _ := c.testAgent(t, false, liar.addr)
	a.cfg.ClusterPublicKey = liar.forgedPoly.PublicKey()
	if got, err := unlock(t, a, "disk1"); err != nil || !bytes.Equal(got, forged) {
		t.Fatalf("the forgery is not self-consistent (got %q, %v): this test would prove nothing", got, err)
	}

	// Pinned to the cluster key: refused, no key.
	a, log := c.testAgent(t, false, liar.addr)
	got, err := unlock(t, a, "disk1")
	if KindOf(err) != vocab.KindBadReply || got != nil {
		t.Fatalf("lying node with the pin: %q, %v; want a bad_reply error and no key", got, err)
	}
	if ExitCode(err) != vocab.ExitBadReply {
		t.Errorf("exit code %d, want bad_reply's %d", ExitCode(err), vocab.ExitBadReply)
	}
	if !strings.Contains(err.Error(), "pinned cluster public key") || !strings.Contains(err.Error(), liar.addr) {
		t.Errorf("the error does not name the pin and the node: %v", err)
	}
	if strings.Contains(err.Error(), string(forged)) || strings.Contains(log.String(), string(forged)) {
		t.Error("the forged key appears in the error or the log")
	}

	// The liar first, an honest node next: the honest answer opens the
	// real key and the liar is warned about.
	honest := c.node().start(t, false)
	a, log = c.testAgent(t, false, liar.addr, honest.addr)
	if got, err := unlock(t, a, "disk1"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("liar then honest node: %q, %v; want the key", got, err)
	}
	if !strings.Contains(log.String(), "warning: "+liar.addr) {
		t.Errorf("the liar is not warned about:\n%s", log)
	}
}

func TestFailover(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	good := c.node().start(t, false)
	dead, hole := deadAddr(t), blackhole(t)

	for _, quic := range []bool{false, true} {
		name := "TCP"
		if quic {
			name = "QUIC then TCP"
		}
		t.Run(name, func(t *testing.T) {
			a, log := c.testAgent(t, quic, dead, hole, good.addr)
			a.cfg.TimeoutPerNode = Duration(500 * time.Millisecond)
			got, err := unlock(t, a, "disk1")
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Unlock past a dead and a blackholed server = %q, %v\nlog:\n%s", got, err, log)
			}
			// Both bad servers were tried first, and failed.
			for _, s := range []string{dead, hole} {
				if !strings.Contains(log.String(), s+": ") {
					t.Errorf("log does not show the attempt at %s:\n%s", s, log)
				}
			}
			if !strings.Contains(log.String(), "no answer within 500ms") {
				t.Errorf("the blackholed server did not end at the time per node:\n%s", log)
			}
		})
	}

	// Nothing answers: unreachable, naming every server.
	a, _ := c.testAgent(t, false, dead, hole)
	a.cfg.TimeoutPerNode = Duration(200 * time.Millisecond)
	_, err := unlock(t, a, "disk1")
	if KindOf(err) != vocab.KindUnreachable || ExitCode(err) != vocab.ExitUnreachable {
		t.Fatalf("Unlock with no server answering: %v (exit %d), want unreachable, exit %d", err, ExitCode(err), vocab.ExitUnreachable)
	}
	for _, s := range []string{dead, hole} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not name %s: %v", s, err)
		}
	}
}

func TestQUICIsTriedFirst(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node().start(t, true)
	a, _ := c.testAgent(t, true, n.addr)
	a.QUICHeadStart = time.Second // TCP would start only if QUIC failed
	got, err := unlock(t, a, "disk1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unlock over QUIC = %q, %v", got, err)
	}
	if p := n.seen(); len(p) != 1 || p[0] != "HTTP/3.0" {
		t.Errorf("the node saw %v, want one HTTP/3.0 request", p)
	}

	// The same node without QUIC: TCP after QUIC fails, one request.
	tcp := c.node().start(t, false)
	a, _ = c.testAgent(t, true, tcp.addr)
	if _, err := unlock(t, a, "disk1"); err != nil {
		t.Fatal(err)
	}
	if p := tcp.seen(); len(p) != 1 || p[0] != "HTTP/1.1" {
		t.Errorf("the node saw %v, want one HTTP/1.1 request", p)
	}
}

func TestErrorKindsToExitCodes(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	cases := []struct {
		name      string
		kind      string
		status    int
		rawError  string
		wantKind  vocab.Kind
		wantExit  int
		wantInMsg string
	}{
		{"not found", "not_found", 404, "", vocab.KindNotFound, vocab.ExitNotFound, "not found"},
		{"unauthenticated", "unauthenticated", 401, "", vocab.KindUnauthenticated, vocab.ExitUnauthenticated, "unauthenticated"},
		{"denied", "denied", 403, "", vocab.KindDenied, vocab.ExitDenied, "denied"},
		{"clock skew", "clock_skew", 401, "", vocab.KindClockSkew, vocab.ExitClockSkew, "clock skew"},
		{"no quorum", "no_quorum", 503, "", vocab.KindNoQuorum, vocab.ExitNoQuorum, "no quorum"},
		{"unknown outcome", "unknown_outcome", 504, "", vocab.KindUnknownOutcome, vocab.ExitUnknownOutcome, "unknown outcome"},
		{"invalid", "invalid", 400, "", vocab.KindInvalid, vocab.ExitFailure, "invalid"},
		{"internal", "internal", 500, "", vocab.KindInternal, vocab.ExitFailure, "internal"},
		{"not initialized", "not_initialized", 503, "", vocab.KindNotInitialized, vocab.ExitFailure, "not initialized"},
		{"conflict", "conflict", 409, "", vocab.KindConflict, vocab.ExitFailure, "conflict"},
		{"a kind this agent does not know", "frobnicated", 500, "", vocab.KindInternal, vocab.ExitFailure, "frobnicated"},
		{"a node claiming a kind only a client makes", "bad_reply", 500, "", vocab.KindInternal, vocab.ExitFailure, "bad reply"},
		{"an old node without the call", "", 404, "404 page not found", vocab.KindInternal, vocab.ExitFailure, UnlockPath},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := c.node()
			n.errKind, n.errStatus, n.rawError = tc.kind, tc.status, tc.rawError
			n.start(t, false)
			a, _ := c.testAgent(t, false, n.addr)
			got, err := unlock(t, a, "disk1")
			if got != nil || KindOf(err) != tc.wantKind {
				t.Fatalf("Unlock = %q, %v; want kind %s", got, err, tc.wantKind)
			}
			if ExitCode(err) != tc.wantExit {
				t.Errorf("exit code %d, want %d", ExitCode(err), tc.wantExit)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) || !strings.Contains(err.Error(), n.addr) {
				t.Errorf("message %q lacks %q or the server", err, tc.wantInMsg)
			}
		})
	}

	// The same kinds, decided by the fake holders' real checks.
	n := c.node().start(t, false)
	t.Run("wrong key name", func(t *testing.T) {
		a, _ := c.testAgent(t, false, n.addr)
		_, err := unlock(t, a, "no-such-disk")
		if ExitCode(err) != vocab.ExitNotFound {
			t.Errorf("%v: exit %d, want %d", err, ExitCode(err), vocab.ExitNotFound)
		}
	})
	t.Run("machine not registered", func(t *testing.T) {
		a, _ := c.agentWithKey(t, newKey(t), false, n.addr)
		_, err := unlock(t, a, "disk1")
		if ExitCode(err) != vocab.ExitUnauthenticated {
			t.Errorf("%v: exit %d, want %d", err, ExitCode(err), vocab.ExitUnauthenticated)
		}
	})
	t.Run("clock too far off", func(t *testing.T) {
		a, _ := c.testAgent(t, false, n.addr)
		a.Now = func() time.Time { return time.Now().Add(-time.Hour) }
		_, err := unlock(t, a, "disk1")
		if ExitCode(err) != vocab.ExitClockSkew {
			t.Errorf("%v: exit %d, want %d", err, ExitCode(err), vocab.ExitClockSkew)
		}
	})
	t.Run("approval never comes", func(t *testing.T) {
		p := c.node()
		p.pending = 1 << 30
		p.start(t, false)
		a, _ := c.testAgent(t, false, p.addr)
		w := Duration(20 * time.Millisecond)
		a.cfg.Wait = &w
		_, err := unlock(t, a, "disk1")
		if ExitCode(err) != vocab.ExitApprovalTimeout || !strings.Contains(err.Error(), a.MachineID()) {
			t.Errorf("%v: exit %d, want %d and the machine ID", err, ExitCode(err), vocab.ExitApprovalTimeout)
		}
	})
	t.Run("approval needed, no wait", func(t *testing.T) {
		p := c.node()
		p.pending = 1 << 30
		p.start(t, false)
		a, log := c.testAgent(t, false, p.addr) // wait 0
		_, err := unlock(t, a, "disk1")
		if ExitCode(err) != vocab.ExitApprovalTimeout {
			t.Errorf("%v: exit %d, want %d", err, ExitCode(err), vocab.ExitApprovalTimeout)
		}
		if strings.Contains(log.String(), "waiting for approval") {
			t.Errorf("said it waits, with no wait: %q", log)
		}
		if n := len(p.seen()); n != 1 {
			t.Errorf("asked %d times, want once", n)
		}
	})
	t.Run("config", func(t *testing.T) {
		if code := ExitCode(&Error{Kind: vocab.KindConfig}); code != vocab.ExitFailure {
			t.Errorf("config error: exit %d, want %d", code, vocab.ExitFailure)
		}
		if code := ExitCode(errors.New("no kind")); code != vocab.ExitFailure {
			t.Errorf("error without a kind: exit %d, want %d", code, vocab.ExitFailure)
		}
	})

	// Every exit code is distinct.
	seen := map[int]bool{}
	for _, code := range []int{vocab.ExitOK, vocab.ExitFailure, vocab.ExitUsage, vocab.ExitNotFound, vocab.ExitUnauthenticated, vocab.ExitDenied,
		vocab.ExitClockSkew, vocab.ExitNoQuorum, vocab.ExitUnreachable, vocab.ExitApprovalTimeout, vocab.ExitBadReply, vocab.ExitUnknownOutcome} {
		if seen[code] {
			t.Errorf("exit code %d is used twice", code)
		}
		seen[code] = true
	}
}

// A refusal that share holders decided outranks a dead node, whatever the
// order; and a round goes on past a node without quorum.
func TestRoundReportsTheMostTellingError(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	denied := c.node()
	denied.errKind, denied.errStatus = "denied", 403
	denied.start(t, false)
	noQuorum := c.node()
	noQuorum.errKind, noQuorum.errStatus = "no_quorum", 503
	noQuorum.start(t, false)
	a, _ := c.testAgent(t, false, deadAddr(t), denied.addr, noQuorum.addr)
	if _, err := unlock(t, a, "disk1"); KindOf(err) != vocab.KindDenied {
		t.Errorf("dead, denied, no quorum: %v, want denied", err)
	}
	good := c.node().start(t, false)
	a, _ = c.testAgent(t, false, noQuorum.addr, good.addr)
	if got, err := unlock(t, a, "disk1"); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("no quorum, then a good node: %q, %v; want the key", got, err)
	}
}

func TestPendingApprovalThenApproved(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node()
	n.pending = 3
	n.start(t, false)
	a, log := c.testAgent(t, false, n.addr)
	w := Duration(time.Minute)
	a.cfg.Wait = &w
	got, err := unlock(t, a, "disk1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unlock after approval = %q, %v", got, err)
	}
	want := "waiting for approval: run `keyctl session approve " + a.MachineID() + "`"
	if strings.Count(log.String(), want) != 1 {
		t.Errorf("log should say %q once:\n%s", want, log)
	}
	if got := len(n.seen()); got != 4 {
		t.Errorf("the node saw %d requests, want 3 pending and 1 released", got)
	}
}

// TestHeldPendingAsksAgainSoon: the agent asks the node to hold its
// pending unlock for an operator's decision (Prefer: wait), and after a
// pending answer the node held it asks again soon, not after its backoff:
// with a backoff of an hour it still gets the key within the test's
// bound.
func TestHeldPendingAsksAgainSoon(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node()
	n.pending, n.holds = 2, true
	n.start(t, false)
	a, log := c.testAgent(t, false, n.addr)
	a.BackoffInitial, a.BackoffMax = time.Hour, time.Hour
	w := Duration(time.Hour)
	a.cfg.Wait = &w
	if got, err := unlock(t, a, "disk1"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unlock after two held pending answers: %q, %v\n%s", got, err, log)
	}
	n.mu.Lock()
	// The first request is answered at once, so that the agent can say
	// what to run; the next ones ask to be held.
	want := []string{"", vocab.WaitPreference(DefaultHold), vocab.WaitPreference(DefaultHold)}
	if !slices.Equal(n.prefers, want) {
		t.Errorf("the requests' Prefer headers: %q, want %q", n.prefers, want)
	}
	n.mu.Unlock()
	if !strings.Contains(log.String(), "waiting for approval: run `keyctl session approve") {
		t.Errorf("the agent did not say what to run:\n%s", log)
	}
	// Not held (a node that cannot hold): after the first pending answer
	// the backoff applies, and with an hour of it the agent is still
	// waiting when its context ends.
	n2 := c.node()
	n2.pending = 2
	n2.start(t, false)
	a2, log2 := c.testAgent(t, false, n2.addr)
	a2.BackoffInitial, a2.BackoffMax, a2.Verbose = time.Hour, time.Hour, true
	w2 := Duration(2 * time.Hour)
	a2.cfg.Wait = &w2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := a2.Unlock(ctx, "disk1"); done <- err }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(log2.String(), "asking again in 1h0m0s"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the agent never waited its backoff of an hour:\n%s", log2)
		}
	}
	cancel()
	if err := <-done; KindOf(err) != vocab.KindPendingApproval || len(n2.seen()) != 2 {
		t.Errorf("pending answers not held: %v after %d requests, want pending after 2 (then the backoff)", err, len(n2.seen()))
	}
}

func TestBackoffDoubles(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node()
	// Six pending answers, then the key: the waits between them are what
	// the test reads, however long each round takes on a loaded machine.
	n.pending = 6
	n.start(t, false)
	a, log := c.testAgent(t, false, n.addr)
	a.BackoffInitial, a.BackoffMax = time.Millisecond, 8*time.Millisecond
	w := Duration(20 * time.Second)
	a.cfg.Wait = &w
	if _, err := unlock(t, a, "disk1"); err != nil {
		t.Fatalf("unlock after the approval waits: %v\n%s", err, log)
	}
	var waits []string
	for l := range strings.SplitSeq(log.String(), "\n") {
		if _, after, ok := strings.Cut(l, "asking again in "); ok {
			waits = append(waits, after)
		}
	}
	if len(waits) < 5 {
		t.Fatalf("only %d waits logged:\n%s", len(waits), log)
	}
	want := []string{"1ms", "2ms", "4ms", "8ms", "8ms"}
	for i, w := range want {
		if waits[i] != w {
			t.Errorf("wait %d is %s, want %s (all: %v)", i, waits[i], w, waits)
		}
	}
}

func TestRetryForTransientErrors(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	// A node that comes up after the first round.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a, log := c.testAgent(t, false, addr)
	a.cfg.RetryFor = Duration(time.Minute)
	a.BackoffInitial = 50 * time.Millisecond
	started := make(chan struct{})
	go func() {
		for !strings.Contains(log.String(), "trying again") {
			time.Sleep(time.Millisecond)
		}
		n := c.node()
		n.startOn(t, addr)
		close(started)
	}()
	got, err := unlock(t, a, "disk1")
	<-started
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unlock with a node that comes up late = %q, %v\n%s", got, err, log)
	}
}

func TestSRVDiscovery(t *testing.T) {
	c := newTestCluster(t)
	c.addKey("disk1", secret)
	n := c.node().start(t, false)
	host, port, _ := net.SplitHostPort(n.addr)
	key := newKey(t)
	c.addMachine(key)
	a, err := New(Config{SRV: "example.test", CA: string(c.caPEM), TCPOnly: true, ClusterPublicKey: c.poly.PublicKey()}, key)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := parsePort(port)
	res := &fakeResolver{srvs: []*net.SRV{{Target: host + ".", Port: p}, {Target: ".", Port: 0}}}
	a.Resolver = res
	got, err := unlock(t, a, "disk1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unlock via SRV = %q, %v", got, err)
	}
	if res.asked != "_keyquorum._tcp.example.test" {
		t.Errorf("looked up %q", res.asked)
	}

	res.err = errors.New("no such host")
	if _, err := unlock(t, a, "disk1"); KindOf(err) != vocab.KindUnreachable || !strings.Contains(err.Error(), "SRV") {
		t.Errorf("failed SRV lookup and no servers: %v, want unreachable naming SRV", err)
	}
}

type fakeResolver struct {
	srvs  []*net.SRV
	err   error
	asked string
}

func (r *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	r.asked = "_" + service + "._" + proto + "." + name
	return "", r.srvs, r.err
}

func TestServersInRandomOrder(t *testing.T) {
	servers := []string{"a:1", "b:1", "c:1", "d:1", "e:1"}
	a, err := New(Config{Servers: servers, ClusterPublicKey: make([]byte, ClusterKeySize)}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	orders := map[string]bool{}
	for range 50 {
		got, err := a.servers(context.Background())
		if err != nil || len(got) != len(servers) {
			t.Fatalf("servers() = %v, %v", got, err)
		}
		orders[strings.Join(got, " ")] = true
	}
	if len(orders) < 2 {
		t.Errorf("50 rounds all tried the servers in the same order: %v", orders)
	}
	a.cfg.InOrder = true
	if got, _ := a.servers(context.Background()); strings.Join(got, " ") != strings.Join(servers, " ") {
		t.Errorf("in_order: %v, want %v", got, servers)
	}
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"servers":["a.example:1","10.0.0.1"],"wait":"2m","timeout_per_node":3,"cluster_public_key":"` +
		strings.Repeat("A", 43) + `="}`))
	if err != nil {
		t.Fatal(err)
	}
	if *c.Wait != Duration(2*time.Minute) || c.TimeoutPerNode != Duration(3*time.Second) || len(c.ClusterPublicKey) != 32 {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, bad := range []string{`{"servers":["x"],"sever":"y"}`, `{"wait":"soon"}`, `{} {}`, `[`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) succeeded", bad)
		}
	}
	for addr, want := range map[string]string{"h": "h:8740", "10.0.0.1": "10.0.0.1:8740", "::1": "[::1]:8740", "[::1]:9": "[::1]:9", "h:1": "h:1"} {
		if got, err := normalizeAddr(addr); err != nil || got != want {
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"", "https://h", "h:0", "h:x", ":1"} {
		if _, err := normalizeAddr(addr); err == nil {
			t.Errorf("normalizeAddr(%q) succeeded", addr)
		}
	}
	if err := (&Config{}).Validate(); err == nil {
		t.Error("a config without servers validated")
	}
	// Merge: set fields replace, empty ones keep.
	w := Duration(time.Second)
	m := Config{Key: "a", Servers: []string{"x"}, CA: "ca"}.Merge(&Config{Key: "b", Wait: &w})
	if m.Key != "b" || m.Servers[0] != "x" || m.CA != "ca" || *m.Wait != w {
		t.Errorf("Merge = %+v", m)
	}
}

func TestParseClusterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, ClusterKeySize)
	for _, s := range []string{strings.Repeat("ab", 32), " " + strings.Repeat("AB", 32) + "\n",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"} {
		if got, err := ParseClusterKey(s); err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseClusterKey(%q) = %x, %v; want %x", s, got, err, key)
		}
	}
	for _, s := range []string{"", "ab", strings.Repeat("ab", 31), strings.Repeat("zz", 32), "q6ur"} {
		if _, err := ParseClusterKey(s); err == nil {
			t.Errorf("ParseClusterKey(%q) succeeded", s)
		}
	}
}

func TestSavePin(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{1}, ClusterKeySize)
	other := bytes.Repeat([]byte{2}, ClusterKeySize)

	// A new file, in a new directory: the pin alone, owner-only.
	path := filepath.Join(dir, "etc", "agent.json")
	if changed, err := SavePin(path, "c1", key); err != nil || !changed {
		t.Fatalf("SavePin into a new file: %v, changed %v", err, changed)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, %v; want 0600", fi.Mode(), err)
	}
	c, err := LoadConfig(path)
	if err != nil || c.ClusterID != "c1" || !bytes.Equal(c.ClusterPublicKey, key) {
		t.Fatalf("the config after SavePin: %+v, %v", c, err)
	}

	// An existing config keeps its other fields; pinning again is a no-op.
	path = filepath.Join(dir, "full.json")
	os.WriteFile(path, []byte(`{"servers":["a:1"],"wait":"2m","key":"disk1"}`), 0o640)
	if changed, err := SavePin(path, "c1", key); err != nil || !changed {
		t.Fatalf("SavePin into an existing config: %v, changed %v", err, changed)
	}
	c, err = LoadConfig(path)
	if err != nil || c.Key != "disk1" || len(c.Servers) != 1 || *c.Wait != Duration(2*time.Minute) || c.ClusterID != "c1" || !bytes.Equal(c.ClusterPublicKey, key) {
		t.Fatalf("the config after SavePin: %+v, %v", c, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("the config's mode changed to %v", fi.Mode())
	}
	if changed, err := SavePin(path, "c1", key); err != nil || changed {
		t.Errorf("SavePin of the same pin: %v, changed %v; want no change", err, changed)
	}

	// Another cluster's pin is never overwritten.
	before, _ := os.ReadFile(path)
	for _, tc := range []struct {
		id  string
		key []byte
	}{{"c1", other}, {"c2", key}} {
		if _, err := SavePin(path, tc.id, tc.key); KindOf(err) != vocab.KindConfig || !strings.Contains(err.Error(), "pins another cluster") {
			t.Errorf("SavePin(%s, %x) over another pin: %v; want a refusal", tc.id, tc.key[:2], err)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused SavePin changed the file")
	}

	// A broken config is refused, not replaced.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"sever":"x"}`), 0o600)
	if _, err := SavePin(bad, "c1", key); KindOf(err) != vocab.KindConfig {
		t.Errorf("SavePin into a config with an unknown field: %v", err)
	}
	if _, err := SavePin(filepath.Join(dir, "x.json"), "", key); err == nil {
		t.Error("SavePin without a cluster ID succeeded")
	}
}

func TestMachineKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "machine.key")
	k1, created, err := EnsureMachineKey(path)
	if err != nil || !created {
		t.Fatalf("EnsureMachineKey: %v, created %v", err, created)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	k2, created, err := EnsureMachineKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Errorf("second EnsureMachineKey: created %v, same %v, %v", created, k1.Equal(k2), err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	if _, _, err := EnsureMachineKey(junk); KindOf(err) != vocab.KindConfig {
		t.Errorf("EnsureMachineKey on junk: %v, want a config error", err)
	}
	if b, _ := os.ReadFile(junk); string(b) != "not a key" {
		t.Error("EnsureMachineKey overwrote a file that is not a key")
	}
	if _, err := LoadMachineKey(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "keyagent enroll") {
		t.Errorf("LoadMachineKey of a missing file: %v", err)
	}
	if id := MachineID(k1.Public().(ed25519.PublicKey)); id != fsm.PrincipalID(k1.Public().(ed25519.PublicKey)) || len(id) != 32 {
		t.Errorf("MachineID = %q", id)
	}
}

func TestClevisJWK(t *testing.T) {
	j1, err := ClevisJWK([]byte("key"), "disk1")
	if err != nil {
		t.Fatal(err)
	}
	var jwk struct{ Alg, K, Kty string }
	if err := json.Unmarshal(j1, &jwk); err != nil || jwk.Alg != "A256GCM" || jwk.Kty != "oct" || len(jwk.K) != 43 {
		t.Fatalf("ClevisJWK = %s, %v", j1, err)
	}
	j2, _ := ClevisJWK([]byte("key"), "disk1")
	j3, _ := ClevisJWK([]byte("key"), "disk2")
	if !bytes.Equal(j1, j2) || bytes.Equal(j1, j3) {
		t.Errorf("ClevisJWK is not a deterministic function of key and name: %s %s %s", j1, j2, j3)
	}
	if _, err := ClevisJWK(nil, "x"); err == nil {
		t.Error("ClevisJWK of an empty key succeeded")
	}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
