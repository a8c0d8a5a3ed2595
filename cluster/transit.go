package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	goruntime "runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Transit decryption by quorum (docs/transit.md). A caller encrypts on
// its own with a version's public key; to decrypt it signs a request (op
// decrypt) that carries the ephemeral points E of its ciphertexts, never
// the ciphertexts, and an ephemeral X25519 key. The coordinator reads,
// authorizes, and asks t holders (gather, as every quorum operation);
// each holder runs the checks every holder runs (holder.go: its own read
// index, the signed request, the rules, the nonce), then for each point
// checks the version (fsm.TransitVersionFor) and the encryptor's proof
// that rides with the point in the signed request (checkTransitProofs),
// and answers its partial
// s_i*E with a DLEQ proof, or an error for that point alone, sealed to the
// caller's key. The coordinator relays t sealed answers: it never sees a
// partial nor a plaintext. The caller checks every proof against the
// version's commitments, names a holder whose proof fails, combines and
// opens (api.OpenTransitDecrypt). A batch is one request: one read, one
// nonce, one round to t holders, whatever the number of points.

func (n *Node) handleTransitDecrypt(w http.ResponseWriter, r *http.Request) {
	var req partialRequest
	if err := readPartialRequest(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	p, err := n.answerTransitDecrypt(r.Context(), &req)
	writeRPC(w, p, err)
}

// transitAllowed is where a holder decides what a granted request may do
// with a transit key beyond the access rules AuthorizeRelease checked
// (an operator's rule for op decrypt, derive or exchange, or admin):
// that the request is a decryption, a derivation or an export (of an
// exportable key) with a transit key, or an exchange with an x25519 key (fsm's keyKinds decide which type
// answers which; this refuses anything else that reaches here). A
// request with a capability token has had its whole chain verified by
// this holder before (authorizeAsHolder, authorizeRequest: flag decrypt,
// derive or exchange, tokenFlags), so no coordinator can widen it.
func (n *Node) transitAllowed(g *holderGrant) error {
	op := g.cmd.Release.Op
	switch {
	case g.key.Transit() == nil || (op != fsm.OpDecrypt && op != fsm.OpDerive && op != fsm.OpExport && op != fsm.OpExchange) ||
		(op == fsm.OpExchange) != (g.key.Type == fsm.KeyTypeX25519):
		return Errorf(KindInvalid, "a transit answer is given only for a decryption, a derivation or an export of a %s key, or an exchange with an %s key", fsm.KeyTypeTransit, fsm.KeyTypeX25519)
	case op == fsm.OpExport:
		// AuthorizeRelease asked it already; asked again here, where the
		// share leaves, so that no other path can reach this without it.
		if ferr := fsm.TransitExportable(g.key); ferr != nil {
			return fromFSM(ferr)
		}
	}
	return nil
}

// answerTransitDecrypt is a holder's side: its checks, then a partial or
// an error for each point, sealed to the request's ephemeral key.
func (n *Node) answerTransitDecrypt(ctx context.Context, req *partialRequest) (_ *SealedPartial, err error) {
	if !req.local {
		_, key := commandOf(req.Request)
		defer func(start time.Time) { n.observe(ctx, opHolder, key, start, err) }(time.Now())
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	g, err := n.authorizeAsHolder(ctx, req)
	if err != nil {
		return nil, err
	}
	if g.epoch != req.Epoch {
		return nil, Errorf(KindConflict, "node %s is at key epoch %d, not %d", n.id.NodeID, g.epoch, req.Epoch)
	}
	if err := n.transitAllowed(g); err != nil {
		return nil, err
	}
	rel := g.cmd.Release
	if rel.Op == fsm.OpExport {
		return n.answerTransitExport(g, req)
	}
	points := rel.Points
	answers := make([]api.TransitItemPartial, len(rel.Points)+len(rel.Derive)) // one of them is empty
	if rel.Op == fsm.OpExchange {
		// The holder maps each peer's u to Q = 8*P itself: the caller
		// names a public key, never the point, and a twist or low-order
		// u gets that item's own refusal.
		points = make([]fsm.TransitPoint, len(rel.Points))
		for i, p := range rel.Points {
			Q, err := shamir.X25519PeerPoint(p.Point)
			if err != nil {
				answers[i].Error = &api.Error{Kind: api.KindInvalid, Message: fmt.Sprintf("peer public key %d: %v", i, err)}
				continue
			}
			points[i] = fsm.TransitPoint{Version: p.Version, Point: Q}
		}
	}
	if rel.Op == fsm.OpDerive {
		// The holder hashes each context to its point itself: the caller
		// chooses the context, never the point.
		points = make([]fsm.TransitPoint, len(rel.Derive))
		for i, d := range rel.Derive {
			X, err := shamir.TransitDerivePoint(api.TransitDeriveBinding(g.key.ID, d.Version, d.Context))
			if err != nil {
				return nil, Errorf(KindInternal, "hashing derivation context %d: %v", i, err)
			}
			points[i] = fsm.TransitPoint{Version: d.Version, Point: X}
		}
	}
	// Each version's share is made ready for partials (shamir.Prover),
	// kept in the epoch's holder cache (holdervalues.go) once opened: its
	// partials carry their proofs' commitments, so the caller checks
	// every proof of every item at once (api.OpenTransitDecrypt).
	hot, err := n.shares.holderCache(g.epoch)
	if err != nil {
		return nil, Errorf(KindInternal, "the share of epoch %d: %v", g.epoch, err)
	}
	provers := map[uint64]*shamir.Prover{}
	var dones []func()
	defer func() {
		for _, done := range dones {
			done()
		}
	}()
	// The shares first (one per version asked), then every point's
	// partial, in parallel.
	mine := uint32(0)
	versions := make([]*fsm.TransitVersion, len(points))
	for i, p := range points {
		if answers[i].Error != nil {
			continue
		}
		tv, ferr := fsm.TransitVersionFor(g.key, p.Version, g.epoch)
		if ferr != nil {
			answers[i].Error = fromFSM(ferr)
			continue
		}
		versions[i] = tv
		if provers[p.Version] == nil {
			open := func() (*shamir.Share, error) {
				sctx := api.TransitShareContext(g.clusterID, g.key.Name, tv.Sharing.Epoch, tv.Sharing.Commits[0])
				return n.sharingShare(fsm.SharingRef(g.key.Name, tv.Version), tv.Sharing, sctx)
			}
			prover, done, err := hot.transitProver(g.key, tv, open)
			if err != nil {
				return nil, err
			}
			provers[p.Version], dones = prover, append(dones, done)
		}
		mine = provers[p.Version].Index()
	}
	if rel.Op == fsm.OpDecrypt {
		checkTransitProofs(g.key.ID, points, versions, answers)
	}
	eachPoint(len(points), func(i int) {
		if versions[i] == nil {
			return
		}
		rctx := api.TransitDecryptContext(g.clusterID, g.key.Name, g.epoch, req.Request.Payload, i)
		partial, err := provers[points[i].Version].Compute(rand.Reader, points[i].Point, rctx)
		if errors.Is(err, shamir.ErrInvalidScalar) {
			// The cache erased the share meanwhile: the key changed.
			answers[i].Error = &api.Error{Kind: api.KindConflict, Message: "the key changed during the request; ask again"}
			return
		}
		if err != nil {
			answers[i].Error = &api.Error{Kind: api.KindInvalid, Message: "ciphertext point: " + err.Error()}
			return
		}
		answers[i].Partial = partial
	})
	if mine == 0 {
		// Every point was refused: the holder's index is its node's.
		n.fsm.Read(func(s *fsm.State) {
			if node := s.Nodes[n.id.NodeID]; node != nil {
				mine = node.Index
			}
		})
	}
	if n.transitHook != nil {
		n.transitHook(answers)
	}
	plain, err := json.Marshal(answers)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	base := api.TransitDecryptContext(g.clusterID, g.key.Name, g.epoch, req.Request.Payload, -1)
	ct, err := shamir.SealX25519(rand.Reader, rel.Ephemeral, fsm.PartialSealInfo(base, mine), plain)
	if err != nil {
		return nil, Errorf(KindInvalid, "sealing to the request's ephemeral key: %v", err)
	}
	return &SealedPartial{Index: mine, Node: n.id.NodeID, R: ct.R, Sealed: ct.Sealed}, nil
}

// answerTransitExport is a holder's answer to an export request its
// checks allowed (AuthorizeRelease: rule op export, the key exportable,
// active, unexpired, at this holder's read index; transitAllowed): its
// share of the version asked, if this holder may use it
// (fsm.TransitVersionFor), sealed to the request's ephemeral key. The
// coordinator relays it and never sees it; the caller checks it against
// the version's commitments (api.OpenTransitExport).
func (n *Node) answerTransitExport(g *holderGrant, req *partialRequest) (*SealedPartial, error) {
	rel := g.cmd.Release
	tv, ferr := fsm.TransitVersionFor(g.key, rel.Version, g.epoch)
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	sctx := api.TransitShareContext(g.clusterID, g.key.Name, tv.Sharing.Epoch, tv.Sharing.Commits[0])
	share, err := n.sharingShare(fsm.SharingRef(g.key.Name, tv.Version), tv.Sharing, sctx)
	if err != nil {
		return nil, err
	}
	defer share.Erase()
	value := share.Value
	if n.transitExportHook != nil {
		value = n.transitExportHook(slices.Clone(value))
		defer clear(value)
	}
	base := api.TransitExportContext(g.clusterID, g.key.Name, tv.Sharing.Epoch, tv.Version, req.Request.Payload)
	ct, err := shamir.SealX25519(rand.Reader, rel.Ephemeral, fsm.PartialSealInfo(base, share.Index), value)
	if err != nil {
		return nil, Errorf(KindInvalid, "sealing to the request's ephemeral key: %v", err)
	}
	return &SealedPartial{Index: share.Index, Node: n.id.NodeID, R: ct.R, Sealed: ct.Sealed}, nil
}

// minProofBatch is the fewest proofs a core checks in one batch.
const minProofBatch = 16

// checkTransitProofs refuses each point of a decryption (its version
// checked: versions[i] set) whose encryptor's proof does not verify for
// its ciphertext's binding, the key's ID, the version and the context
// (api.TransitBinding): a holder answers s_i*E only for an E whose maker
// knew r with E = r*G (and so s*E = r*P): an encryptor's point for that
// binding, or one the caller made up itself. A derivation's
// point, whose discrete log nobody knows, has no proof: a decryption
// never stands in for a derivation. The proofs are checked in one batch
// per core (shamir.VerifyTransitProofs: one multi-scalar multiplication,
// item by item only when the batch fails, to name the bad ones).
func checkTransitProofs(keyID string, points []fsm.TransitPoint, versions []*fsm.TransitVersion, answers []api.TransitItemPartial) {
	var at []int
	for i := range points {
		if versions[i] != nil {
			at = append(at, i)
		}
	}
	chunks := min(goruntime.GOMAXPROCS(0), (len(at)+minProofBatch-1)/minProofBatch)
	eachPoint(chunks, func(c int) {
		lo, hi := c*len(at)/chunks, (c+1)*len(at)/chunks
		items := make([]shamir.TransitProofItem, hi-lo)
		for j, i := range at[lo:hi] {
			p := points[i]
			items[j] = shamir.TransitProofItem{Binding: api.TransitBinding(keyID, p.Version, p.Context), E: p.Point, Proof: p.Proof}
		}
		for j, err := range shamir.VerifyTransitProofs(rand.Reader, items) {
			if err == nil {
				continue
			}
			i := at[lo+j]
			versions[i] = nil
			answers[i].Error = &api.Error{Kind: api.KindWrongKey, Message: "the ciphertext's proof that its encryptor knows E's discrete log does not verify for this key, version and context " +
				"(a point that is not a ciphertext's, another key's, version's or context's ciphertext, a changed one, or one made before the format carried the proof: encrypt again): " + err.Error()}
		}
	})
}

// eachPoint calls f(0..n-1) on up to GOMAXPROCS goroutines.
func eachPoint(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, goruntime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// transitCall asks a holder for its sealed transit answers.
func transitCall(n *Node) holderCall[SealedPartial] {
	return holderCall[SealedPartial]{path: "/internal/v1/transit-decrypt", local: n.answerTransitDecrypt,
		index: func(p *SealedPartial) uint32 { return p.Index }}
}

// TransitDecrypt relays an operator's decryption request (op decrypt):
// t holders' answers, each sealed to the request's ephemeral key.
func (n *Node) TransitDecrypt(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return n.transitQuorum(ctx, sg, fsm.OpDecrypt, opDecrypt)
}

// TransitDerive relays an operator's derivation request (op derive): t
// holders' answers (s_i*X for each context's point X, with proofs), each
// sealed to the request's ephemeral key; the caller combines and runs
// HKDF (api.OpenTransitDerive).
func (n *Node) TransitDerive(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return n.transitQuorum(ctx, sg, fsm.OpDerive, opDerive)
}

// TransitExport relays an operator's export request (op export): t
// holders' shares of the version, each sealed to the request's ephemeral
// key; the caller checks them against the version's commitments,
// combines the scalar and wraps it (api.OpenTransitExport).
func (n *Node) TransitExport(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return n.transitQuorum(ctx, sg, fsm.OpExport, opExport)
}

// TransitExchange relays an operator's exchange request with an x25519
// key (op exchange): t holders' answers (s_i*Q for each peer's Q = 8*P,
// which each holder maps from the peer's u itself, with proofs), each
// sealed to the request's ephemeral key; the caller combines and takes
// u(s*Q), the X25519 shared secret (api.OpenTransitExchange).
func (n *Node) TransitExchange(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return n.transitQuorum(ctx, sg, fsm.OpExchange, opExchange)
}

// transitQuorum relays a signed request with op fsmOp to t holders.
func (n *Node) transitQuorum(ctx context.Context, sg *fsm.Signed, fsmOp, metricOp string) (_ *api.TransitDecryptReply, err error) {
	_, key := commandOf(sg)
	defer func(start time.Time) { n.observe(ctx, metricOp, key, start, err) }(time.Now())
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	cmd := decodeCommand(sg)
	if cmd == nil || cmd.Release == nil || cmd.Release.Op != fsmOp {
		return nil, Errorf(KindInvalid, "not a signed request with op %q", fsmOp)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.coordinatorRead(ctx, sg, func(_ *fsm.State, a *authorized, refused *fsm.Error) {
		if refused == nil {
			// The caller found these holders' answers bad before.
			a.holders = slices.DeleteFunc(a.holders, func(h fsm.Node) bool { return slices.Contains(cmd.Release.Exclude, h.Index) })
		}
	})
	if err != nil {
		return nil, err
	}
	partials, err := gather(ctx, n, a, transitCall(n), a.partialFor(a.epoch), holdersListed, nil, func(own, others []*SealedPartial) ([]SealedPartial, error) {
		var all []SealedPartial
		for _, p := range append(own, others...) {
			all = append(all, *p)
		}
		return all, nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(partials, func(i, j int) bool { return partials[i].Index < partials[j].Index })
	return &api.TransitDecryptReply{ClusterID: a.clusterID, Key: a.key.Name, Epoch: a.epoch, Threshold: a.threshold, Partials: partials}, nil
}
