package cluster

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// Attacks on a release in share mode by a coordinator that mixes what it
// relays: seals from another request, index or epoch, the same seal
// twice, fewer or more seals than the threshold, proof-mode partials
// among share seals (and the reverse), another version, epoch or
// threshold in the reply. Each seal is bound to the holder's public share,
// its index, the request (E, nonce) and the key's ciphertext, version and
// epoch in the holder's own state; none of these opens a wrong secret.

// relayProofMode releases key name, whose secret is secret, in proof mode
// through node 0.
func relayProofMode(t *testing.T, c *testCluster, name string, secret []byte) *relayedRelease {
	t.Helper()
	return relaySigned(t, c, name, secret, c.releaseRequest(name))
}

// wantNoSecret checks that a mixed relay did not open.
func wantNoSecret(t *testing.T, what string, got []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the client opened it: %d bytes", what, len(got))
	}
}

// partialOf is the partial of share index in sr, or nil.
func partialOf(sr *SealedRelease, index uint32) *SealedPartial {
	for i := range sr.Partials {
		if sr.Partials[i].Index == index {
			return &sr.Partials[i]
		}
	}
	return nil
}

// TestShareModeRefusesMixedSeals: a coordinator that relays, in a release
// in share mode, a holder's seal from another request of the same key,
// a seal under another index, the same seal twice, fewer seals than the
// threshold, a proof-mode partial, another version or epoch, or a
// polynomial of another threshold with the pinned constant term, gets
// no secret opened; each seal it spoils is named. Seals after the first t
// are not read: junk there changes nothing. A share seal among proof-mode
// partials is named as a partial that does not open.
func TestShareModeRefusesMixedSeals(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	const name = "share/mixed"
	r := newShareModeRelease(t, c, name)
	other := relayShareMode(t, c, name, r.secret)
	proofs := relayProofMode(t, c, name, r.secret)
	tq := r.sr.Threshold
	if tq != 2 || len(r.sr.Partials) < tq {
		t.Fatalf("threshold %d, %d partials: want 2 and at least 2", tq, len(r.sr.Partials))
	}
	a, b := r.sr.Partials[0].Index, r.sr.Partials[1].Index

	// A seal from another request of the same key, the same holder.
	if sp := partialOf(other.sr, a); sp != nil {
		mixed := r.clone()
		mixed.Partials[0] = *sp
		got, err := c.openRelease(r.sg, mixed)
		wantShareModeRefusal(t, "holder a's seal from another request", got, err, a)
	}
	// Holder b's seal relabelled as share a's: the first seal opened is
	// b's under a's public share and index.
	{
		mixed := r.clone()
		mixed.Partials[0].Sealed = r.sr.Partials[1].Sealed
		got, err := c.openRelease(r.sg, mixed)
		wantShareModeRefusal(t, "holder b's seal as share a's", got, err, a)
		mixed = r.clone()
		mixed.Partials[0].Index, mixed.Partials[1].Index = b, a
		got, err = c.openRelease(r.sg, mixed)
		wantShareModeRefusal(t, "the two seals' indexes swapped", got, err, b)
	}
	// The same seal twice: it opens, but one holder is not t.
	{
		mixed := r.clone()
		mixed.Partials[1] = mixed.Partials[0]
		got, err := c.openRelease(r.sg, mixed)
		wantNoSecret(t, "the same seal twice", got, err)
	}
	// Fewer than t seals.
	{
		mixed := r.clone()
		mixed.Partials = mixed.Partials[:tq-1]
		got, err := c.openRelease(r.sg, mixed)
		wantNoSecret(t, "t-1 seals", got, err)
	}
	// A proof-mode partial of the same holder, from the proof-mode
	// request, among share seals: not share-sealed, named.
	if sp := partialOf(proofs.sr, a); sp != nil {
		mixed := r.clone()
		mixed.Partials[0] = *sp
		got, err := c.openRelease(r.sg, mixed)
		wantShareModeRefusal(t, "a proof-mode partial among share seals", got, err, a)
		if !strings.Contains(err.Error(), "not share-sealed") {
			t.Errorf("a proof-mode partial among share seals: %v, want it called not share-sealed", err)
		}
	}
	// A share seal among proof-mode partials: named as a partial that does
	// not open, and no fallback is asked for (proof mode is the fallback).
	if sp := proofs.sr.Partials[0]; partialOf(r.sr, sp.Index) != nil {
		mixed := proofs.clone()
		mixed.Partials[0] = *partialOf(r.sr, sp.Index)
		got, err := c.openRelease(proofs.sg, mixed)
		wantNoSecret(t, "a share seal among proof-mode partials", got, err)
		if errors.Is(err, api.ErrShareMode) || !strings.Contains(err.Error(), "partial of share "+itoa(sp.Index)) {
			t.Errorf("a share seal among proof-mode partials: %v, want it named, not api.ErrShareMode", err)
		}
	}
	// Another version or epoch in the reply: the client's release context
	// is not the holders'.
	for what, lie := range map[string]func(sr *SealedRelease){
		"the next version": func(sr *SealedRelease) { sr.Version++ },
		"the next epoch":   func(sr *SealedRelease) { sr.Epoch++ },
		"the last epoch":   func(sr *SealedRelease) { sr.Epoch-- },
	} {
		mixed := r.clone()
		lie(mixed)
		got, err := c.openRelease(r.sg, mixed)
		wantShareModeRefusal(t, what, got, err, a)
	}
	// A polynomial of threshold t-1 or t+1 with the pinned constant term:
	// the public shares are not the holders', so no honest seal opens;
	// and a threshold field that is not the polynomial's is refused.
	C := new(edwards25519.Point).ScalarBaseMult(randomScalar(t))
	for what, lie := range map[string]func(sr *SealedRelease){
		"a polynomial of threshold t-1": func(sr *SealedRelease) { sr.Poly, sr.Threshold = sr.Poly[:tq-1], tq-1 },
		"a polynomial of threshold t+1": func(sr *SealedRelease) {
			sr.Poly, sr.Threshold = append(append([][]byte(nil), sr.Poly...), C.Bytes()), tq+1
			if partialOf(sr, 3) == nil { // a third seal, so that t+1 are relayed
				sr.Partials = append(sr.Partials, SealedPartial{Index: 3, Node: "made up", Sealed: sr.Partials[0].Sealed})
			}
		},
		"threshold t+1 with the real polynomial": func(sr *SealedRelease) { sr.Threshold = tq + 1 },
		"threshold t-1 with the real polynomial": func(sr *SealedRelease) { sr.Threshold = tq - 1 },
	} {
		mixed := r.clone()
		lie(mixed)
		got, err := c.openRelease(r.sg, mixed)
		wantNoSecret(t, what, got, err)
	}
	// Junk after the first t seals is not read.
	{
		mixed := r.clone()
		mixed.Partials = append(mixed.Partials[:tq:tq], SealedPartial{Index: 9, Node: "made up", Sealed: bytes.Repeat([]byte{1}, shamir.ShareSealSize)})
		if got, err := c.openRelease(r.sg, mixed); err != nil || !bytes.Equal(got, r.secret) {
			t.Fatalf("t honest seals and junk after: %v", err)
		}
	}
	r.wantOpens(t, "the honest release")
}

// TestShareModeRequestIsAnsweredOnce: a release request in share mode, the
// one a client gives up on when it makes the release again with proofs
// (with a new nonce and ephemeral key), is answered once: sent again
// through any node, or by the coordinator straight to a holder that
// answered it, it is refused as unauthenticated, as in proof mode
// (TestReplayedReleaseIsRefused).
func TestShareModeRequestIsAnsweredOnce(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("share/once", secret)
	for _, tn := range c.nodes {
		r := relayShareMode(t, c, "share/once", secret)
		r.wantOpens(t, "the first release")
		got, err := c.releaseSigned(tn, r.sg)
		if err == nil || KindOf(err) != KindUnauthenticated {
			t.Fatalf("the share-mode request again through %s: %d bytes, %v; want %s", tn.id(), len(got), err, KindUnauthenticated)
		}
		var holder *testNode
		for _, h := range c.nodes {
			if h.id() == r.sr.Partials[0].Node {
				holder = h
			}
		}
		req := c.holderRequest("share/once", 0)
		req.Request = r.sg
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		p, err := holder.n.answerSealedPartial(ctx, req)
		cancel()
		if err == nil || KindOf(err) != KindUnauthenticated {
			t.Fatalf("the share-mode request again straight to %s: %v, %v; want %s", holder.id(), p, err, KindUnauthenticated)
		}
	}
}

// TestShareModeRefusesSealsAcrossAReshare: after a reshare (a 4th node
// joins: new shares, new public shares, t from 2 to 3, the same cluster
// key), a coordinator relays a new release in share mode with the old
// epoch's polynomial, epoch and threshold, and the new holders' seals, or
// a seal it made itself with one old share (a retired disk's), or the old
// request's seals: none opens. With t old shares it opens, as in proof
// mode: t shares of any epoch are the cluster key.
func TestShareModeRefusesSealsAcrossAReshare(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	const name = "share/reshared"
	old := newShareModeRelease(t, c, name)
	oldShares := map[uint32]*shamir.Share{}
	for i := range old.sr.Partials {
		sp := &old.sr.Partials[i]
		sh := *old.share(t, sp)
		sh.Value = bytes.Clone(sh.Value)
		oldShares[sp.Index] = &sh
	}
	c.join(c.addNode())
	st := c.waitSettled(old.sr.Epoch)
	if st.Threshold != 3 || st.Epoch == old.sr.Epoch {
		t.Fatalf("after the join: t=%d, epoch %d (was %d), want 3 and a new epoch", st.Threshold, st.Epoch, old.sr.Epoch)
	}
	r := relayShareMode(t, c, name, old.secret)
	if r.sr.Epoch != st.Epoch || r.sr.Threshold != 3 {
		t.Fatalf("the new release: epoch %d, t=%d", r.sr.Epoch, r.sr.Threshold)
	}
	asOld := func(sr *SealedRelease) {
		sr.Poly, sr.Epoch, sr.Threshold = old.sr.Poly, old.sr.Epoch, old.sr.Threshold
	}
	// The new seals under the old polynomial and epoch.
	mixed := r.clone()
	asOld(mixed)
	got, err := c.openRelease(r.sg, mixed)
	wantShareModeRefusal(t, "the new seals under the old polynomial", got, err, mixed.Partials[0].Index)

	// The old request's seals in the new release, as the old epoch.
	mixed = r.clone()
	asOld(mixed)
	mixed.Partials = old.clone().Partials
	got, err = c.openRelease(r.sg, mixed)
	wantShareModeRefusal(t, "the old request's seals", got, err, mixed.Partials[0].Index)

	// As the old epoch: one seal made with an old share (for the new
	// request, at the old epoch), the other an honest holder's new seal.
	oldCtx := fsm.ReleaseContext(r.sr.ClusterID, name, r.sr.Version, old.sr.Epoch, r.sg.Payload)
	thief := &relayedRelease{c: c, secret: old.secret, sg: r.sg, sr: r.sr, eph: r.eph, rctx: oldCtx}
	ct := &shamir.Ciphertext{R: r.sr.R, Sealed: r.sr.Sealed}
	idx := make([]uint32, 0, 2)
	for i := range oldShares {
		idx = append(idx, i)
	}
	a := idx[0]
	var honest *SealedPartial
	for i := range r.sr.Partials {
		if r.sr.Partials[i].Index != a {
			honest = &r.sr.Partials[i]
			break
		}
	}
	mixed = r.clone()
	asOld(mixed)
	mixed.Partials = []SealedPartial{{Index: a, Node: "a retired disk"}, *honest}
	thief.shareSeal(t, &mixed.Partials[0], oldShares[a], ct, shareValue(t, oldShares[a], r.sr.R))
	got, err = c.openRelease(r.sg, mixed)
	wantShareModeRefusal(t, "one old share's seal and a new holder's", got, err, honest.Index)

	// t old shares: the cluster key of the old epoch, which is the key.
	if len(idx) >= 2 {
		mixed.Partials = nil
		for _, i := range idx[:2] {
			sp := SealedPartial{Index: i, Node: "a retired disk"}
			thief.shareSeal(t, &sp, oldShares[i], ct, shareValue(t, oldShares[i], r.sr.R))
			mixed.Partials = append(mixed.Partials, sp)
		}
		if got, err := c.openRelease(r.sg, mixed); err != nil || !bytes.Equal(got, old.secret) {
			t.Fatalf("t old shares: %v, want the secret (t shares of any epoch are the key)", err)
		}
	}
	r.wantOpens(t, "the honest release")
}

// TestShareModeForTokensAndCompareAndSwap: a token holder's release in
// share mode opens through every node and spends a use as one in proof
// mode does (so a release made again with proofs spends a second); a
// compare-and-swap whose release is in share mode compares, commits at
// the version released, and loses on a wrong hash.
func TestShareModeForTokensAndCompareAndSwap(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret, next := randomBytes(t, 32), randomBytes(t, 32)
	c.createSecret("app/a", secret)
	minted := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"app/a"}, Flags: []string{token.FlagDecrypt}})
	twice := restrict(t, minted, token.Restriction{MaxUses: 2})
	release := func(tn *testNode, tok []byte) ([]byte, error) {
		sg := c.tokenReleaseSealed(c.opID, tok, "app/a", fsm.SealShare)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		sr, err := tn.n.Release(ctx, sg)
		if err != nil {
			return nil, err
		}
		for _, sp := range sr.Partials {
			if len(sp.R) != 0 {
				t.Errorf("through %s: the partial of share %d is not share-sealed", tn.id(), sp.Index)
			}
		}
		return c.openRelease(sg, sr)
	}
	for _, tn := range c.nodes {
		if got, err := release(tn, minted); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("a token release in share mode through %s: %v", tn.id(), err)
		}
	}
	for i, tn := range c.nodes[:2] {
		if got, err := release(tn, twice); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("use %d in share mode through %s: %v", i+1, tn.id(), err)
		}
	}
	if _, err := release(c.nodes[2], twice); KindOf(err) != KindTokenUsedUp {
		t.Fatalf("a third use in share mode: %v (kind %s), want %s", err, KindOf(err), KindTokenUsedUp)
	}

	if _, err := c.casPrepareSealed(c.nodes[1], "app/a", next, randomBytes(t, 32), fsm.SealShare); KindOf(err) != KindConflict {
		t.Fatalf("a compare-and-swap in share mode with a wrong hash: %v, want %s", err, KindConflict)
	}
	replace, err := c.casPrepareSealed(c.nodes[1], "app/a", secret, next, fsm.SealShare)
	if err != nil {
		t.Fatalf("a compare-and-swap's release in share mode: %v", err)
	}
	k, err := c.casCommit(c.nodes[1], replace)
	if err != nil || k.Version != 2 {
		t.Fatalf("the commit: %v, %v", k, err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return storedKey(t, c.nodes[0], "app/a").Version == 2, "node 0 has not applied version 2"
	})
	relayShareMode(t, c, "app/a", next).wantOpens(t, "the release in share mode after the swap, to the new secret")
}
