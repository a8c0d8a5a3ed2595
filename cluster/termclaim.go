package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Term claims: what a node's Raft takes from a peer that says it leads.
//
// Raft believes whoever sends an AppendEntries (or InstallSnapshot) of a
// higher term: it takes that term, takes the sender for its leader and
// lets it overwrite its log past the previous entry the sender names,
// which a sender may leave out. A member's certificate is all the node
// port asks of a peer, so the thief of a member's data directory could
// claim the next term on a follower that was following a live leader and
// write over entries that leader had already committed with that
// follower's acknowledgement. The follower's log then holds the higher
// last term, so the next election can make it the leader, and its log, with
// the thief's entries where the committed ones were, replaces the honest
// replicas': a committed entry (a revoke, say) is lost from the cluster's
// history, and the replicas that applied it find, by the chain hash, that
// they diverged and stop serving, while the attacked one leads and serves
// (TestForgedTermCannotOverwriteCommittedEntries).
//
// So the node port holds a Raft RPC to two rules before Raft sees it:
//
//   - A node that leads, or heard from its leader within half its
//     heartbeat timeout (a live leader heartbeats at least once in that
//     time: every fifth of twice the timeout at the slowest,
//     leaderHeartbeatFactor), refuses a higher term from anyone. Raft itself already refuses a
//     vote while it has a leader (leader stickiness, hashicorp/raft's
//     requestVote): an honest election needs a majority of voters who lost
//     their leader or were asked by it to hand over, so an honest new
//     leader's first entries reach a node whose leader is live only when
//     that node has not yet had the vote's request, as in a handover where
//     the old leader's last heartbeat is still fresh: the new leader
//     retries a moment later. Freshness, not Raft's own notion of having
//     a leader (which lasts until the heartbeat timeout), keeps that
//     moment shorter than the new leader's lease.
//   - No RPC rewrites an entry this node has applied: an entry applied was
//     committed, and Raft's leader completeness puts every committed entry
//     in every later leader's log, so an honest leader never sends another
//     entry at its index. An RPC of an older term than the node's is left
//     to Raft, which refuses it before it reads its entries and answers
//     with the node's term. That answer is what tells a leader it was
//     deposed: hashicorp/raft steps a leader down on a higher term in the
//     answer to a replication call, never to a heartbeat, and counts any
//     heartbeat answered as contact. A deposed leader whose uncommitted
//     entry met this refusal instead (an error, which carries no term)
//     kept its lease by its heartbeats and led on, alone, for good.
//
// What they leave (docs/threat-model.md): a node that has not heard from
// a leader for half its heartbeat timeout (its leader stopped or stalled,
// an election is under way) still takes a claimed term, and with it
// entries over ones it acknowledged but did not know committed.

// Before Raft runs (a restarted node restores its snapshot first, and at
// a million keys that takes seconds), the node port is open and its RPCs
// wait for Raft, but not for longer than the caller's transport timeout:
// hashicorp/raft counts a call that times out as a replication failure
// and doubles its wait before the next call to that follower, up to
// 10.24 s, so a leader that timed out seven times against a restoring
// follower sent it nothing for 0.5-1.5 s after its Raft ran. An RPC that
// has waited half the transport timeout is answered notStarted, and the
// leader's own transport (termGuard.AppendEntries) asks again rather than
// report a failure: the call that is waiting when Raft starts is the one
// that brings the follower its entries (docs/scale.md "The leader's
// backoff"). An honest follower holds each call, so the leader asks again
// at once; one that lies with notStarted at once is asked again once per
// heartbeat timeout, a few calls a second.

// raftCallTimeout is how long a node's Raft transport waits for a peer's
// answer before it fails the call.
const raftCallTimeout = 2 * time.Second

// notStarted is the node port's answer to a Raft RPC that waited hold for
// the node's Raft to start; a peer's transport sees it as the error's text.
const notStarted = "raft not started: the node is restoring its state"

// startWait bounds how long a leader's AppendEntries asks again a peer
// that answers notStarted, so that Raft's replication, which cannot stop
// in a call, sees a peer that was removed meanwhile.
const startWait = time.Minute

// termGuard is the Raft transport of the node port with those rules
// applied to every RPC that comes in.
type termGuard struct {
	*raft.NetworkTransport
	logs     raft.LogStore
	log      *slog.Logger
	fresh    time.Duration // how recent a leader's contact keeps a claim out
	hold     time.Duration // how long an RPC waits for Raft to start
	pace     time.Duration // how soon a notStarted peer is asked again
	raft     atomic.Pointer[raft.Raft]
	consumer chan raft.RPC
	started  chan struct{} // closed once start named Raft
	done     chan struct{}
	once     sync.Once
}

// newTermGuard wraps trans, whose calls time out after timeout; Raft's log
// store is logs, and the node's heartbeat timeout
// (Config.HeartbeatTimeout) is heartbeat. RPCs reach Raft once start has
// named it.
func newTermGuard(trans *raft.NetworkTransport, timeout time.Duration, logs raft.LogStore, heartbeat time.Duration, log *slog.Logger) *termGuard {
	g := &termGuard{NetworkTransport: trans, logs: logs, fresh: heartbeat / 2, hold: timeout / 2, pace: heartbeat, log: log,
		consumer: make(chan raft.RPC), started: make(chan struct{}), done: make(chan struct{})}
	go g.serve()
	return g
}

// start passes the RPCs that come in to r, checked.
func (g *termGuard) start(r *raft.Raft) {
	g.raft.Store(r)
	close(g.started)
}

// serve passes the transport's RPCs to Raft, each one that comes before
// start once start has come or answered notStarted after hold.
func (g *termGuard) serve() {
	in := g.NetworkTransport.Consumer()
	for {
		select {
		case <-g.done:
			return
		case rpc := <-in:
			select {
			case <-g.started:
				g.pass(rpc)
			default:
				go func() {
					if g.wait(rpc) {
						g.pass(rpc)
					}
				}()
			}
		}
	}
}

// wait says whether Raft runs, waiting up to hold for it; it answers rpc
// if not.
func (g *termGuard) wait(rpc raft.RPC) bool {
	select {
	case <-g.started:
		return true
	default:
	}
	t := time.NewTimer(g.hold)
	defer t.Stop()
	select {
	case <-g.started:
		return true
	case <-t.C:
		rpc.Respond(nil, errors.New(notStarted))
	case <-g.done:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	}
	return false
}

// pass hands rpc to Raft, or answers why not.
func (g *termGuard) pass(rpc raft.RPC) {
	if err := g.check(rpc.Command); err != nil {
		rpc.Respond(nil, err)
		return
	}
	select {
	case g.consumer <- rpc:
	case <-g.done:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	}
}

// Consumer is what Raft reads its RPCs from.
func (g *termGuard) Consumer() <-chan raft.RPC { return g.consumer }

// SetHeartbeatHandler checks heartbeats too: the transport passes them to
// Raft on a path of their own, and one of a higher term is a claim. Raft
// sets the handler as it starts; one that comes before start waits, as
// every other RPC does.
func (g *termGuard) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		if !g.wait(rpc) {
			return
		}
		if err := g.check(rpc.Command); err != nil {
			rpc.Respond(nil, err)
			return
		}
		cb(rpc)
	})
}

// refusedPace is how often a leader's AppendEntries dials again a peer
// whose node port refused the connection (its process is down or not yet
// listening), to see whether it listens again.
const refusedPace = 50 * time.Millisecond

// AppendEntries is Raft's call to a peer: while the peer answers
// notStarted, and this node leads, it asks again, at most once per
// heartbeat timeout and for up to startWait, rather than return a
// failure that would put Raft's replication to that peer into backoff.
//
// A call that carries the log or the commit index (not a heartbeat) to a
// peer whose port refuses the connection returns its failure only once
// the port accepts connections again (dialled once per refusedPace, for
// up to startWait, while this node leads): hashicorp/raft waits 10 ms x
// 2^(failures-2) before its next call to a peer after a failure, and a
// follower killed and started again at once refused 6-7 calls, a wait of
// 160-640 ms that could end after the follower's restore (docs/scale.md,
// "Session 11"). Now Raft counts one failure while the peer is down, and
// its next call, made afresh with the log as it then is, finds the port
// open and waits there for the peer's Raft. Heartbeats still fail at once,
// so the leader's contact with the peer is counted as before.
func (g *termGuard) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	until := time.Now().Add(startWait)
	for {
		sent := time.Now()
		err := g.NetworkTransport.AppendEntries(id, target, args, resp)
		if err == nil || !g.leads() || time.Now().After(until) {
			return err
		}
		if errors.Is(err, syscall.ECONNREFUSED) && !heartbeat(args) {
			g.awaitListening(target, until)
			return err
		}
		if err.Error() != notStarted {
			return err
		}
		t := time.NewTimer(g.pace - time.Since(sent))
		select {
		case <-t.C:
		case <-g.done:
			t.Stop()
			return err
		}
	}
}

// awaitListening dials target once per refusedPace until it accepts a
// connection, this node no longer leads, the transport closes, or until.
func (g *termGuard) awaitListening(target raft.ServerAddress, until time.Time) {
	for g.leads() && time.Now().Before(until) {
		t := time.NewTimer(refusedPace)
		select {
		case <-t.C:
		case <-g.done:
			t.Stop()
			return
		}
		c, err := net.DialTimeout("tcp", string(target), refusedPace)
		if err == nil {
			c.Close()
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
	}
}

// heartbeat says whether args is one of hashicorp/raft's heartbeats,
// which carry neither entries, nor a previous entry, nor a commit index.
func heartbeat(args *raft.AppendEntriesRequest) bool {
	return len(args.Entries) == 0 && args.PrevLogEntry == 0 && args.LeaderCommitIndex == 0
}

// leads says whether this node's Raft runs and leads.
func (g *termGuard) leads() bool {
	r := g.raft.Load()
	return r != nil && r.State() == raft.Leader
}

// Close stops passing RPCs and closes the transport.
func (g *termGuard) Close() error {
	g.once.Do(func() { close(g.done) })
	return g.NetworkTransport.Close()
}

// check says why the node refuses an RPC, or nil.
func (g *termGuard) check(cmd any) error {
	var term uint64
	var entries []*raft.Log
	switch req := cmd.(type) {
	case *raft.AppendEntriesRequest:
		term, entries = req.Term, req.Entries
	case *raft.InstallSnapshotRequest:
		term = req.Term
	default:
		return nil
	}
	r := g.raft.Load()
	own := r.CurrentTerm()
	if term < own {
		// An older term's RPC rewrites nothing: Raft refuses it first, and
		// answers with its own term. A leader deposed meanwhile learns so
		// only from such an answer (TestDeposedLeaderIsToldItsTerm).
		return nil
	}
	if term > own {
		addr, id := r.LeaderWithID()
		if r.State() == raft.Leader || (addr != "" && time.Since(r.LastContact()) < g.fresh) {
			g.log.Warn("refused a claim of a higher Raft term: this node has a live leader", "term", term, "own_term", own, "leader", id)
			return fmt.Errorf("refused Raft term %d: this node has a live leader, %s, of term %d", term, id, own)
		}
	}
	applied := r.AppliedIndex()
	for _, e := range entries {
		if e.Index > applied {
			break
		}
		var have raft.Log
		if err := g.logs.GetLog(e.Index, &have); err != nil {
			continue // compacted into a snapshot: Raft's own check refuses it
		}
		if have.Term != e.Term {
			g.log.Warn("refused a rewrite of an applied Raft entry", "index", e.Index, "term", e.Term, "applied_term", have.Term)
			return fmt.Errorf("refused entry %d of term %d: this node applied the entry of term %d there", e.Index, e.Term, have.Term)
		}
	}
	return nil
}
