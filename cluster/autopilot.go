package cluster

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/fsm"
)

// The autopilot's removal of dead members (fsm/autopilot.go has the rules
// every replica checks). Each node runs the loop; only the ready leader
// acts, and it starts counting anew whenever it becomes leader, so that
// every removal rests on one leader's own observation for the whole
// period:
//
//   - gossip (memberlist) says a member is not alive: a hint only, since
//     any member can spread a suspicion about another;
//   - the leader then calls the member's node port itself, authenticated
//     by TLS; a member that answers is alive, whatever gossip says;
//   - a member that gossip and the leader's own calls have both found down
//     without a break for the period (fsm.Autopilot.RemoveDeadAfter) is
//     removed, if the state allows it (fsm.State.CanRemoveDead: t holders
//     stay, one change at a time) and if the voters the leader reaches,
//     without that member, are still a majority of the voters that stay.
//
// The removal is remove_dead_node, signed by the leader, which every
// replica checks; the resharing without the member follows, as for an
// operator's removal, keeping t.
//
// The same loop ends a new member's wait (fsm/autopilot.go): a node
// admitted once the cluster has its key is Pending, in no round, until
// the leader has made it a Raft voter after its stable period
// (promote.go: answering without a break, caught up and keeping up); the
// leader then proposes promote_node, signed as itself, at once (its
// reconcileMembers wakes this loop), and the round that gives the node a
// share starts. A node that fails during its stable period is
// never a voter, so never a holder: an admin's removal, or the
// autopilot's, drops it at once.

// autopilotEvery is how often the leader looks at the members.
const autopilotEvery = 500 * time.Millisecond

// autopilot is the loop described above.
func (n *Node) autopilot(ctx context.Context, rt *runtime) {
	down := map[string]time.Time{} // member -> since when the leader has seen it down
	tick := time.NewTicker(autopilotEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-n.cons.promoted: // a new voter: its round starts now, not at the next tick
		}
		if n.raftState() != raft.Leader || !n.cons.leaderReady.Load() {
			clear(down)
			continue
		}
		if !n.promoteHeld.Load() {
			n.promoteOnce(ctx)
		}
		n.autopilotOnce(ctx, rt, down, time.Now())
	}
}

// promoteOnce proposes promote_node, as the ready leader, for one member
// waiting for its promotion that Raft counts as a voter and that answers
// the leader's own call: the round it starts replaces any in progress, so
// one at a time.
func (n *Node) promoteOnce(ctx context.Context) {
	voters := map[string]bool{}
	for _, s := range n.servers() {
		if s.Suffrage == raft.Voter {
			voters[string(s.ID)] = true
		}
	}
	var waiting []fsm.Node
	n.fsm.Read(func(s *fsm.State) {
		for _, id := range slices.Sorted(maps.Keys(s.Nodes)) {
			if m := s.Nodes[id]; m.Pending && voters[id] {
				waiting = append(waiting, *m)
			}
		}
	})
	for _, m := range waiting {
		if !n.answers(ctx, m.RaftAddr) {
			continue
		}
		sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypePromoteNode, PromoteNode: m.ID})
		if err == nil {
			_, err = n.submit(ctx, sg)
		}
		if err != nil {
			n.log.Warn("promoting a new member", "peer", m.ID, "err", err)
			continue
		}
		n.log.Info("promoted a new member: resharing to it", "peer", m.ID)
		return
	}
}

// autopilotOnce looks at every member once, as the ready leader.
func (n *Node) autopilotOnce(ctx context.Context, rt *runtime, down map[string]time.Time, now time.Time) {
	var (
		ap      *fsm.Autopilot
		members []fsm.Node
	)
	n.fsm.Read(func(s *fsm.State) {
		if s.Autopilot != nil {
			c := *s.Autopilot
			ap = &c
		}
		for id, m := range s.Nodes {
			if id != n.id.NodeID && !m.Leaving {
				members = append(members, *m)
			}
		}
	})
	if ap == nil {
		clear(down)
		return
	}
	alive := map[string]bool{}
	for _, m := range rt.gossip.Members() {
		alive[m.Name] = m.State == memberlist.StateAlive
	}
	reached := map[string]bool{n.id.NodeID: true}
	for _, m := range members {
		if alive[m.ID] || n.answers(ctx, m.RaftAddr) {
			reached[m.ID] = true
			delete(down, m.ID)
			continue
		}
		if _, ok := down[m.ID]; !ok {
			down[m.ID] = now
			n.log.Info("autopilot: a member is down", "peer", m.ID)
		}
	}
	for _, m := range members {
		since, ok := down[m.ID]
		if !ok || now.Sub(since) < ap.RemoveDeadAfter {
			continue
		}
		if !majorityWithout(n.servers(), reached, m.ID) {
			n.autopilotHeld.Add(1)
			n.log.Warn("autopilot: not removing a dead member: the voters reached without it are no majority", "peer", m.ID)
			continue
		}
		var why *fsm.Error
		n.fsm.Read(func(s *fsm.State) { why = s.CanRemoveDead(m.ID) })
		if why != nil {
			n.autopilotHeld.Add(1)
			n.log.Warn("autopilot: not removing a dead member", "peer", m.ID, "why", why.Message)
			continue
		}
		sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRemoveDeadNode, RemoveDeadNode: &fsm.RemoveDead{Node: m.ID, DownFor: now.Sub(since)}})
		if err == nil {
			_, err = n.submit(ctx, sg)
		}
		if err != nil {
			n.log.Warn("autopilot: removing a dead member", "peer", m.ID, "err", err)
			continue
		}
		n.log.Info("autopilot: removed a dead member; resharing without it", "peer", m.ID, "down_for", now.Sub(since))
		delete(down, m.ID)
		return // one change at a time
	}
}

// answers says whether the member at addr answers the leader's own call on
// its node port, within a second.
func (n *Node) answers(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var ns nodeStatus
	_, err := n.call(ctx, addr, statusPath, nil, &ns)
	return err == nil
}

// majorityWithout says whether the voters reached, without member id, are
// a majority of the voters that stay once id is removed.
func majorityWithout(servers []raft.Server, reached map[string]bool, id string) bool {
	voters, up := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter || string(s.ID) == id {
			continue
		}
		voters++
		if reached[string(s.ID)] {
			up++
		}
	}
	return voters > 0 && up >= voters/2+1
}
