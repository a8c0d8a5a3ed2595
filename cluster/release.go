package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Releasing a secret: the coordinating node gets a read index, and asks
// every share holder of the epoch for its partial s_i*R. Each holder waits
// until it has applied the read index, then checks the request's
// signature, its nonce and the rules itself before it answers with the
// partial and a DLEQ proof. The cluster secret is never rebuilt.
//
// Who combines depends on who signed. An operator's or a machine's request
// carries an ephemeral key: every holder seals its partial to it, and the
// coordinator only relays them (machines.go; the client checks the proofs
// against its pinned cluster key and combines), so it never holds the
// secret. Only a gateway node's request (kxd, Tang, Keyless SSL: the node
// is the client) gets partials in the clear, which the coordinator checks,
// combines and decrypts here (release).

// releaseContext binds a partial's proof to one request, key version and
// epoch.
func releaseContext(clusterID string, key *fsm.Key, epoch uint64, req *fsm.Signed) []byte {
	return fsm.ReleaseContext(clusterID, key.Name, key.Version, epoch, req.Payload)
}

// partialRequest is what a coordinator asks a share holder. ReadIndex is
// only a lower bound for the holder: it makes its own read.
type partialRequest struct {
	ReadIndex uint64      `json:"read_index"`
	Request   *fsm.Signed `json:"request"`
	Version   uint64      `json:"version"`
	Epoch     uint64      `json:"epoch"`

	// local is set when the coordinator answers itself, after its own
	// read: never from the wire.
	local bool
}

func (n *Node) handlePartial(w http.ResponseWriter, r *http.Request) {
	var req partialRequest
	if err := readRPC(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	p, err := n.answerPartial(r.Context(), &req)
	writeRPC(w, p, err)
}

// answerPartial is a share holder's side of a gateway node's release: the
// partial in the clear, for the coordinator, which is the client, to
// combine. fsm.State.AuthorizeRelease refuses an operator's or a machine's
// request without an ephemeral key.
func (n *Node) answerPartial(ctx context.Context, req *partialRequest) (*shamir.Partial, error) {
	var p *shamir.Partial
	err := n.computePartial(ctx, req, func(cmd *fsm.Command, share *shamir.Share, key *fsm.Key, rctx []byte) error {
		if len(cmd.Release.Ephemeral) != 0 {
			return Errorf(KindInvalid, "a partial for a request with an ephemeral key is only given sealed to that key")
		}
		var err error
		p, err = shamir.ComputePartial(rand.Reader, share, key.R, rctx)
		return err
	})
	return p, err
}

// computePartial runs a holder's checks on a release request and calls
// compute with this node's share of the epoch the coordinator read, which
// it erases afterwards.
func (n *Node) computePartial(ctx context.Context, req *partialRequest, compute func(cmd *fsm.Command, share *shamir.Share, key *fsm.Key, rctx []byte) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	g, err := n.authorizeAsHolder(ctx, req)
	if err != nil {
		return err
	}
	if g.epoch != req.Epoch {
		return Errorf(KindConflict, "node %s is at key epoch %d, not %d", n.id.NodeID, g.epoch, req.Epoch)
	}
	share := n.shares.current(g.epoch)
	if share == nil {
		return Errorf(KindNoQuorum, "node %s holds no share of epoch %d", n.id.NodeID, g.epoch)
	}
	defer share.Erase()
	if err := compute(g.cmd, share, g.key, releaseContext(g.clusterID, g.key, g.epoch, req.Request)); err != nil {
		if _, ok := err.(*Error); ok {
			return err
		}
		return Errorf(KindInternal, "computing partial: %v", err)
	}
	return nil
}

// release runs a gateway node's release end to end and returns the
// plaintext and the key's metadata at the read.
func (n *Node) release(ctx context.Context, sg *fsm.Signed) ([]byte, *fsm.Key, error) {
	rt, err := n.joined()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return nil, nil, err
	}
	var (
		key       *fsm.Key
		holders   []fsm.Node
		poly      [][]byte
		t         int
		epoch     uint64
		clusterID string
		readAt    uint64
		ferr      *fsm.Error
	)
	n.fsm.Read(func(s *fsm.State) {
		// The coordinator checks first to fail fast with a precise error;
		// the holders' checks are the ones that count.
		_, k, e := s.AuthorizeRelease(sg, time.Now())
		if e != nil {
			ferr = e
			return
		}
		c := *k
		key, poly, t, epoch, clusterID = &c, s.Poly, s.Threshold, s.Epoch, s.ClusterID
		// The holders wait for the index this state is at, which may be
		// past the read index: then they see the same key version.
		readAt = s.Applied
		for _, h := range s.Holders() {
			holders = append(holders, *h)
		}
	})
	if ferr != nil {
		return nil, nil, fromFSM(ferr)
	}
	if len(holders) < t {
		return nil, nil, Errorf(KindNoQuorum, "the cluster lists %d share holders of %d needed", len(holders), t)
	}
	req := &partialRequest{ReadIndex: readAt, Request: sg, Version: key.Version, Epoch: epoch}
	pub := &shamir.PublicPoly{Commits: poly}
	rctx := releaseContext(clusterID, key, epoch, sg)
	ct := &shamir.Ciphertext{R: key.R, Sealed: key.Sealed}
	info := fsm.SealInfo(clusterID, key.Name)
	ask := askHolder(n, rt, "/internal/v1/partial", req, n.answerPartial, func(p *shamir.Partial) uint32 { return p.Index })
	plain, err := gatherAndOpen(ctx, n.id.NodeID, holders, t, ask, func(own, others []*shamir.Partial) ([]byte, error) {
		if len(own) == 1 {
			return shamir.OpenWithOwn(pub, ct, info, own[0], others, rctx)
		}
		return shamir.Open(pub, ct, info, others, rctx)
	})
	if err != nil {
		return nil, nil, err
	}
	return plain, key.Metadata(), nil
}

// hedgeDelay is how long the coordinator waits on the first t holders
// before it asks the others too.
const hedgeDelay = 150 * time.Millisecond

// askHolder returns the function that gets one holder's answer to req:
// computed by local for this node, asked at path of the others. index says
// which share an answer is for; it must be the holder's.
func askHolder[P any](n *Node, rt *runtime, path string, req *partialRequest, local func(context.Context, *partialRequest) (*P, error), index func(*P) uint32) func(context.Context, fsm.Node) (*P, error) {
	return func(ctx context.Context, h fsm.Node) (*P, error) {
		var p *P
		if h.ID == n.id.NodeID {
			own := *req
			own.local = true
			var err error
			if p, err = local(ctx, &own); err != nil {
				return nil, err
			}
		} else {
			p = new(P)
			if _, err := n.call(ctx, rt, h.RaftAddr, path, req, p); err != nil {
				return nil, err
			}
		}
		if i := index(p); i != h.Index {
			return nil, fmt.Errorf("answered for share %d, holds %d", i, h.Index)
		}
		return p, nil
	}
}

type partialResult[P any] struct {
	node string
	own  bool // computed here, with this node's share
	p    P
	err  error
}

// gatherAndOpen asks t holders (itself first) for partials, and the other
// holders too if one of them fails or is slow; it opens as soon as the
// partials it has contain t that verify. open gets this node's own partial
// (none or one) apart from the others', so it can skip checking its own.
func gatherAndOpen[P, R any](ctx context.Context, self string, holders []fsm.Node, t int, ask func(context.Context, fsm.Node) (P, error), open func(own, others []P) (R, error)) (R, error) {
	var zero R
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slices.SortStableFunc(holders, func(a, b fsm.Node) int {
		if a.ID == self {
			return -1
		}
		if b.ID == self {
			return 1
		}
		return 0
	})
	results := make(chan partialResult[P], len(holders))
	asked := 0
	askUpTo := func(upTo int) {
		for ; asked < upTo && asked < len(holders); asked++ {
			h := holders[asked]
			go func() {
				p, err := ask(ctx, h)
				results <- partialResult[P]{node: h.ID, own: h.ID == self, p: p, err: err}
			}()
		}
	}
	askUpTo(t)
	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	var own, got []P // got: the others'
	failures := map[string]error{}
	var lastOpen error
	for answered := 0; answered < asked || asked < len(holders); {
		select {
		case <-hedge.C:
			askUpTo(len(holders))
			continue
		case <-ctx.Done():
			askUpTo(len(holders)) // nothing more will come; report what we have
			return zero, quorumError(len(own)+len(got), t, len(holders), failures, ctx.Err())
		case r := <-results:
			answered++
			if r.err != nil {
				failures[r.node] = r.err
				askUpTo(len(holders))
				continue
			}
			if r.own {
				own = append(own, r.p)
			} else {
				got = append(got, r.p)
			}
		}
		if len(own)+len(got) < t {
			continue
		}
		plain, err := open(own, got)
		if err == nil {
			return plain, nil
		}
		// A partial did not verify: its holder is named in the error.
		lastOpen = err
		askUpTo(len(holders))
	}
	if lastOpen != nil {
		failures["combine"] = lastOpen
	}
	return zero, quorumError(len(own)+len(got), t, len(holders), failures, nil)
}

// quorumError explains a release that got too few partials. A refusal
// every failed holder agrees on (the key was revoked, say) is reported as
// that refusal; otherwise it is "no quorum" with each holder's reason.
func quorumError(got, t, n int, failures map[string]error, ctxErr error) error {
	kinds := map[Kind]int{}
	var first error
	for _, err := range failures {
		k := KindOf(err)
		kinds[k]++
		if first == nil && k != KindInternal && k != KindNoQuorum {
			first = err
		}
	}
	for k, c := range kinds {
		if c == len(failures) && k != KindInternal && k != KindNoQuorum && first != nil {
			return Errorf(k, "%s", first.Error())
		}
	}
	var reasons []string
	for node, err := range failures {
		reasons = append(reasons, node+": "+err.Error())
	}
	sort.Strings(reasons)
	if ctxErr != nil {
		reasons = append(reasons, "the others did not answer in time")
	}
	return Errorf(KindNoQuorum, "%d of the %d share holders needed answered (%d holders; %s)", got, t, n, strings.Join(reasons, "; "))
}
