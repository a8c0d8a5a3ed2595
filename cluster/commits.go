package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// What an idle leader sends (issue 10: an idle leader within 2x of
// OpenBao's, at most 4% of a core). hashicorp/raft sends each follower two
// streams of messages: heartbeats, every HeartbeatTimeout/10 to
// HeartbeatTimeout/5, which keep the follower from starting an election
// but do not carry the commit index; and an AppendEntries whenever the
// log grows or, with nothing to send, every CommitTimeout to twice that,
// which carries it. A follower applies an entry only once one tells it the
// entry is committed, so the commit timeout was short (20 ms), and with
// the heartbeats they woke the leader, each follower and their TLS about
// 150 times a second: 5-8% of a core on an idle leader.
//
// Here the commit index is told when it changes instead: once the
// leader's state machine has applied a command (so the command is
// committed), the leader appends a barrier, and the AppendEntries that
// carries the barrier carries the commit index with it (tellCommits). A
// barrier is Raft's own entry and never reaches the state machine, so the
// read index (read.go), which is the state machine's, never waits for one
// to be told. The commit timeout is only a backstop (a barrier that timed
// out, a retry after a follower's transport failed, the commit of Raft's
// own entries), and the leader heartbeats half as often as a follower's
// heartbeat timeout would ask (paceHeartbeats).

// commitTimeout is how long an idle leader waits (to twice that) before
// it tells the followers the commit index again with an empty
// AppendEntries. Commands do not wait for it (tellCommits).
const commitTimeout = 250 * time.Millisecond

// leaderHeartbeatFactor is how much longer a leader's heartbeat timeout is
// than the configured one (Config.HeartbeatTimeout): hashicorp/raft
// heartbeats every tenth to fifth of its own heartbeat timeout, and a
// follower stands for election after a configured timeout without one, so
// with 2 a follower still hears 2.5 to 5 heartbeats in that time. A leader
// uses its heartbeat timeout only for that pace (and for a failed
// heartbeat's backoff); the leader lease (Config.LeaderLeaseTimeout) is a
// separate setting and unchanged.
const leaderHeartbeatFactor = 2

// tellCommits runs on every node and acts on a ready leader: after the
// state machine applies a command, and once when the node becomes a ready
// leader (its state machine may hold commands an earlier leader committed
// but did not tell), it appends a barrier so that the followers learn the
// commit index now rather than at the next commit timeout. Commands
// applied while a barrier is in flight share the next one. It appends one
// too when heartbeats to a follower resume after failing (a follower that
// was cut off or down): hashicorp/raft sends a follower the entries that
// failed to reach it again only when the log grows or at the commit
// timeout. (No test shows that one needed: in the tests, a follower back
// from a partition or a restart got a write of its own or another node's
// soon after, which told it.)
func (c *consensus) tellCommits(ctx context.Context, run *raftRun) {
	resumed := make(chan raft.Observation, 1)
	obs := raft.NewObserver(resumed, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.ResumedHeartbeatObservation)
		return ok
	})
	run.raft.RegisterObserver(obs)
	defer run.raft.DeregisterObserver(obs)
	var told uint64
	retell := false
	for {
		applied, changed := c.rfsm.watch()
		switch {
		case run.raft.State() != raft.Leader || !c.leaderReady.Load():
			told, retell = 0, false
		case applied > told || retell:
			told, retell = applied, false
			// An error (leadership lost, no quorum in time) leaves the
			// telling to the next leader or the commit timeout.
			_ = run.raft.Barrier(c.cfg.RequestTimeout).Error()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-c.becameReady:
		case <-resumed:
			retell = true
		}
	}
}

// paceHeartbeats sets Raft's heartbeat timeout for this node's role: the
// configured one on a follower or candidate, where it decides when to
// stand for election, and leaderHeartbeatFactor times that on a leader,
// where it only paces the heartbeats. A node that stops being leader gets
// the configured timeout back before its next check (hashicorp/raft
// rearms a follower's timer when the timeout shortens).
func (c *consensus) paceHeartbeats(run *raftRun, leader bool) {
	want := c.cfg.HeartbeatTimeout
	if leader {
		want *= leaderHeartbeatFactor
	}
	rc := run.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == want {
		return
	}
	rc.HeartbeatTimeout = want
	rc.ElectionTimeout = max(c.cfg.ElectionTimeout, want)
	if err := run.raft.ReloadConfig(rc); err != nil {
		c.log.Warn("setting the heartbeat timeout", "timeout", want, "err", err)
	}
}
