package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// What the node measures (cluster/metrics declares the metrics): the
// operations it coordinates and answers, observed where each begins and
// ends; Raft's commits, applies and leader changes; resharing rounds; and
// the state gauges, read at each scrape.

// Operation labels of keyquorum_operations_total besides the command
// types of writes.
const (
	opRelease   = "release"   // a blind release (operator) or a gateway's release
	opCAS       = "cas"       // the comparison release of a compare-and-swap
	opUnlock    = "unlock"    // a machine's unlock
	opExchange  = "exchange"  // a Tang key's exchange, or an x25519 key's (Node.TransitExchange)
	opSign      = "sign"      // a signature by quorum (FROST or threshold RSA, Node.Sign)
	opDecrypt   = "decrypt"   // a transit decryption by quorum (Node.TransitDecrypt)
	opDerive    = "derive"    // a transit derivation by quorum (Node.TransitDecrypt, op derive)
	opExport    = "export"    // a transit key's wrapped export (Node.TransitExport)
	opRSA       = "rsa"       // a threshold RSA key's x^d for a gateway (sign or decrypt)
	opHolder    = "holder"    // this node answering a coordinator as a share holder
	opRead      = "read"      // key list and show
	opAssembled = "assembled" // an AES-CBC or HMAC key's operation on this node (Node.Symmetric)
)

// Metrics are the node's metrics.
func (n *Node) Metrics() *metrics.Set { return n.metrics }

// observe records an operation on the key named key (its type read from
// the applied state) that began at start.
func (n *Node) observe(ctx context.Context, op, key string, start time.Time, err error) {
	n.metrics.Observe(ctx, op, n.keyType(key), start, err)
}

// observeHolder starts observing this node's answer as a share holder to
// req (a partial, an exchange, a FROST signature share, a threshold RSA
// share), and returns what records it with *err when the answer is done.
// The coordinator's answer to itself (req.local) is part of the operation
// it coordinates, and is not counted again.
func (n *Node) observeHolder(ctx context.Context, req *partialRequest, err *error) func() {
	if req.local {
		return func() {}
	}
	_, key := labelsOf(req.command())
	start := time.Now()
	return func() { n.observe(ctx, opHolder, key, start, *err) }
}

// keyType is the type of the key named name in the applied state, or "".
func (n *Node) keyType(name string) string {
	if name == "" {
		return ""
	}
	var t string
	n.fsm.Read(func(s *fsm.State) {
		if k := s.ResolveKey(name); k != nil {
			t = k.Type
		}
	})
	return t
}

// commandOf reads a signed command's type and key, for the labels, from
// a payload that may not parse.
func commandOf(sg *fsm.Signed) (op, key string) {
	return labelsOf(decodeCommand(sg))
}

// decodeCommand is sg's command, or nil when sg is nil or its payload
// does not parse as one.
func decodeCommand(sg *fsm.Signed) *fsm.Command {
	if sg == nil {
		return nil
	}
	c, err := fsm.DecodeCommand(sg.Payload)
	if err != nil {
		return nil
	}
	return c
}

// labelsOf is a decoded command's type and key, for the labels; nil or
// a command without a type is "invalid".
func labelsOf(c *fsm.Command) (op, key string) {
	if c == nil || c.Type == "" {
		return "invalid", ""
	}
	switch {
	case c.Release != nil:
		key = c.Release.Key
		if c.Release.Op == fsm.OpCAS {
			return opCAS, key
		}
		return opRelease, key
	case c.CreateKey != nil:
		key = c.CreateKey.Name
	case c.ReplaceKey != nil:
		key = c.ReplaceKey.Name
	case c.RevokeKey != "":
		key = c.RevokeKey
	case c.DestroyKey != "":
		key = c.DestroyKey
	}
	return c.Type, key
}

// stateMetrics is what the state gauges show, read at a scrape.
func (n *Node) stateMetrics() metrics.State {
	n.mu.Lock()
	rt := n.rt
	n.mu.Unlock()
	if rt == nil {
		return metrics.State{}
	}
	alive := map[string]bool{n.id.NodeID: true}
	for _, m := range rt.gossip.Members() {
		if m.State == memberlist.StateAlive {
			alive[m.Name] = true
		}
	}
	st := metrics.State{Joined: true, Leader: n.raftState() == raft.Leader, Diverged: n.cons.diverged.Load() != nil}
	if c, a := n.commitIndex(), n.appliedIndex(); c > a {
		st.ApplyLag = c - a
	}
	n.fsm.Read(func(s *fsm.State) {
		st.Epoch, st.Threshold = s.Epoch, s.Threshold
		for _, h := range s.Holders() {
			st.Holders++
			if alive[h.ID] {
				st.HoldersReachable++
			}
		}
	})
	for _, srv := range n.servers() {
		if srv.Suffrage != raft.Voter {
			continue
		}
		st.Voters++
		if alive[string(srv.ID)] {
			st.VotersReachable++
		}
	}
	st.ShareHeld = n.shares.holds(st.Epoch)
	return st
}

// watchRounds counts the resharing rounds this node sees end, with their
// duration from when it saw them start: completed when the epoch moved
// on with it (it is the state's last round), replaced when it ended
// otherwise (an admin's restart_reshare). A node that starts in the
// middle of a round times it from its start.
func (n *Node) watchRounds(ctx context.Context, _ *runtime) {
	var (
		round   uint64
		started time.Time
	)
	for {
		_, changed := n.watch()
		var cur, last uint64
		n.fsm.Read(func(s *fsm.State) {
			if s.LastRound != nil {
				last = s.LastRound.Round
			}
			if s.Reshare != nil {
				cur = s.Reshare.Round
			}
		})
		if cur != round {
			if round != 0 {
				outcome := "replaced"
				if last == round {
					outcome = "completed"
				}
				n.metrics.ReshareRounds.WithLabelValues(outcome).Inc()
				n.metrics.ReshareSeconds.WithLabelValues(outcome).Observe(time.Since(started).Seconds())
			}
			round, started = cur, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// countLeaderChanges counts the leaders Raft reports on this node (a
// change to no leader is not counted; the next leader is).
func (c *consensus) countLeaderChanges(ctx context.Context, run *raftRun) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		l, ok := o.Data.(raft.LeaderObservation)
		return ok && l.LeaderID != ""
	})
	run.raft.RegisterObserver(obs)
	defer run.raft.DeregisterObserver(obs)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			c.cfg.Metrics.LeaderChanges.Inc()
		}
	}
}

// Ready says whether this node can serve a release now, or why not: it
// is in a cluster, knows a leader, and the reachable holders and Raft
// voters leave a failure tolerance of at least zero (t holders and a
// majority). It asks no other node: gossip's view may be a few seconds
// old.
func (n *Node) Ready() error {
	st := n.stateMetrics()
	if !st.Joined {
		return Errorf(KindNotInitialized, "node %s is not in a cluster yet", n.id.NodeID)
	}
	if err := n.cons.divergedErr(); err != nil {
		return err
	}
	if _, leader := n.leader(); leader == "" {
		return Errorf(KindNoQuorum, "node %s knows no Raft leader", n.id.NodeID)
	}
	if st.Epoch == 0 {
		return Errorf(KindNoQuorum, "the cluster key is not made yet (it waits for its initial members)")
	}
	tol := st.Tolerance()
	if tol.Holders < 0 {
		return Errorf(KindNoQuorum, "%d of %d share holders are reachable, %d needed", st.HoldersReachable, st.Holders, st.Threshold)
	}
	if tol.Raft < 0 {
		return Errorf(KindNoQuorum, "%d of %d Raft voters are reachable, a majority needed", st.VotersReachable, st.Voters)
	}
	return nil
}
