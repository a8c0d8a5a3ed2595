package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Signing by quorum (docs/signing.md). A FROST key (fsm.KeyTypeFROST) is
// shared t-of-n among the holders it was dealt to; a signature is two
// rounds of RFC 9591, the first done ahead of time:
//
//   - Commitments (/internal/v1/frost-commit). A holder draws nonce pairs
//     for a key, keeps them in memory only (frostNonces) and returns their
//     commitments. A coordinator keeps a few of each holder's commitments
//     ahead (frostCommitments), so a signature usually takes one round
//     trip.
//   - Signature shares (/internal/v1/frost-sign). The coordinator sends t
//     holders the client's signed request and the commitment list. Each
//     holder runs the checks every release has (holder.go: its own read
//     index, the signed request, the rules, the key active and dealt in
//     the current epoch, the key version), takes its nonces for its listed
//     commitment out of its pool, and answers with its share of the
//     signature of the message in the signed request: the coordinator
//     cannot make it sign another message.
//   - The coordinator checks every share against the holder's public
//     share. A holder whose share is bad is named in the log and in the
//     result, and the coordinator starts again without it, with fresh
//     commitments, until t holders' shares make a signature that
//     crypto/ed25519 accepts, or too few holders are left.
//
// Nonces. A nonce pair used for two signatures gives the share away. A
// holder's nonces never leave its memory and are never written to disk:
// the pool hands a pair out once (take deletes it under the lock before
// any share is computed) and FROSTRound.Sign erases it. A crash or a
// restart loses the pool, so no nonce can be used after one: the holder
// refuses commitments it does not hold, and coordinators fetch new ones.
// Nothing needs to be persisted to know which nonces are spent, because
// none survives its process.
//
// Replays. A holder answers one signed signing request at most n-t+1
// times (n holders, threshold t: the attempts a coordinator needs when it
// leaves out failed holders one by one), each time with fresh nonces, so a
// replay gains at most that many signatures of a message the signer
// authorized; and never a request issued before the holder started (the
// node's nonce rule, holder.go).

// frostCommitBatch is how many commitments a coordinator asks a holder
// for at once, and maxFROSTNonces how many nonce pairs a holder keeps for
// all keys and coordinators together; the oldest are dropped beyond it.
const (
	frostCommitBatch = 16
	maxFROSTNonces   = 4096
)

type frostCommitRequest struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Count   int    `json:"count"`
}

type frostCommitReply struct {
	Index       uint32                   `json:"index"`
	Commitments []shamir.NonceCommitment `json:"commitments"`
}

type frostSignRequest struct {
	Partial     partialRequest           `json:"partial"`
	Commitments []shamir.NonceCommitment `json:"commitments"`
}

type frostSignReply struct {
	Index uint32 `json:"index"`
	Share []byte `json:"share"`
}

// frostNonces is a holder's pool of nonce pairs, by key, version, index
// and hiding commitment.
type frostNonces struct {
	mu    sync.Mutex
	m     map[string]*shamir.SigningNonces
	order []string // insertion order; entries already taken are skipped
}

func frostNonceID(name string, version uint64, index uint32, hiding []byte) string {
	return name + "\x00" + strconv.FormatUint(version, 10) + "\x00" + strconv.FormatUint(uint64(index), 10) + "\x00" + hex.EncodeToString(hiding)
}

func (p *frostNonces) put(id string, n *shamir.SigningNonces) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*shamir.SigningNonces{}
	}
	for len(p.m) >= maxFROSTNonces && len(p.order) > 0 {
		old := p.order[0]
		p.order = p.order[1:]
		if n := p.m[old]; n != nil {
			n.Erase()
			delete(p.m, old)
		}
	}
	if len(p.order) > 2*maxFROSTNonces {
		p.order = slices.DeleteFunc(p.order, func(id string) bool { return p.m[id] == nil })
	}
	p.m[id] = n
	p.order = append(p.order, id)
}

// take removes the nonce pair and returns it, or nil if the pool does not
// hold it (never made here, used, dropped, or made before a restart).
func (p *frostNonces) take(id string) *shamir.SigningNonces {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.m[id]
	delete(p.m, id)
	return n
}

// frostAnswers counts a holder's answers to each signing request.
type frostAnswers struct {
	mu     sync.Mutex
	seen   map[string]*frostAnswered
	pruned time.Time
}

type frostAnswered struct {
	count   int
	expires time.Time
}

// use records one more answer to the request key, or refuses it past
// limit answers.
func (a *frostAnswers) use(key string, limit int, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]*frostAnswered{}
	}
	if now.Sub(a.pruned) > time.Minute {
		for k, e := range a.seen {
			if now.After(e.expires) {
				delete(a.seen, k)
			}
		}
		a.pruned = now
	}
	e := a.seen[key]
	if e == nil || now.After(e.expires) {
		e = &frostAnswered{expires: now.Add(2 * fsm.MaxClockSkew)}
		a.seen[key] = e
	}
	if e.count >= limit {
		return Errorf(KindUnauthenticated, "this signing request was answered %d times already: a replay is refused", e.count)
	}
	e.count++
	return nil
}

// frostCommitments is a coordinator's stock of holders' commitments, by
// holder, key and version.
type frostCommitments struct {
	mu sync.Mutex
	m  map[string][]shamir.NonceCommitment
}

func (c *frostCommitments) take(id string) (shamir.NonceCommitment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.m[id]
	if len(l) == 0 {
		return shamir.NonceCommitment{}, false
	}
	c.m[id] = l[1:]
	return l[0], true
}

func (c *frostCommitments) add(id string, l []shamir.NonceCommitment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]shamir.NonceCommitment{}
	}
	c.m[id] = append(c.m[id], l...)
}

func (c *frostCommitments) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// frostShare is this node's share of a FROST key, from the key's record
// as the state holds it (with the sealed shares): opened with the
// identity key while it is sealed there (as created), or from the share
// store of the key's epoch once a round reshared it; checked against the
// key's commitments.
func (n *Node) frostShare(clusterID string, k *fsm.Key) (*shamir.Share, error) {
	if k.Frost() == nil {
		return nil, Errorf(KindInvalid, "key %q is not an %s key", k.Name, fsm.KeyTypeFROST)
	}
	return n.sharingShare(k.Name, k.Frost(), api.FROSTShareContext(clusterID, k.Name, k.Frost().Epoch))
}

// sharingShare is this node's share of the sharing ref names
// (fsm.SharingRef: an ed25519-frost key's, a transit key version's):
// opened with the identity key, with context sealCtx, while it is sealed
// in the state, or from the share store of the sharing's epoch once a
// round reshared it; checked against the sharing's commitments.
func (n *Node) sharingShare(ref string, fk *fsm.FROSTKey, sealCtx []byte) (*shamir.Share, error) {
	name := ref
	for _, sh := range fk.Shares {
		if sh.NodeID != n.id.NodeID {
			continue
		}
		if len(sh.Sealed) == 0 {
			share := n.shares.frost(fk.Epoch, frostStoreID(name, fk))
			if share == nil || share.Index != sh.Index {
				return nil, Errorf(KindNoQuorum, "node %s holds no share of key %q of epoch %d yet", n.id.NodeID, name, fk.Epoch)
			}
			if err := (&shamir.PublicPoly{Commits: fk.Commits}).VerifyShare(share); err != nil {
				share.Erase()
				return nil, Errorf(KindInternal, "node %s's stored share of key %q does not match its commitments: %v", n.id.NodeID, name, err)
			}
			return share, nil
		}
		encPriv, err := shamir.EncryptionKeyFromEd25519(n.id.SignKey)
		if err != nil {
			return nil, Errorf(KindInternal, "identity key: %v", err)
		}
		defer clear(encPriv)
		share, err := shamir.OpenShare(encPriv, sh.Sealed, sh.Index, sealCtx, &shamir.PublicPoly{Commits: fk.Commits})
		if err != nil {
			return nil, Errorf(KindInternal, "node %s cannot open its share of key %q: %v", n.id.NodeID, name, err)
		}
		return share, nil
	}
	return nil, Errorf(KindNoQuorum, "node %s holds no share of key %q", n.id.NodeID, name)
}

func (n *Node) handleFROSTCommit(w http.ResponseWriter, r *http.Request) {
	var req frostCommitRequest
	if err := readRPC(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	rep, err := n.answerFROSTCommit(&req)
	writeRPC(w, rep, err)
}

// answerFROSTCommit is round one for a coordinator (a member: the node
// port lets no one else in): fresh nonce pairs for a key this node holds
// a share of, kept in the pool, and their commitments. Commitments reveal
// nothing and authorize nothing, so it is answered from the applied state
// without a read; the signing request is checked in round two.
func (n *Node) answerFROSTCommit(req *frostCommitRequest) (*frostCommitReply, error) {
	if req.Count < 1 || req.Count > frostCommitBatch {
		return nil, Errorf(KindInvalid, "ask for 1 to %d commitments", frostCommitBatch)
	}
	var (
		k         *fsm.Key
		clusterID string
		stale     bool
	)
	n.fsm.Read(func(s *fsm.State) {
		if key := s.Keys[req.Key]; key != nil {
			c := *key
			k, clusterID, stale = &c, s.ClusterID, s.FROSTStale(key)
		}
	})
	switch {
	case k == nil:
		return nil, Errorf(KindNotFound, "key %q does not exist here", req.Key)
	case k.Version != req.Version:
		return nil, Errorf(KindConflict, "key %q is at version %d here, not %d", k.Name, k.Version, req.Version)
	case k.State != fsm.KeyActive:
		return nil, Errorf(KindDenied, "key %q is %s", k.Name, k.State)
	case stale:
		return nil, Errorf(KindConflict, "key %q was dealt before the members changed and no round reshared it: import it again", k.Name)
	}
	share, err := n.frostShare(clusterID, k)
	if err != nil {
		return nil, err
	}
	defer share.Erase()
	rep := &frostCommitReply{Index: share.Index}
	for range req.Count {
		nonces, err := shamir.FROSTCommit(rand.Reader, share)
		if err != nil {
			return nil, Errorf(KindInternal, "drawing nonces: %v", err)
		}
		c := nonces.Commitment()
		n.frostPool.put(frostNonceID(k.Name, k.Version, c.Index, c.Hiding), nonces)
		rep.Commitments = append(rep.Commitments, c)
	}
	return rep, nil
}

func (n *Node) handleFROSTSign(w http.ResponseWriter, r *http.Request) {
	var req frostSignRequest
	if err := readRPC(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	req.Partial.from = peerNode(r)
	rep, err := n.answerFROSTSign(r.Context(), &req)
	writeRPC(w, rep, err)
}

// answerFROSTSign is round two: a holder's checks (holder.go), then its
// share of the signature of the signed request's message, with the nonces
// of its commitment in the list, which it takes out of its pool first.
func (n *Node) answerFROSTSign(ctx context.Context, req *frostSignRequest) (_ *frostSignReply, err error) {
	pr := &req.Partial
	defer n.observeHolder(ctx, pr, &err)()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if pr.Request == nil {
		return nil, Errorf(KindInvalid, "the holder's request carries no signed request")
	}
	read := n.startHolderRead(pr)
	index, err := read(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, index); err != nil {
		return nil, err
	}
	now := now()
	g, err := n.holderCheck(pr, now)
	basis := ""
	if err == nil {
		basis = g.basis
	}
	if aerr := n.decide(roleHolder, pr.Request, basis, err); err == nil && aerr != nil {
		err = aerr
	}
	if err != nil {
		return nil, err
	}
	if g.cmd.Release.Op != fsm.OpSign {
		return nil, Errorf(KindInvalid, "a signature share is given only for a signing request")
	}
	fk := g.key.Frost()
	if fk == nil {
		return nil, Errorf(KindInvalid, "key %q is a %s key: it has no FROST shares", g.key.Name, g.key.Type)
	}
	mine := uint32(0)
	holders := map[uint32]bool{}
	for _, sh := range fk.Shares {
		holders[sh.Index] = true
		if sh.NodeID == n.id.NodeID {
			mine = sh.Index
		}
	}
	if mine == 0 {
		return nil, Errorf(KindNoQuorum, "node %s holds no share of key %q", n.id.NodeID, g.key.Name)
	}
	if len(req.Commitments) != fk.Threshold {
		return nil, Errorf(KindInvalid, "a signature of key %q needs %d signers, the request lists %d", g.key.Name, fk.Threshold, len(req.Commitments))
	}
	var own *shamir.NonceCommitment
	for i, c := range req.Commitments {
		if !holders[c.Index] {
			return nil, Errorf(KindInvalid, "signer %d holds no share of key %q", c.Index, g.key.Name)
		}
		if c.Index == mine {
			own = &req.Commitments[i]
		}
	}
	if own == nil {
		return nil, Errorf(KindInvalid, "the commitment list leaves out this holder (%d)", mine)
	}
	if issued := time.Unix(0, g.cmd.IssuedAt); issued.Before(n.nonces.since) {
		return nil, Errorf(KindUnauthenticated, "request issued at %s, before this node started at %s: sign a new request",
			issued.UTC().Format(time.RFC3339Nano), n.nonces.since.UTC().Format(time.RFC3339Nano))
	}
	limit := len(fk.Shares) - fk.Threshold + 1
	if err := n.frostSigned.use(pr.Request.Signer+"/"+hex.EncodeToString(g.cmd.Nonce), limit, now); err != nil {
		return nil, err
	}
	nonces := n.frostPool.take(frostNonceID(g.key.Name, g.key.Version, mine, own.Hiding))
	if nonces == nil {
		return nil, Errorf(KindConflict, "node %s holds no nonces for that commitment (used, dropped or made before a restart): ask for new commitments", n.id.NodeID)
	}
	defer nonces.Erase()
	round, err := shamir.NewFROSTRound(fk.Commits[0], g.cmd.Release.Message, req.Commitments)
	if err != nil {
		return nil, Errorf(KindInvalid, "commitments: %v", err)
	}
	share, err := n.frostShare(g.clusterID, g.key)
	if err != nil {
		return nil, err
	}
	defer share.Erase()
	z, err := round.Sign(share, nonces)
	if err != nil {
		return nil, Errorf(KindInvalid, "signing: %v", err)
	}
	if n.frostShareHook != nil {
		z = n.frostShareHook(z)
	}
	return &frostSignReply{Index: mine, Share: z}, nil
}

// Sign makes a signature by quorum for an operator's or a gateway node's
// signed signing request (op sign), by the key's type: an ed25519-frost
// key's holders each send a FROST signature share (frostGather), an
// rsa-threshold key's their Shoup share of the padded message (rsaSign).
// The signature is checked with the public key before it is returned; the
// node never holds the key.
func (n *Node) Sign(ctx context.Context, sg *fsm.Signed) (_ *api.Signature, err error) {
	_, key := commandOf(sg)
	defer func(start time.Time) { n.observe(ctx, opSign, key, start, err) }(time.Now())
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.coordinatorRead(ctx, sg, func(s *fsm.State, a *authorized, refused *fsm.Error) {
		switch {
		case refused != nil:
			return
		case a.key.RSA() != nil:
			rsaHolders(s, a)
			return
		case a.key.Frost() == nil:
			return
		}
		a.holders, a.threshold = nil, a.key.Frost().Threshold
		for _, sh := range a.key.Frost().Shares {
			if node := s.Nodes[sh.NodeID]; node != nil && !node.Leaving && node.Index == sh.Index {
				a.holders = append(a.holders, *node)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	switch {
	case a.cmd.Release.Op != fsm.OpSign:
		return nil, Errorf(KindInvalid, "a signature needs a request of op %s", fsm.OpSign)
	case a.key.Frost() != nil:
		return n.frostGather(ctx, a)
	case a.key.RSA() != nil:
		return n.rsaSign(ctx, a)
	case fsm.Assembled(a.key.Type):
		return n.assembledSign(ctx, a)
	}
	return nil, Errorf(KindInvalid, "key %q does not sign by quorum", a.key.Name)
}

// SignFor makes a signature by quorum for a client of one of this node's
// legacy gateways, which has authorized the client itself (the Keyless
// SSL gateway's Ed25519 keys). client describes it for the holders' logs.
func (n *Node) SignFor(ctx context.Context, gateway, name string, msg []byte, client string) (*api.Signature, error) {
	ctx = metrics.WithGateway(ctx, gateway)
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpSign, Gateway: gateway, Client: client, Message: msg}})
	if err != nil {
		return nil, Errorf(KindInternal, "signing the request: %v", err)
	}
	return n.Sign(ctx, sg)
}

// frostGather runs the signing rounds for a's request over a's holders,
// leaving out each holder that fails or sends a bad share, until t
// holders make a signature.
func (n *Node) frostGather(ctx context.Context, a *authorized) (*api.Signature, error) {
	k := a.key
	poly := &shamir.PublicPoly{Commits: k.Frost().Commits}
	pub := k.Frost().Commits[0]
	failures := map[string]error{}
	holders := slices.Clone(a.holders)
	slices.SortStableFunc(holders, func(x, y fsm.Node) int {
		switch {
		case x.ID == n.id.NodeID:
			return -1
		case y.ID == n.id.NodeID:
			return 1
		}
		return 0
	})
	for {
		var signers []fsm.Node
		for _, h := range holders {
			if failures[h.ID] == nil && len(signers) < a.threshold {
				signers = append(signers, h)
			}
		}
		if len(signers) < a.threshold {
			return nil, quorumError(len(signers), a.threshold, len(holders), failures, ctx.Err())
		}
		commitments := make([]shamir.NonceCommitment, len(signers))
		errs := make([]error, len(signers))
		inParallel(len(signers), func(i int) { commitments[i], errs[i] = n.frostCommitmentOf(ctx, signers[i], k) })
		if n.leaveOut(k, signers, errs, failures) {
			continue
		}
		slices.SortFunc(commitments, func(x, y shamir.NonceCommitment) int { return int(x.Index) - int(y.Index) })
		round, err := shamir.NewFROSTRound(pub, a.cmd.Release.Message, commitments)
		if err != nil {
			// A holder's commitments are bad points: which one is named.
			return nil, Errorf(KindInternal, "commitments: %v", err)
		}
		req := &frostSignRequest{Partial: *a.partialFor(0), Commitments: commitments}
		replies := make([]*frostSignReply, len(signers))
		inParallel(len(signers), func(i int) { replies[i], errs[i] = n.askFROSTSign(ctx, signers[i], req) })
		for i, rep := range replies {
			if errs[i] != nil {
				continue
			}
			ps, err := poly.PublicShare(signers[i].Index)
			if err == nil {
				err = round.VerifyShare(signers[i].Index, ps, rep.Share)
			}
			if err != nil {
				n.log.Warn("a holder sent a bad signature share: leaving it out", "holder", signers[i].ID, "index", signers[i].Index, "key", k.Name)
				errs[i] = Errorf(KindInternal, "holder %s sent a signature share that does not verify", signers[i].ID)
			}
		}
		if n.leaveOut(k, signers, errs, failures) {
			continue
		}
		shares := map[uint32][]byte{}
		for _, rep := range replies {
			shares[rep.Index] = rep.Share
		}
		sig, err := round.Aggregate(shares)
		if err != nil {
			return nil, Errorf(KindInternal, "combining checked shares: %v", err)
		}
		out := &api.Signature{Key: k.Name, Version: k.Version, Type: k.Type, PublicKey: slices.Clone(pub), Signature: sig, Signers: round.Signers()}
		if len(failures) > 0 {
			out.Failed = map[string]string{}
			for id, err := range failures {
				out.Failed[id] = err.Error()
			}
		}
		return out, nil
	}
}

// leaveOut records the failed signers in failures and reports whether
// there were any.
// The stock of a failed holder's commitments for k is dropped: it may
// have restarted and lost their nonces.
func (n *Node) leaveOut(k *fsm.Key, signers []fsm.Node, errs []error, failures map[string]error) bool {
	failed := false
	for i, err := range errs {
		if err != nil {
			failures[signers[i].ID] = err
			n.frostStock.drop(frostStockID(signers[i].ID, k.Name, k.Version))
			failed = true
		}
	}
	return failed
}

// inParallel calls f(0..n-1) at once and waits for them.
func inParallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

func frostStockID(node, key string, version uint64) string {
	return node + "\x00" + key + "\x00" + strconv.FormatUint(version, 10)
}

// frostCommitmentOf takes one of holder h's commitments for key k from the
// stock, or asks h for a batch.
func (n *Node) frostCommitmentOf(ctx context.Context, h fsm.Node, k *fsm.Key) (shamir.NonceCommitment, error) {
	id := frostStockID(h.ID, k.Name, k.Version)
	if c, ok := n.frostStock.take(id); ok {
		return c, nil
	}
	req := &frostCommitRequest{Key: k.Name, Version: k.Version, Count: frostCommitBatch}
	var rep *frostCommitReply
	if h.ID == n.id.NodeID {
		var err error
		if rep, err = n.answerFROSTCommit(req); err != nil {
			return shamir.NonceCommitment{}, err
		}
	} else {
		rep = new(frostCommitReply)
		if _, err := n.call(ctx, h.RaftAddr, "/internal/v1/frost-commit", req, rep); err != nil {
			return shamir.NonceCommitment{}, err
		}
	}
	if rep.Index != h.Index || len(rep.Commitments) == 0 {
		return shamir.NonceCommitment{}, fmt.Errorf("answered %d commitments for share %d, holds %d", len(rep.Commitments), rep.Index, h.Index)
	}
	for _, c := range rep.Commitments {
		if c.Index != h.Index {
			return shamir.NonceCommitment{}, fmt.Errorf("sent a commitment for share %d, holds %d", c.Index, h.Index)
		}
		if shamir.ValidatePoint(c.Hiding) != nil || shamir.ValidatePoint(c.Binding) != nil {
			return shamir.NonceCommitment{}, fmt.Errorf("sent a commitment that is not a valid point")
		}
	}
	n.frostStock.add(id, rep.Commitments[1:])
	return rep.Commitments[0], nil
}

// askFROSTSign asks holder h for its signature share.
func (n *Node) askFROSTSign(ctx context.Context, h fsm.Node, req *frostSignRequest) (*frostSignReply, error) {
	var rep *frostSignReply
	if h.ID == n.id.NodeID {
		own := *req
		own.Partial.local = true
		var err error
		if rep, err = n.answerFROSTSign(ctx, &own); err != nil {
			return nil, err
		}
	} else {
		rep = new(frostSignReply)
		if _, err := n.call(ctx, h.RaftAddr, "/internal/v1/frost-sign", req, rep); err != nil {
			return nil, err
		}
	}
	if rep.Index != h.Index {
		return nil, fmt.Errorf("answered for share %d, holds %d", rep.Index, h.Index)
	}
	return rep, nil
}
