package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// When the leader promotes a new member from Raft non-voter to voter (the
// autopilot's stable period, docs/autopilot.md).
//
// A non-voter does not count in the quorum: a node that never comes up,
// or falls over at once, costs the cluster nothing while it waits. The
// leader makes it a voter, and so, through promote_node, a share holder
// (autopilot.go), only once its own calls have found it:
//
//   - answering on its node port at every poll (every nonVoterPoll,
//     authenticated by TLS) without a break for Config.PromoteAfter,
//     counted from its first answer after it was added: a failed or late
//     call starts the period again, so a node that flaps waits for a
//     whole period of answers;
//   - caught up: its state machine has applied at least what the
//     leader's had when the node first answered (after the node was
//     added: so the node has the snapshot, restored and verified, and
//     the log after it), and
//   - keeping up: at each of the last promoteKeptUp polls, its state
//     machine had applied what the leader's had at the poll before.
//
// The period runs while the node catches up: a node that restores a
// large snapshot (the most memory and CPU it needs) and keeps answering
// has been up for that long already, and waits only for what is left of
// the period, then for the polls that find it keeping up. The index is
// the state machine's (nodeStatus.StateApplied), not Raft's applied
// index, which counts entries merely queued for it.
//
// A node states its own applied index: a lying node can claim to be
// caught up, and is then promoted as soon as it has answered for the
// period, which a compromised member could have had it anyway
// (docs/autopilot.md, "What a lying node can do with the order"). What
// it cannot shorten is the answering, which is the leader's own
// observation, with a clock that a new leader starts anew.

// nonVoterPoll is how often the leader asks a non-voter for its status.
const nonVoterPoll = 100 * time.Millisecond

// promoteKeptUp is how many consecutive polls must find a non-voter
// keeping up before it is promoted.
const promoteKeptUp = 3

// nonVoterWatch is what the leader has seen of a non-voter since it
// first answered without a break (reconcileMembers).
type nonVoterWatch struct {
	since  time.Time // its first answer of this unbroken run
	target uint64    // the leader's applied index at that answer
	polled time.Time // the last poll, by the real clock (c.now is the period's)
	prev   uint64    // the leader's applied index at the last poll
	keptUp int       // consecutive polls that found it keeping up
	caught bool      // it reached target
	polls  int       // the polls it answered (tests count them)
}

// watchNonVoter polls the non-voter id at addr, if its last poll is
// nonVoterPoll old, given the leader's applied index; it says whether the
// node may be promoted now, and how soon the leader should look again.
// The caller holds stableMu.
func (c *consensus) watchNonVoter(ctx context.Context, run *raftRun, id raft.ServerID, addr string, leaderApplied uint64) (promote bool, next time.Duration) {
	now := c.now()
	w := c.stable[id]
	if w != nil {
		if wait := nonVoterPoll - time.Since(w.polled); wait > 0 {
			return false, wait
		}
	}
	applied, ok := c.stateApplied(ctx, run, addr)
	if !ok {
		if w != nil {
			c.log.Info("a non-voter stopped answering: its stable period starts again", "peer", id)
		}
		delete(c.stable, id)
		return false, nonVoterPoll
	}
	if w == nil {
		w = &nonVoterWatch{since: now, target: leaderApplied, prev: leaderApplied}
		c.stable[id] = w
		c.log.Info("a non-voter answers: its stable period starts", "peer", id, "catch_up_to", leaderApplied)
	}
	if applied >= w.target && !w.caught {
		w.caught = true
		c.log.Info("a non-voter caught up", "peer", id, "applied", applied, "answering_for", now.Sub(w.since))
	}
	if w.caught && applied >= w.prev {
		w.keptUp++
	} else {
		w.keptUp = 0
	}
	w.polled, w.prev, w.polls = time.Now(), leaderApplied, w.polls+1
	return w.keptUp >= promoteKeptUp && now.Sub(w.since) >= c.cfg.PromoteAfter, nonVoterPoll
}

// stableSince is since when the leader has seen non-voter id answering
// without a break, and how many of its polls it has answered since.
func (c *consensus) stableSince(id string) (since time.Time, polls int, ok bool) {
	c.stableMu.Lock()
	defer c.stableMu.Unlock()
	w, ok := c.stable[raft.ServerID(id)]
	if !ok {
		return time.Time{}, 0, false
	}
	return w.since, w.polls, true
}

// stateApplied asks the node at addr, on its node port within a second,
// how far its state machine has applied the log.
func (c *consensus) stateApplied(ctx context.Context, run *raftRun, addr string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var ns struct {
		StateApplied uint64 `json:"state_applied"`
	}
	if _, err := c.callWith(ctx, run, addr, statusPath, nil, &ns); err != nil {
		return 0, false
	}
	return ns.StateApplied, true
}
