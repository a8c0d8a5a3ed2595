package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
// partial and a DLEQ proof. The coordinator checks each proof, combines t
// partials and decrypts. The cluster secret is never rebuilt.

// SealInfo is the HKDF info that binds a secret's ciphertext to its
// cluster and name. Clients seal with it; the coordinator opens with it.
func SealInfo(clusterID, name string) []byte {
	return []byte("keyquorum/secret/v1\x00" + clusterID + "\x00" + name)
}

// releaseContext binds a partial's proof to one request, key version and
// epoch.
func releaseContext(clusterID string, key *fsm.Key, epoch uint64, req *fsm.Signed) []byte {
	h := sha256.New()
	h.Write([]byte("keyquorum/release/v1\x00" + clusterID + "\x00" + key.Name + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, key.Version), epoch))
	h.Write(req.Payload)
	return h.Sum(nil)
}

type partialRequest struct {
	ReadIndex uint64      `json:"read_index"`
	Request   *fsm.Signed `json:"request"`
	Version   uint64      `json:"version"`
	Epoch     uint64      `json:"epoch"`
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

// answerPartial is a share holder's side of a release.
func (n *Node) answerPartial(ctx context.Context, req *partialRequest) (*shamir.Partial, error) {
	if req.Request == nil {
		return nil, Errorf(KindInvalid, "partial request carries no signed request")
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if err := n.waitApplied(ctx, req.ReadIndex); err != nil {
		return nil, err
	}
	now := time.Now()
	var (
		cmd       *fsm.Command
		key       *fsm.Key
		epoch     uint64
		clusterID string
		ferr      *fsm.Error
	)
	n.fsm.Read(func(s *fsm.State) {
		c, k, e := s.AuthorizeRelease(req.Request, now)
		if e != nil {
			ferr = e
			return
		}
		kc := *k
		cmd, key, epoch, clusterID = c, &kc, s.Epoch, s.ClusterID
	})
	if ferr != nil {
		return nil, fromFSM(ferr)
	}
	if key.Version != req.Version {
		return nil, Errorf(KindConflict, "key %q is at version %d here, not %d", key.Name, key.Version, req.Version)
	}
	if epoch != req.Epoch {
		return nil, Errorf(KindConflict, "node %s is at key epoch %d, not %d", n.id.NodeID, epoch, req.Epoch)
	}
	share := n.shares.current(epoch)
	if share == nil {
		return nil, Errorf(KindNoQuorum, "node %s holds no share of epoch %d", n.id.NodeID, epoch)
	}
	defer share.Erase()
	if !n.nonces.use(req.Request.Signer+"/"+hex.EncodeToString(cmd.Nonce), now) {
		return nil, Errorf(KindUnauthenticated, "request nonce was already used: a replay is refused")
	}
	p, err := shamir.ComputePartial(rand.Reader, share, key.R, releaseContext(clusterID, key, epoch, req.Request))
	if err != nil {
		return nil, Errorf(KindInternal, "computing partial: %v", err)
	}
	return p, nil
}

// release runs a release end to end and returns the plaintext. If
// wantVersion is not 0, the key must be at that version.
func (n *Node) release(ctx context.Context, sg *fsm.Signed, wantVersion uint64) ([]byte, error) {
	rt, err := n.joined()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return nil, err
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
		return nil, fromFSM(ferr)
	}
	if wantVersion != 0 && key.Version != wantVersion {
		return nil, Errorf(KindConflict, "key %q is at version %d, not %d", key.Name, key.Version, wantVersion)
	}
	if len(holders) < t {
		return nil, Errorf(KindNoQuorum, "the cluster lists %d share holders of %d needed", len(holders), t)
	}
	req := &partialRequest{ReadIndex: readAt, Request: sg, Version: key.Version, Epoch: epoch}
	pub := &shamir.PublicPoly{Commits: poly}
	rctx := releaseContext(clusterID, key, epoch, sg)
	ct := &shamir.Ciphertext{R: key.R, Sealed: key.Sealed}
	info := SealInfo(clusterID, key.Name)
	return n.gatherAndOpen(ctx, rt, holders, t, req, func(own *shamir.Partial, others []*shamir.Partial) ([]byte, error) {
		if own != nil {
			return shamir.OpenWithOwn(pub, ct, info, own, others, rctx)
		}
		return shamir.Open(pub, ct, info, others, rctx)
	})
}

// hedgeDelay is how long the coordinator waits on the first t holders
// before it asks the others too.
const hedgeDelay = 150 * time.Millisecond

type partialResult struct {
	node string
	own  bool // computed here, with this node's share
	p    *shamir.Partial
	err  error
}

// gatherAndOpen asks t holders (itself first) for partials, and the other
// holders too if one of them fails or is slow; it opens the ciphertext as
// soon as the partials it has contain t that verify. open checks the
// proof of every partial but this node's own, so each is verified once.
func (n *Node) gatherAndOpen(ctx context.Context, rt *runtime, holders []fsm.Node, t int, req *partialRequest, open func(own *shamir.Partial, others []*shamir.Partial) ([]byte, error)) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slices.SortStableFunc(holders, func(a, b fsm.Node) int {
		if a.ID == n.id.NodeID {
			return -1
		}
		if b.ID == n.id.NodeID {
			return 1
		}
		return 0
	})
	results := make(chan partialResult, len(holders))
	asked := 0
	ask := func(upTo int) {
		for ; asked < upTo && asked < len(holders); asked++ {
			h := holders[asked]
			go func() { results <- n.askHolder(ctx, rt, h, req) }()
		}
	}
	ask(t)
	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	var own *shamir.Partial
	var got []*shamir.Partial // the others'
	failures := map[string]error{}
	var lastOpen error
	for answered := 0; answered < asked || asked < len(holders); {
		select {
		case <-hedge.C:
			ask(len(holders))
			continue
		case <-ctx.Done():
			ask(len(holders)) // nothing more will come; report what we have
			return nil, quorumError(countOwn(own)+len(got), t, len(holders), failures, ctx.Err())
		case r := <-results:
			answered++
			if r.err != nil {
				failures[r.node] = r.err
				ask(len(holders))
				continue
			}
			if r.own {
				own = r.p
			} else {
				got = append(got, r.p)
			}
		}
		if countOwn(own)+len(got) < t {
			continue
		}
		plain, err := open(own, got)
		if err == nil {
			return plain, nil
		}
		// A partial did not verify: its holder is named in the error.
		lastOpen = err
		ask(len(holders))
	}
	if lastOpen != nil {
		failures["combine"] = lastOpen
	}
	return nil, quorumError(countOwn(own)+len(got), t, len(holders), failures, nil)
}

func countOwn(p *shamir.Partial) int {
	if p != nil {
		return 1
	}
	return 0
}

// askHolder gets one holder's partial, locally for this node.
func (n *Node) askHolder(ctx context.Context, rt *runtime, h fsm.Node, req *partialRequest) partialResult {
	var p shamir.Partial
	var err error
	if h.ID == n.id.NodeID {
		var local *shamir.Partial
		if local, err = n.answerPartial(ctx, req); err == nil {
			p = *local
		}
	} else {
		_, err = n.call(ctx, rt, h.RaftAddr, "/internal/v1/partial", req, &p)
	}
	if err == nil && p.Index != h.Index {
		err = fmt.Errorf("answered for share %d, holds %d", p.Index, h.Index)
	}
	return partialResult{node: h.ID, own: h.ID == n.id.NodeID, p: &p, err: err}
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

// compareAndSwap is keysrv's swap: release the current secret, compare
// its hash with the one the client names, and commit the new secret only
// if the key is still at the version that was compared.
func (n *Node) compareAndSwap(ctx context.Context, release, replace *fsm.Signed) (*fsm.Key, error) {
	var rel, rep fsm.Command
	if json.Unmarshal(release.Payload, &rel) != nil || rel.Release == nil || rel.Release.Op != fsm.OpCAS || rel.Release.ReplaceKey == nil {
		return nil, Errorf(KindInvalid, "compare-and-swap needs a signed release with op %q", fsm.OpCAS)
	}
	if json.Unmarshal(replace.Payload, &rep) != nil || rep.Type != fsm.TypeReplaceKey || rep.ReplaceKey == nil {
		return nil, Errorf(KindInvalid, "compare-and-swap needs a signed %s command", fsm.TypeReplaceKey)
	}
	a, _ := json.Marshal(rel.Release.ReplaceKey)
	b, _ := json.Marshal(rep.ReplaceKey)
	if string(a) != string(b) || release.Signer != replace.Signer {
		return nil, Errorf(KindInvalid, "the release and the replacement describe different swaps")
	}
	swap := rep.ReplaceKey
	if len(swap.OldSHA256) != sha256.Size {
		return nil, Errorf(KindInvalid, "old-sha256 must be %d bytes", sha256.Size)
	}
	old, err := n.release(ctx, release, swap.ExpectVersion)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(old)
	clear(old)
	if subtle.ConstantTimeCompare(sum[:], swap.OldSHA256) != 1 {
		return nil, Errorf(KindConflict, "the current secret of %q does not hash to old-sha256", swap.Name)
	}
	res, err := n.submit(ctx, replace)
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}
