package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"time"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Threshold RSA (fsm/rsathreshold.go): a gateway node computes x^d mod n
// for a key no node holds whole. Shoup's Protocol 1 as circl implements
// it is not robust: a share carries no proof, so the coordinator combines
// t shares and checks the result with the public exponent; when it fails,
// it asks more holders and tries other subsets of t, and names the holder
// whose share spoils every subset it is in.

// rsaShareAnswer is a holder's answer: circl's SignShare encoding, and the
// holder's node index (the coordinator checks it is the holder's).
type rsaShareAnswer struct {
	NodeIndex uint32 `json:"node_index"`
	Share     []byte `json:"share"`
}

// ThresholdRSA computes input^d mod n with a threshold RSA key, by
// quorum, for a client of this node's gateway (which authorized the
// client itself): input is as long as the modulus and below it (a padded
// digest to sign, or a ciphertext). The result is checked against the
// public key before it is returned.
func (n *Node) ThresholdRSA(ctx context.Context, gateway, name string, input []byte, client string) (_ []byte, err error) {
	ctx = metrics.WithGateway(ctx, gateway)
	defer func(start time.Time) { n.observe(ctx, opRSA, name, start, err) }(time.Now())
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpRSAShare, Gateway: gateway, Client: client, Input: input}})
	if err != nil {
		return nil, Errorf(KindInternal, "signing the rsa request: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.coordinatorRead(ctx, sg, func(s *fsm.State, a *authorized, refused *fsm.Error) {
		if refused == nil {
			rsaHolders(s, a)
		}
	})
	if err != nil {
		return nil, err
	}
	out, _, err := n.rsaGather(ctx, a, input)
	return out, err
}

// rsaHolders sets whom a request with a threshold RSA key asks: the
// holders of its deal that are still members. A removed node keeps its
// share but is asked no more.
func rsaHolders(s *fsm.State, a *authorized) {
	a.holders, a.threshold = nil, a.key.RSA().Threshold
	for _, sh := range a.key.RSA().Shares {
		if node := s.Nodes[sh.NodeID]; node != nil && !node.Leaving {
			a.holders = append(a.holders, *node)
		}
	}
}

// rsaSign signs an operator's or a gateway node's request (op sign) with
// a threshold RSA key: the message's SHA-256, padded as the request asks
// (api.RSASignInput, which every holder computes again from the signed
// request), raised to d by a quorum.
func (n *Node) rsaSign(ctx context.Context, a *authorized) (*api.Signature, error) {
	pub, ok := a.key.RSAPublicKey()
	if !ok {
		return nil, Errorf(KindInternal, "key %q has no RSA public key", a.key.Name)
	}
	req := a.cmd.Release
	input, err := api.RSASignInput(pub, req.Padding, req.Message, a.cmd.Nonce)
	if err != nil {
		return nil, Errorf(KindInvalid, "%v", err)
	}
	sig, failed, err := n.rsaGather(ctx, a, input)
	if err != nil {
		return nil, err
	}
	return &api.Signature{Key: a.key.Name, Version: a.key.Version, Type: a.key.Type, PublicKey: a.key.Public(), Signature: sig, Failed: failed}, nil
}

// rsaGather asks a's holders for their shares of input^d mod n and
// combines t of them into a result the public key verifies. failed names
// the holders whose shares were malformed or spoiled a combination that
// otherwise verifies, and why (api.Signature.Failed).
func (n *Node) rsaGather(ctx context.Context, a *authorized, input []byte) (_ []byte, failed map[string]string, _ error) {
	name := a.key.Name
	pub, ok := a.key.RSAPublicKey()
	if !ok {
		return nil, nil, Errorf(KindInternal, "key %q has no RSA public key", name)
	}
	if err := checkRSAInput(pub, input); err != nil {
		return nil, nil, err
	}
	shoup := map[uint32]uint32{} // node index -> Shoup's index
	byIndex := map[uint32]string{}
	for _, h := range a.holders {
		if sh := a.key.RSA().ShareOf(h.ID); sh != nil {
			shoup[h.Index], byIndex[h.Index] = sh.Index, h.ID
		}
	}
	players, t := uint(len(a.key.RSA().Shares)), uint(a.key.RSA().Threshold)
	call := holderCall[rsaShareAnswer]{path: "/internal/v1/rsa-share", local: n.answerRSAShare,
		index: func(p *rsaShareAnswer) uint32 { return p.NodeIndex }}
	// open may run several times (once more for every answer after t);
	// failed keeps what each run found. Only open's calls touch it, one at
	// a time.
	failed = map[string]string{}
	out, err := gather(ctx, n, a, call, a.partialFor(0), "%d of the rsa key's share holders are still members, %d needed", nil, func(own, others []*rsaShareAnswer) ([]byte, error) {
		// A malformed share is left out (and its holder named), not fatal:
		// open runs again with every answer when more holders answer.
		var shares []namedShare
		var malformed []string
		for _, p := range append(own, others...) {
			s, err := parseRSAShare(p.Share, byIndex[p.NodeIndex], shoup[p.NodeIndex], players, t)
			if err != nil {
				malformed = append(malformed, err.Error())
				failed[byIndex[p.NodeIndex]] = err.Error()
				continue
			}
			shares = append(shares, namedShare{node: byIndex[p.NodeIndex], share: s})
		}
		if len(malformed) > 0 {
			n.log.Warn("a holder sent a malformed threshold RSA share", "key", name, "errors", strings.Join(malformed, "; "))
		}
		if uint(len(shares)) < t {
			return nil, fmt.Errorf("%d well-formed rsa shares, %d needed: %s", len(shares), t, strings.Join(malformed, "; "))
		}
		out, bad, err := combineRSA(pub, players, t, shares, input)
		if len(bad) > 0 {
			n.log.Warn("a holder sent a bad threshold RSA share", "key", name, "nodes", strings.Join(bad, ","), "combined", err == nil)
		}
		for _, node := range bad {
			failed[node] = "sent a bad rsa share: the result does not verify with it in place of a good one"
		}
		return out, err
	})
	if err != nil {
		return nil, nil, err
	}
	if len(failed) == 0 {
		failed = nil
	}
	return out, failed, nil
}

// parseRSAShare decodes the share node sent and checks it is the share
// the state lists for it: Shoup's index index, of players, threshold t.
func parseRSAShare(b []byte, node string, index uint32, players, t uint) (tssrsa.SignShare, error) {
	var s tssrsa.SignShare
	if err := s.UnmarshalBinary(b); err != nil {
		return s, fmt.Errorf("node %s sent an rsa share that does not parse: %v", node, err)
	}
	if s.Index != uint(index) || s.Players != players || s.Threshold != t {
		return s, fmt.Errorf("node %s sent share %d of %d (t=%d), not its share %d of %d (t=%d)", node, s.Index, s.Players, s.Threshold, index, players, t)
	}
	return s, nil
}

// checkRSAInput refuses an input that is not as long as the modulus, or
// not below it.
func checkRSAInput(pub *rsa.PublicKey, input []byte) error {
	if len(input) != pub.Size() || new(big.Int).SetBytes(input).Cmp(pub.N) >= 0 {
		return Errorf(KindInvalid, "the input is %d bytes: it must be %d bytes and below the modulus", len(input), pub.Size())
	}
	return nil
}

type namedShare struct {
	node  string
	share tssrsa.SignShare
}

// combineRSA finds t of shares that combine into a result the public key
// verifies (circl's CombineSignShares checks it). With a good subset in
// hand, each other share is tried in place of one of its members: a share
// that spoils it is bad, and its holder is named in bad. With no good
// subset, the error names every holder that answered.
func combineRSA(pub *rsa.PublicKey, players, t uint, shares []namedShare, input []byte) (out []byte, bad []string, err error) {
	subset := make([]tssrsa.SignShare, t)
	var good []int
	forEachSubset(len(shares), int(t), func(idx []int) bool {
		for i, j := range idx {
			subset[i] = shares[j].share
		}
		if y, err := tssrsa.CombineSignShares(pub, players, t, subset, input); err == nil {
			out, good = y, append([]int(nil), idx...)
			return false
		}
		return true
	})
	if out == nil {
		var nodes []string
		for _, s := range shares {
			nodes = append(nodes, s.node)
		}
		sort.Strings(nodes)
		return nil, nil, fmt.Errorf("no %d of the rsa shares of %s combine into a result the public key verifies: one of them sent a bad share", t, strings.Join(nodes, ", "))
	}
	in := map[int]bool{}
	for _, j := range good {
		in[j] = true
	}
	for j := range shares {
		if in[j] {
			continue
		}
		for i, g := range good {
			subset[i] = shares[g].share
		}
		subset[0] = shares[j].share // in place of good[0]
		if _, err := tssrsa.CombineSignShares(pub, players, t, subset, input); err != nil {
			bad = append(bad, shares[j].node)
		}
	}
	sort.Strings(bad)
	return out, bad, nil
}

// forEachSubset calls f with every k-subset of 0..n-1, in lexicographic
// order, until f returns false.
func forEachSubset(n, k int, f func([]int) bool) {
	if k > n || k < 1 {
		return
	}
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	for {
		if !f(idx) {
			return
		}
		i := k - 1
		for i >= 0 && idx[i] == n-k+i {
			i--
		}
		if i < 0 {
			return
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}

func (n *Node) handleRSAShare(w http.ResponseWriter, r *http.Request) {
	var req partialRequest
	if err := readPartialRequest(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	p, err := n.answerRSAShare(r.Context(), &req)
	writeRPC(w, p, err)
}

// answerRSAShare is a threshold RSA share holder's side: the same checks
// as for every use of a share (authorizeAsHolder: its own read index, the
// request's signature and the key's access for the gateway or the
// operator's rule on its own state, the nonce spent once), then the input
// (op rsa-share, from a gateway node; for op sign, the message padded
// here, api.RSASignInput) checked against the public key its own state
// holds (circl: a modulus the attacker chose could
// disclose the share), then x^(2Δs_i) mod n, with circl's blinding. The
// share is opened from the state, where it is sealed to this node's
// identity key, for this one computation.
func (n *Node) answerRSAShare(ctx context.Context, req *partialRequest) (_ *rsaShareAnswer, err error) {
	defer n.observeHolder(ctx, req, &err)()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	g, err := n.authorizeAsHolder(ctx, req)
	if err != nil {
		return nil, err
	}
	key := g.key
	if key.RSA() == nil {
		return nil, Errorf(KindInvalid, "key %q is a %s key: it has no threshold RSA shares", key.Name, key.Type)
	}
	mine := key.RSA().ShareOf(n.id.NodeID)
	if mine == nil {
		return nil, Errorf(KindNoQuorum, "node %s holds no share of rsa key %q", n.id.NodeID, key.Name)
	}
	pub, ok := key.RSAPublicKey()
	if !ok {
		return nil, Errorf(KindInternal, "key %q has no RSA public key", key.Name)
	}
	input := g.cmd.Release.Input
	if g.cmd.Release.Op == fsm.OpSign { // this holder pads the message itself
		if input, err = api.RSASignInput(pub, g.cmd.Release.Padding, g.cmd.Release.Message, g.cmd.Nonce); err != nil {
			return nil, Errorf(KindInvalid, "%v", err)
		}
	}
	if err := checkRSAInput(pub, input); err != nil {
		return nil, err
	}
	encPriv, err := shamir.EncryptionKeyFromEd25519(n.id.SignKey)
	if err != nil {
		return nil, Errorf(KindInternal, "identity key: %v", err)
	}
	ks, err := api.OpenRSAShare(encPriv, g.clusterID, key, mine)
	clear(encPriv)
	if err != nil {
		return nil, Errorf(KindNoQuorum, "node %s has no usable share of rsa key %q: %v", n.id.NodeID, key.Name, err)
	}
	s, err := ks.Sign(rand.Reader, pub, input, false)
	if err != nil {
		return nil, Errorf(KindInternal, "rsa share: %v", err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		return nil, Errorf(KindInternal, "rsa share: %v", err)
	}
	if tamper := n.rsaShareHook.Load(); tamper != nil {
		b = (*tamper)(b)
	}
	var index uint32
	n.fsm.Read(func(s *fsm.State) {
		if me := s.Nodes[n.id.NodeID]; me != nil {
			index = me.Index
		}
	})
	return &rsaShareAnswer{NodeIndex: index, Share: b}, nil
}
