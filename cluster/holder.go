package cluster

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// A share holder's checks, the same for every operation that uses its
// share (a release's partial, a machine's sealed partial, a Tang
// exchange). The coordinator that asks may lie: it chooses the read index
// it sends, the request it relays and when. So the holder:
//
//   - establishes freshness itself: it gets its own read index from the
//     leader (shared by the holder's concurrent requests, never older than
//     the request) and waits until it has applied it and the coordinator's,
//     so a revoke acknowledged before the request started is applied here
//     whatever index the coordinator claims; when the coordinator is the
//     node it knows as the leader, it takes the read that node sends with
//     its request (leaderVouched) or after it (readFollows) instead, and
//     answers nothing before that read came;
//   - authorizes the request against its own state and clock
//     (authorizeRequest: the signature, or the whole chain of a
//     capability token, from its operator's key);
//   - refuses a request issued before this node started: its nonce cache
//     lives in memory, so a request it answered in an earlier life could
//     otherwise be replayed to it within the freshness window;
//   - spends the nonce, once.

// holderGrant is what a holder's checks let through.
type holderGrant struct {
	cmd       *fsm.Command
	key       *fsm.Key // a shallow copy of the state's
	epoch     uint64
	clusterID string
	basis     string // what allowed it (fsm.State.ReleaseBasis)
	// applied is the index of the state the checks were made on.
	applied uint64
}

// authorizeAsHolder runs the checks above on req. It is called with the
// node's own read already done when the node is the coordinator itself
// (req.local).
func (n *Node) authorizeAsHolder(ctx context.Context, req *partialRequest) (*holderGrant, error) {
	if req.Request == nil {
		return nil, Errorf(KindInvalid, "the holder's request carries no signed request")
	}
	return n.finishHolderCheck(ctx, req, n.startHolderRead(req), nil)
}

// startHolderRead starts the holder's own read for req (none when the
// node is the coordinator: req.local) and returns what waits for it: the
// index the holder's checks must be made at.
func (n *Node) startHolderRead(req *partialRequest) func(context.Context) (uint64, error) {
	if req.local && req.readAfter != nil {
		return func(ctx context.Context) (uint64, error) {
			lr, err := req.readAfter.wait(ctx)
			if err != nil {
				return 0, err
			}
			return max(req.ReadIndex, lr.Index), n.cons.divergedErr()
		}
	}
	if req.local {
		return func(context.Context) (uint64, error) { return req.ReadIndex, n.cons.divergedErr() }
	}
	if n.readFollows(req) {
		return func(ctx context.Context) (uint64, error) {
			b, err := req.follow(ctx)
			if err != nil {
				return 0, Errorf(KindNoQuorum, "node %s: the leader's read did not follow its request", n.id.NodeID)
			}
			lr, err := parseFollowedRead(b)
			if err != nil {
				return 0, err
			}
			if _, leader := n.cons.leader(); leader != req.from {
				return 0, Errorf(KindNoQuorum, "node %s: the read followed from %s, which it no longer knows as the leader", n.id.NodeID, req.from)
			}
			if err := n.checkLeaderChain(ctx, readIndexResult{index: lr.Index, chain: lr.Chain, leader: req.from}); err != nil {
				return 0, err
			}
			return max(req.ReadIndex, lr.Index), nil
		}
	}
	if lr := n.leaderVouched(req); lr != nil {
		return func(ctx context.Context) (uint64, error) {
			if err := n.checkLeaderChain(ctx, readIndexResult{index: lr.Index, chain: lr.Chain, leader: req.from}); err != nil {
				return 0, err
			}
			return max(req.ReadIndex, lr.Index), nil
		}
	}
	round := n.holderReadIndex()
	return func(ctx context.Context) (uint64, error) {
		select {
		case r := <-round:
			if r.err != nil {
				return 0, r.err
			}
			if err := n.checkLeaderChain(ctx, r); err != nil {
				return 0, err
			}
			return max(req.ReadIndex, r.index), nil
		case <-ctx.Done():
			return 0, Errorf(KindNoQuorum, "node %s could not confirm with the leader that its state is current", n.id.NodeID)
		}
	}
}

// leaderVouched is the read req carries (partialRequest.LeaderRead) when
// its sender is the node this holder knows as the leader, or nil. The
// holder's own read would ask that node for the same thing, and take its
// answer: the leader confirmed its leadership in a round that started
// after it received the client's request, so a revoke acknowledged before
// the request was made is at or below the index. A lying leader can
// answer a holder's own read with any index it likes too; a coordinator
// that is not the leader cannot vouch at all
// (TestOnlyTheLeaderVouchesForAHoldersRead).
func (n *Node) leaderVouched(req *partialRequest) *leaderRead {
	if req.LeaderRead == nil || req.from == "" || req.from == n.id.NodeID {
		return nil
	}
	if _, leader := n.cons.leader(); leader != req.from {
		return nil
	}
	return req.LeaderRead
}

// readFollows reports whether req's read follows it from the node this
// holder knows as the leader (partialRequest.ReadFollows), on a call that
// can carry it: the holder waits for that read instead of making its own,
// as it takes a read the leader sent with its request (leaderVouched).
func (n *Node) readFollows(req *partialRequest) bool {
	if !req.ReadFollows || req.follow == nil || req.from == "" || req.from == n.id.NodeID {
		return false
	}
	_, leader := n.cons.leader()
	return leader == req.from
}

// readInHand reports whether the read req's checks are made at is known
// when the request arrives: the coordinator's own, or one the leader sent
// with it. Otherwise the holder computes while it waits (holderAnswer).
func (n *Node) readInHand(req *partialRequest) bool {
	if req.local {
		return req.readAfter == nil
	}
	return !n.readFollows(req) && n.leaderVouched(req) != nil
}

// finishHolderCheck waits for the holder's read (read, from
// startHolderRead), then runs the checks above at it and spends the
// request's nonce. early, if not nil, is a grant of the same checks made
// before the read came, on the state applied then: it stands if that
// state was at or past the read's index, which is all a read asks of the
// state it is served from; otherwise the checks run again.
func (n *Node) finishHolderCheck(ctx context.Context, req *partialRequest, read func(context.Context) (uint64, error), early *holderGrant) (*holderGrant, error) {
	if req.Request == nil {
		return nil, Errorf(KindInvalid, "the holder's request carries no signed request")
	}
	endRead := n.traceStep(req.Request, "holder: wait for its read")
	index, err := read(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, index); err != nil {
		return nil, err
	}
	endRead()
	defer n.traceStep(req.Request, "holder: check at its read")()
	now := now()
	g, err := early, error(nil)
	if early == nil || early.applied < index {
		g, err = n.holderCheck(req, now)
	}
	if err == nil {
		err = n.nonces.use(req.Request.Signer+"/"+hex.EncodeToString(g.cmd.Nonce), time.Unix(0, g.cmd.IssuedAt), now)
	}
	basis := ""
	if err == nil {
		basis = g.basis
	}
	if aerr := n.decideCommand(roleHolder, req.Request, req.command(), basis, err); err == nil && aerr != nil {
		err = aerr
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// holderCheck authorizes req on the state this node has applied, at now,
// and checks the key version the coordinator read; it does not spend the
// nonce.
func (n *Node) holderCheck(req *partialRequest, now time.Time) (*holderGrant, error) {
	if req.Request == nil {
		return nil, Errorf(KindInvalid, "the holder's request carries no signed request")
	}
	var (
		g    holderGrant
		ferr *fsm.Error
	)
	n.fsm.Read(func(s *fsm.State) {
		cmd, k, basis, e := authorizeRequest(s, req.Request, now, parseCaller(req.Caller))
		if e != nil {
			ferr = e
			return
		}
		// A shallow copy: the State's slices are never mutated in place.
		key := *k
		g = holderGrant{cmd: cmd, key: &key, epoch: s.Epoch, clusterID: s.ClusterID, basis: basis, applied: s.Applied}
	})
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	if g.key.Version != req.Version {
		return nil, Errorf(KindConflict, "key %q is at version %d here, not %d", g.key.Name, g.key.Version, req.Version)
	}
	return &g, nil
}

// holderReadIndex asks the leader for a read index for a holder's check,
// and returns where the answer arrives. Concurrent callers share one
// request to the leader, but a caller only joins a round that starts after
// it arrived, so its index is as fresh as one it had asked for alone.
func (n *Node) holderReadIndex() <-chan readIndexResult {
	return n.holderReads.join(func() readIndexResult {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
		defer cancel()
		m, leader, err := n.cons.readMark(ctx)
		return readIndexResult{index: m.Index, chain: m.Hash, leader: leader, err: err}
	})
}

type readIndexResult struct {
	index  uint64
	chain  []byte // the leader's chain hash at index (chain.go)
	leader string
	err    error
}

// checkLeaderChain waits until this replica has applied the leader's read
// index and compares its chain hash there with the leader's: a replica
// whose history differs from the leader's, or did once, serves no share.
func (n *Node) checkLeaderChain(ctx context.Context, r readIndexResult) error {
	if err := n.waitApplied(ctx, r.index); err != nil {
		return err
	}
	if err := n.cons.compareChain(r.leader, chainMark{Index: r.index, Hash: r.chain}); err != nil {
		return err
	}
	return n.cons.divergedErr()
}

// nonceCache remembers the nonces of the requests a holder answered for
// twice the clock skew window, so a captured request is not answered
// twice. It lives in memory: requests issued before it was made are
// refused, since an earlier life of the node may have answered them.
type nonceCache struct {
	since  time.Time
	mu     sync.Mutex
	seen   map[string]time.Time
	pruned time.Time
}

func newNonceCache(since time.Time) *nonceCache {
	return &nonceCache{since: since, seen: map[string]time.Time{}}
}

// use records a request's nonce, or says why the request is refused.
func (c *nonceCache) use(key string, issued, now time.Time) error {
	if issued.Before(c.since) {
		return Errorf(KindUnauthenticated, "request issued at %s, before this node started at %s: sign a new request",
			issued.UTC().Format(time.RFC3339Nano), c.since.UTC().Format(time.RFC3339Nano))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.pruned) > time.Minute {
		for k, exp := range c.seen {
			if now.After(exp) {
				delete(c.seen, k)
			}
		}
		c.pruned = now
	}
	if exp, ok := c.seen[key]; ok && now.Before(exp) {
		return Errorf(KindUnauthenticated, "request nonce was already used: a replay is refused")
	}
	c.seen[key] = now.Add(2 * fsm.MaxClockSkew)
	return nil
}
