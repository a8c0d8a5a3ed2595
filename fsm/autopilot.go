package fsm

import "time"

// The autopilot removes members that are dead, when an admin has turned
// it on (set_autopilot). The leader watches the members (gossip, then its
// own calls, cluster/autopilot.go) and proposes remove_dead_node, signed
// as itself, once a member has been down for RemoveDeadAfter by its own
// observation; the state machine takes it only:
//
//   - from a member that is not leaving, about another member that is not
//     leaving, while no resharing round is in progress (one change at a
//     time, each observed anew);
//   - if the holders that stay are at least the threshold, so that the
//     round that reshares the dead member's share away can complete;
//   - and it never lowers the threshold: the round keeps t even when a
//     majority of the members that stay would be fewer, so that removals
//     cannot bring t down to what t-1 compromised nodes hold.
//
// The state machine cannot tell the leader from another member, nor check
// that the member was down: a compromised member can remove honest members
// while the autopilot is on, one at a time, down to t holders. It cannot
// lower t, nor add a node, nor remove one that would leave fewer than t
// holders. Off by default.
//
// Promotion is always on. A node admitted once the cluster has its key
// (add_node, join_node, auto_join) is Pending: in no resharing round, no
// holder. The leader makes it a Raft voter once it has answered for its
// stable period and caught up (cluster/promote.go), then proposes
// promote_node, signed as itself, which starts the round that gives it a
// share. The state machine takes it only from a member that is neither
// leaving nor pending itself (a joining node cannot promote itself),
// about a pending member. It cannot check the stable period: a
// compromised member can promote a pending node early, which is the order
// joins had before (a share while still a non-voter), or never promote
// it, which leaves it a non-voter holding nothing (availability only).
// A pending node removed, by an admin or the autopilot, leaves at once:
// it has no share to reshare away.

// Autopilot is the autopilot's configuration, as an admin set it.
type Autopilot struct {
	// RemoveDeadAfter is how long a member must have been down, by the
	// leader's own observation, before the leader removes it; 0 is off.
	RemoveDeadAfter time.Duration `json:"remove_dead_after"`
}

// MinRemoveDeadAfter bounds RemoveDeadAfter from below, so that a restart
// or a short partition does not cost a member its share.
const MinRemoveDeadAfter = time.Second

// RemoveDead is the leader's decision that a member is dead.
type RemoveDead struct {
	Node string `json:"node"`
	// DownFor is how long the proposer observed the member down: its word,
	// recorded in the log.
	DownFor time.Duration `json:"down_for"`
}

func (t *transition) setAutopilot(a *Autopilot) *Error {
	if a == nil || a.RemoveDeadAfter < 0 || (a.RemoveDeadAfter > 0 && a.RemoveDeadAfter < MinRemoveDeadAfter) {
		return errorf(CodeInvalid, "remove_dead_after is 0 (off) or at least %v", MinRemoveDeadAfter)
	}
	if a.RemoveDeadAfter == 0 {
		t.s.Autopilot = nil
		return nil
	}
	c := *a
	t.s.Autopilot = &c
	return nil
}

// CanRemoveDead says whether the state allows removing member id as dead
// (the rules above but the proposer's), and why not.
func (s *State) CanRemoveDead(id string) *Error {
	if s.Autopilot == nil {
		return errorf(CodeState, "the autopilot is off: an admin's set_autopilot turns it on")
	}
	n := s.Nodes[id]
	switch {
	case n == nil:
		return errorf(CodeNotFound, "node %q is not a member", id)
	case n.Leaving:
		return errorf(CodeState, "node %q is already leaving", id)
	case n.Pending:
		return nil // no share, in no round: it leaves at once
	case s.Reshare != nil:
		return errorf(CodeState, "resharing round %d is in progress: one change at a time", s.Reshare.Round)
	}
	staying := 0
	for _, h := range s.Holders() {
		if h.ID != id && !h.Leaving {
			staying++
		}
	}
	if staying < s.Threshold {
		return errorf(CodeState, "removing node %q would leave %d holders, fewer than the threshold %d", id, staying, s.Threshold)
	}
	return nil
}

func (t *transition) removeDeadNode(r *RemoveDead) *Error {
	s := t.s
	if r == nil {
		return errorf(CodeInvalid, "remove_dead_node needs a node")
	}
	if m := s.Nodes[t.signer]; m == nil || m.Leaving || m.Pending {
		return errorf(CodeDenied, "remove_dead_node is proposed by a member, not %q", t.signer)
	}
	if r.Node == t.signer {
		return errorf(CodeInvalid, "a node does not find itself dead")
	}
	if err := s.CanRemoveDead(r.Node); err != nil {
		return err
	}
	if r.DownFor < s.Autopilot.RemoveDeadAfter {
		return errorf(CodeState, "node %q was seen down for %v, less than %v", r.Node, r.DownFor, s.Autopilot.RemoveDeadAfter)
	}
	t.floorThreshold = s.Threshold
	return t.removeNode(r.Node)
}

// promoteNode ends a new member's wait: the round that gives it a share
// starts (replacing a round in progress, as an admission did before, at
// no lower a threshold than that round's: the autopilot's removals keep t).
func (t *transition) promoteNode(id string) *Error {
	s := t.s
	if m := s.Nodes[t.signer]; m == nil || m.Leaving || m.Pending {
		return errorf(CodeDenied, "promote_node is proposed by a promoted member, not %q", t.signer)
	}
	n := s.Nodes[id]
	switch {
	case n == nil:
		return errorf(CodeNotFound, "node %q is not a member", id)
	case !n.Pending:
		return errorf(CodeState, "node %q is not waiting for its promotion", id)
	}
	n.Pending = false
	if s.Reshare != nil {
		t.floorThreshold = s.Reshare.Threshold
	}
	t.startRound(false)
	return nil
}
