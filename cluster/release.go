package cluster

import (
	"bytes"
	"context"
	"net/http"

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
// combines and decrypts here (release), and a signing request with an
// assembled ECDSA key, which the coordinator signs with
// (assembledsign.go).

// releaseContext binds a partial's proof to one request, key version and
// epoch.
func releaseContext(clusterID string, key *fsm.Key, epoch uint64, req *fsm.Signed) []byte {
	return fsm.ReleaseContext(clusterID, key.Name, key.Version, epoch, req.Payload)
}

func (n *Node) handlePartial(w http.ResponseWriter, r *http.Request) {
	var req partialRequest
	if err := readPartialRequest(r, &req); err != nil {
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
	return holderAnswer(ctx, n, req, func(cmd *fsm.Command, key *fsm.Key, _ []byte, share holderShare) (*shamir.Partial, error) {
		if len(cmd.Release.Ephemeral) != 0 {
			return nil, Errorf(KindInvalid, "a partial for a request with an ephemeral key is only given sealed to that key")
		}
		if cmd.Release.Op == fsm.OpSign && !fsm.Assembled(key.Type) {
			// An assembled key's signature is made whole by the node that
			// coordinates it (assembledsign.go); other keys sign by quorum.
			return nil, Errorf(KindInvalid, "key %q is a %s key: a signing request with it gets signature shares, not partials", key.Name, key.Type)
		}
		return share.partial()
	})
}

// holderAnswer runs a holder's checks (holder.go) on a release request and
// returns what compute makes with this node's partial (partial, from the
// share of the epoch the coordinator read: holdervalues.go).
//
// Unless the read its checks are made at is in hand when the request
// arrives (readInHand), the holder computes while it waits for it (its
// own read, or the leader's that follows the request), on the state it
// has applied (at least the coordinator's index), if req passes the
// checks there: the answer leaves the holder only once the read came and
// was applied, and the checks stand at it (finishHolderCheck: made on a
// state at or past the read's index, or made again there for the same
// key version, epoch and request); otherwise it computes again there.
// Nothing the checks at the read would refuse is answered, and the read
// costs the release only what it takes longer than the computation.
func holderAnswer[P any](ctx context.Context, n *Node, req *partialRequest, compute holderCompute[P]) (_ *P, err error) {
	defer n.observeHolder(ctx, req, &err)()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if req.Request == nil {
		return nil, Errorf(KindInvalid, "the holder's request carries no signed request")
	}
	if !req.local {
		defer n.traceStep(req.Request, "holder: the whole answer")()
	}
	read := n.startHolderRead(req)
	var (
		earlyG *holderGrant
		early  *P
	)
	endEarly := n.traceStep(req.Request, "holder: early check and compute")
	if !n.readInHand(req) && n.waitApplied(ctx, req.ReadIndex) == nil {
		if g, err := n.holderCheck(req, now()); err == nil && g.epoch == req.Epoch {
			if p, err := computeWithShare(n, g, releaseContext(g.clusterID, g.key, g.epoch, req.Request), compute); err == nil {
				earlyG, early = g, p
			}
		}
	}
	endEarly()
	g, err := n.finishHolderCheck(ctx, req, read, earlyG)
	if err != nil {
		return nil, err
	}
	if g.epoch != req.Epoch {
		return nil, Errorf(KindConflict, "node %s is at key epoch %d, not %d", n.id.NodeID, g.epoch, req.Epoch)
	}
	if g == earlyG {
		return early, nil // the checks it was computed for stand at the read
	}
	rctx := releaseContext(g.clusterID, g.key, g.epoch, req.Request)
	// The request, key version and epoch are bound into rctx. With them
	// and the key's ciphertext equal, the computation is the one the
	// checks allow.
	if early != nil && bytes.Equal(releaseContext(earlyG.clusterID, earlyG.key, earlyG.epoch, req.Request), rctx) &&
		bytes.Equal(earlyG.key.R, g.key.R) && bytes.Equal(earlyG.key.Sealed, g.key.Sealed) {
		return early, nil
	}
	return computeWithShare(n, g, rctx, compute)
}

// holderCompute makes a holder's answer from its request, the key, the
// release context and share, which computes with the holder's share for
// them.
type holderCompute[P any] func(cmd *fsm.Command, key *fsm.Key, rctx []byte, share holderShare) (*P, error)

// holderShare computes with this node's share of one epoch, for one key
// and release context.
type holderShare struct {
	n     *Node
	epoch uint64
	key   *fsm.Key
	rctx  []byte
}

// partial is the holder's partial, with its proof.
func (h holderShare) partial() (*shamir.Partial, error) {
	return h.n.holderPartial(h.epoch, h.key, h.rctx)
}

// sealValue is the holder's value sealed to the ephemeral key eph with
// its share, for share mode (holderCache.sealValue), and its index.
func (h holderShare) sealValue(eph []byte) (uint32, []byte, error) {
	c, err := h.n.holderCacheOf(h.epoch)
	if err != nil {
		return 0, nil, err
	}
	return c.sealValue(h.key, eph, h.rctx)
}

// computeWithShare calls compute for grant g with this node's share of
// g's epoch.
func computeWithShare[P any](n *Node, g *holderGrant, rctx []byte, compute holderCompute[P]) (*P, error) {
	p, err := compute(g.cmd, g.key, rctx, holderShare{n: n, epoch: g.epoch, key: g.key, rctx: rctx})
	if err != nil {
		if _, ok := err.(*Error); ok {
			return nil, err
		}
		return nil, Errorf(KindInternal, "computing partial: %v", err)
	}
	return p, nil
}

// release runs a gateway node's release end to end and returns the
// plaintext and the key's metadata at the read.
func (n *Node) release(ctx context.Context, sg *fsm.Signed) ([]byte, *fsm.Key, error) {
	if _, err := n.joined(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.coordinatorRead(ctx, sg, nil)
	if err != nil {
		return nil, nil, err
	}
	pub := &shamir.PublicPoly{Commits: a.poly}
	rctx := releaseContext(a.clusterID, a.key, a.epoch, sg)
	ct := &shamir.Ciphertext{R: a.key.R, Sealed: a.key.Sealed}
	info := fsm.SealInfo(a.clusterID, a.key.Name)
	plain, err := gather(ctx, n, a, partialCall(n), a.partialFor(a.epoch), holdersListed, nil, func(own, others []*shamir.Partial) ([]byte, error) {
		if len(own) == 1 {
			return shamir.OpenWithOwn(pub, ct, info, own[0], others, rctx)
		}
		return shamir.Open(pub, ct, info, others, rctx)
	})
	if err != nil {
		return nil, nil, err
	}
	return plain, a.key.Metadata(), nil
}

// holdersListed is gather's tooFew for the shares of the cluster key.
const holdersListed = "the cluster lists %d share holders of %d needed"

// partialCall asks a holder for its partial in the clear.
func partialCall(n *Node) holderCall[shamir.Partial] {
	return holderCall[shamir.Partial]{path: "/internal/v1/partial", local: n.answerPartial,
		index: func(p *shamir.Partial) uint32 { return p.Index }}
}
