package cluster

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// nopFSM is a state machine that keeps nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

// guardedRaft is a Raft in memory with the term guard's check on it; a
// Raft bootstrapped alone leads itself, one that is not has no leader.
func guardedRaft(t *testing.T, bootstrap bool) (*raft.Raft, *termGuard) {
	t.Helper()
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("")
	cfg := raft.DefaultConfig()
	cfg.LocalID = "self"
	cfg.LogLevel = "error"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	if bootstrap {
		if err := raft.BootstrapCluster(cfg, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "self", Address: addr}}}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := raft.NewRaft(cfg, nopFSM{}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	g := &termGuard{logs: store, fresh: cfg.HeartbeatTimeout / 2, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.raft.Store(r)
	return r, g
}

// TestTermGuardRefusesClaimsToANodeWithALeader: a node that has a live
// leader (here itself) refuses an AppendEntries or an InstallSnapshot of a
// higher term, and any AppendEntries whose entry at an index it applied
// is of another term; it takes its own term's entries at those indexes
// (a leader sending them again) and entries past them, and other RPCs.
// A node without a leader takes a higher term.
func TestTermGuardRefusesClaimsToANodeWithALeader(t *testing.T) {
	t.Parallel()
	r, g := guardedRaft(t, true)
	deadline := time.Now().Add(opTimeout)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("a Raft alone never led itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		if err := r.Apply([]byte("x"), opTimeout).Error(); err != nil {
			t.Fatal(err)
		}
	}
	term, applied := r.CurrentTerm(), r.AppliedIndex()
	for name, c := range map[string]struct {
		cmd  any
		want string // part of the refusal; "" to take it
	}{
		"a higher term":                    {&raft.AppendEntriesRequest{Term: term + 1}, "has a live leader, self,"},
		"a higher term's snapshot":         {&raft.InstallSnapshotRequest{Term: term + 1}, "has a live leader, self,"},
		"another term at an applied index": {&raft.AppendEntriesRequest{Term: term, Entries: []*raft.Log{{Index: applied, Term: term + 1}}}, "applied the entry of term"},
		"its own term at an applied index": {&raft.AppendEntriesRequest{Term: term, Entries: []*raft.Log{{Index: applied, Term: term}, {Index: applied + 1, Term: term}}}, ""},
		"entries past the applied ones":    {&raft.AppendEntriesRequest{Term: term, Entries: []*raft.Log{{Index: applied + 1, Term: term}}}, ""},
		"a vote":                           {&raft.RequestVoteRequest{Term: term + 1}, ""},
	} {
		err := g.check(c.cmd)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a refusal saying %q", name, err, c.want)
		}
	}

	_, lone := guardedRaft(t, false)
	if err := lone.check(&raft.AppendEntriesRequest{Term: 7}); err != nil {
		t.Errorf("a node without a leader refused a higher term: %v", err)
	}
}

// TestDeposedLeaderIsToldItsTerm: an AppendEntries of a lower term than
// the node's, carrying an entry of that term where the node applied one
// of its own (a leader deposed while its last entry was uncommitted,
// sending it again), reaches Raft, which refuses it and answers with its
// own term. That answer is how the old leader learns it was deposed:
// hashicorp/raft steps a leader down on a higher term in a replication
// answer only, not in a heartbeat's, and counts a heartbeat answered at
// all as contact, so a refusal by the guard instead (an error, without a
// term) left the old leader leading alone for good, its heartbeats
// keeping its lease, while the others' leader could not reach it (seen in
// a 100,000-key run on a loaded machine).
func TestDeposedLeaderIsToldItsTerm(t *testing.T) {
	t.Parallel()
	timeout := 2 * time.Second
	ports := freePorts(t, 1)
	_, _, leadAlone := tcpGuardedRafts(t, timeout)
	a := leadAlone("a", ports[0], io.Discard)
	for range 3 {
		if err := a.Apply([]byte("x"), opTimeout).Error(); err != nil {
			t.Fatal(err)
		}
	}
	term, applied := a.CurrentTerm(), a.AppliedIndex()
	if term < 2 {
		t.Fatalf("a leads in term %d, want 2 or more to send it an older one", term)
	}
	client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, timeout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("old"), Addr: []byte("old")}, Term: term - 1,
		PrevLogEntry: applied - 1, PrevLogTerm: term, Entries: []*raft.Log{{Index: applied, Term: term - 1, Type: raft.LogCommand, Data: []byte("y")}}}
	var resp raft.AppendEntriesResponse
	if err := client.AppendEntries("a", raft.ServerAddress(ports[0]), req, &resp); err != nil {
		t.Fatalf("a refused an older term's entry at an index it applied with an error, which tells the sender no term: %v", err)
	}
	if resp.Success || resp.Term != term {
		t.Fatalf("a answered success %v, term %d; want a refusal with its term %d", resp.Success, resp.Term, term)
	}
	if got := a.AppliedIndex(); got != applied {
		t.Fatalf("a's applied index moved from %d to %d", applied, got)
	}
}
