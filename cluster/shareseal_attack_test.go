package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Attacks on a blind release in share mode (fsm.SealShare): each holder
// seals its value s_i*R alone, with a key from s_i*E that only it and the
// client can compute, bound to the key's ciphertext as its state has it;
// the client combines without proofs and the ciphertext's AEAD tag
// decides. The coordinator relays the ciphertext, the polynomial and the
// seals, and knows E: these are its lies, and a lying holder's.

// newShareModeRelease is newRelayedRelease with the request in share mode.
func newShareModeRelease(t *testing.T, c *testCluster, name string) *relayedRelease {
	t.Helper()
	secret := randomBytes(t, 32)
	c.createSecret(name, secret)
	return relayShareMode(t, c, name, secret)
}

// relayShareMode releases key name, whose secret is secret, in share
// mode through node 0.
func relayShareMode(t *testing.T, c *testCluster, name string, secret []byte) *relayedRelease {
	t.Helper()
	return relaySigned(t, c, name, secret, c.signRelease(&fsm.ReleaseRequest{Key: name, Op: fsm.OpGet, Seal: fsm.SealShare}))
}

// shareSeal seals V in place of sp, as the holder of share sh would for
// the ciphertext ct.
func (r *relayedRelease) shareSeal(t *testing.T, sp *SealedPartial, sh *shamir.Share, ct *shamir.Ciphertext, V []byte) {
	t.Helper()
	pr, err := shamir.NewProver(sh)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := pr.SealToEphemeral(r.eph, shamir.CiphertextHash(ct), fsm.PartialSealInfo(r.rctx, sp.Index), V)
	if err != nil {
		t.Fatal(err)
	}
	sp.R, sp.Sealed = nil, sealed
}

// value is the value of share sh for the point R.
func shareValue(t *testing.T, sh *shamir.Share, R []byte) []byte {
	t.Helper()
	pr, err := shamir.NewProver(sh)
	if err != nil {
		t.Fatal(err)
	}
	V, err := pr.Value(R)
	if err != nil {
		t.Fatal(err)
	}
	return V
}

// wantShareModeRefusal checks that the client refused a release in share
// mode (api.ErrShareMode, which makes it release again with proofs),
// naming share index when it is not 0.
func wantShareModeRefusal(t *testing.T, what string, got []byte, err error, index uint32) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the client opened it: %q", what, got)
	}
	if !errors.Is(err, api.ErrShareMode) {
		t.Fatalf("%s: %v, want api.ErrShareMode", what, err)
	}
	if index != 0 && !strings.Contains(err.Error(), "partial of share "+itoa(index)) {
		t.Errorf("%s: the error %q does not name share %d", what, err, index)
	}
}

// TestShareModeReleaseThroughAnHonestCluster: a release in share mode
// through an honest cluster gives the secret; every holder answered with
// its value sealed with its share (no one-time key, no proof), and
// nothing relayed carries the secret. Every node coordinates it.
func TestShareModeReleaseThroughAnHonestCluster(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newShareModeRelease(t, c, "share/honest")
	if len(r.sr.Partials) < 2 {
		t.Fatalf("%d partials relayed, want 2", len(r.sr.Partials))
	}
	for _, sp := range r.sr.Partials {
		if len(sp.R) != 0 || len(sp.Sealed) != shamir.ShareSealSize {
			t.Errorf("share %d: R of %d bytes, seal of %d, want none and %d", sp.Index, len(sp.R), len(sp.Sealed), shamir.ShareSealSize)
		}
	}
	relayed, _ := json.Marshal(r.sr)
	if bytes.Contains(relayed, r.secret) || strings.Contains(string(relayed), hex.EncodeToString(r.secret)) {
		t.Fatal("the relayed release carries the secret")
	}
	r.wantOpens(t, "the client's open")
	for _, tn := range c.nodes {
		sg := c.signRelease(&fsm.ReleaseRequest{Key: "share/honest", Op: fsm.OpGet, Seal: fsm.SealShare})
		if got, err := c.releaseSigned(tn, sg); err != nil || !bytes.Equal(got, r.secret) {
			t.Fatalf("through %s: %v", tn.id(), err)
		}
	}
}

// TestShareModeRefusesTheCoordinatorsOwnCiphertext: the attack that made
// the client check proofs before it combined
// (TestClientRefusesTheCoordinatorsOwnCiphertext), in share mode. The
// coordinator relays a ciphertext of its own, R' and a secret it chose:
// with the holders' seals, which they made for the real ciphertext, they
// do not open; with a polynomial it forged with the pinned constant term,
// where it knows the secret of share 1's public share and so can seal
// share 1's value itself, it still needs an honest seal for share 2, whose
// public share's logarithm it cannot know, and that seal is for the real
// ciphertext and the real public share.
func TestShareModeRefusesTheCoordinatorsOwnCiphertext(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newShareModeRelease(t, c, "share/substituted")
	planted := []byte("a secret the coordinator chose")
	info := fsm.SealInfo(r.sr.ClusterID, "share/substituted")
	ct, err := shamir.Seal(rand.Reader, r.sr.Poly[0], info, planted)
	if err != nil {
		t.Fatal(err)
	}
	// The honest seals, relayed with the coordinator's ciphertext.
	relayed := r.clone()
	relayed.R, relayed.Sealed = ct.R, ct.Sealed
	got, err := c.openRelease(r.sg, relayed)
	wantShareModeRefusal(t, "the holders' seals with the coordinator's ciphertext", got, err, relayed.Partials[0].Index)

	// Seals of its own, of values that combine to r'*X (the shares'
	// values at R', which the test has): made without the shares they do
	// not open; made with them (what an unauthenticated seal would allow
	// anyone who knows E) they open the planted secret: the shares are
	// what stops the coordinator.
	for _, withShares := range []bool{false, true} {
		own := r.clone()
		own.R, own.Sealed = ct.R, ct.Sealed
		own.Partials = own.Partials[:2]
		for i := range own.Partials {
			sp := &own.Partials[i]
			sh := r.share(t, sp)
			V := shareValue(t, sh, ct.R)
			if !withShares {
				sh = &shamir.Share{Index: sp.Index, Value: randomScalar(t).Bytes()}
			}
			r.shareSeal(t, sp, sh, ct, V)
		}
		got, err := c.openRelease(r.sg, own)
		if withShares {
			if err != nil || !bytes.Equal(got, planted) {
				t.Fatalf("seals made with the shares: %q, %v, want the planted secret", got, err)
			}
			continue
		}
		wantShareModeRefusal(t, "the coordinator's own seals", got, err, own.Partials[0].Index)
	}

	// A polynomial with the pinned constant term X on which the
	// coordinator knows the secret y_a of the public share of index a,
	// the first relayed seal's: C1 = (y_a*G - X)/a. It seals share a's
	// value for R', y_a*R', itself; it can compute share b's (it knows
	// r'), but not seal it: it relays holder b's seal.
	forged := r.clone()
	forged.R, forged.Sealed = ct.R, ct.Sealed
	forged.Partials = forged.Partials[:2]
	a, b := forged.Partials[0].Index, forged.Partials[1].Index
	ya := randomScalar(t)
	X, _ := new(edwards25519.Point).SetBytes(r.sr.Poly[0])
	aInv := edwards25519.NewScalar().Invert(scalarOf(a))
	C1 := new(edwards25519.Point).ScalarMult(aInv, new(edwards25519.Point).Subtract(new(edwards25519.Point).ScalarBaseMult(ya), X))
	forged.Poly = [][]byte{r.sr.Poly[0], C1.Bytes()}
	Rp, _ := new(edwards25519.Point).SetBytes(ct.R)
	r.shareSeal(t, &forged.Partials[0], &shamir.Share{Index: a, Value: ya.Bytes()}, ct, new(edwards25519.Point).ScalarMult(ya, Rp).Bytes())
	got, err = c.openRelease(r.sg, forged)
	wantShareModeRefusal(t, "a forged polynomial, the coordinator's seal of share a", got, err, b)

	// The honest relay opens.
	r.wantOpens(t, "the honest release")
}

// TestShareModeRefusesAForgedSealForAnHonestIndex: the coordinator puts a
// seal of its own in place of a holder's, with the right value even: made
// without that holder's share, it does not open, and the error names the
// share. Made with the share (the test has it), the same seal opens: the
// share is all that stops the coordinator.
func TestShareModeRefusesAForgedSealForAnHonestIndex(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newShareModeRelease(t, c, "share/forged-seal")
	ct := &shamir.Ciphertext{R: r.sr.R, Sealed: r.sr.Sealed}
	for at := range r.sr.Partials[:2] {
		forged := r.clone()
		sp := &forged.Partials[at]
		sh := r.share(t, sp)
		V := shareValue(t, sh, r.sr.R)
		r.shareSeal(t, sp, &shamir.Share{Index: sp.Index, Value: randomScalar(t).Bytes()}, ct, V)
		got, err := c.openRelease(r.sg, forged)
		wantShareModeRefusal(t, "a seal made without the share", got, err, sp.Index)
		r.shareSeal(t, sp, sh, ct, V)
		if got, err := c.openRelease(r.sg, forged); err != nil || !bytes.Equal(got, r.secret) {
			t.Fatalf("the seal made with the share: %v", err)
		}
	}
}

// TestShareModeRefusesAnotherCiphertextOfTheHolders: the coordinator
// relays a ciphertext the cluster does hold, but not the one the holders
// answered for: the key's previous version's, or another key's, or the
// right R with another key's sealed secret. Each holder's seal is bound to
// the ciphertext in its own state, so none opens.
func TestShareModeRefusesAnotherCiphertextOfTheHolders(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	old, current := randomBytes(t, 32), randomBytes(t, 32)
	c.createSecret("share/versions", old)
	v1 := storedKey(t, c.leader(), "share/versions")
	if _, err := c.cas(c.nodes[0], "share/versions", old, current); err != nil {
		t.Fatal(err)
	}
	c.createSecret("share/other", randomBytes(t, 32))
	other := storedKey(t, c.leader(), "share/other")
	c.waitFor(settleTimeout, func() (bool, string) {
		k := storedKey(t, c.nodes[0], "share/versions")
		return k.Version == 2, "node 0 has not applied version 2"
	})
	r := relayShareMode(t, c, "share/versions", current)
	if r.sr.Version != 2 {
		t.Fatalf("released version %d, want 2", r.sr.Version)
	}
	for name, swap := range map[string]func(sr *SealedRelease){
		"the previous version's ciphertext":           func(sr *SealedRelease) { sr.R, sr.Sealed = v1.R, v1.Sealed },
		"the previous version's, as version 1":        func(sr *SealedRelease) { sr.R, sr.Sealed, sr.Version = v1.R, v1.Sealed, 1 },
		"another key's ciphertext":                    func(sr *SealedRelease) { sr.R, sr.Sealed = other.R, other.Sealed },
		"the right R with another key's sealed bytes": func(sr *SealedRelease) { sr.Sealed = other.Sealed },
	} {
		swapped := r.clone()
		swap(swapped)
		got, err := c.openRelease(r.sg, swapped)
		wantShareModeRefusal(t, name, got, err, 0)
	}
	r.wantOpens(t, "the honest release")
}

// TestShareModeLyingHolderIsNamedWithProofs: a holder that seals, with
// its share, a wrong value, or its value plus a point of small order,
// makes the share-mode release fail its AEAD tag (api.ErrShareMode: no
// proof to name it), unless the small-order point's Lagrange coefficient
// kills it, when the right secret opens; the client's release made again with proofs names
// that holder alone, as TestClientNamesALyingHolderWhenTheBatchFails
// and TestClientNamesASmallOrderPartialInABatch show for proof mode (the
// client's switch: client.TestReleaseInShareModeFallsBackToProofs).
func TestShareModeLyingHolderIsNamedWithProofs(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newShareModeRelease(t, c, "share/lying")
	ct := &shamir.Ciphertext{R: r.sr.R, Sealed: r.sr.Sealed}
	T, err := new(edwards25519.Point).SetBytes(mustDecodeHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if err != nil {
		t.Fatal(err)
	}
	proofs := relayedRelease{c: c, secret: r.secret}
	{
		sg := c.signRelease(&fsm.ReleaseRequest{Key: "share/lying", Op: fsm.OpGet})
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		sr, err := c.nodes[0].n.Release(ctx, sg)
		if err != nil {
			t.Fatal(err)
		}
		var cmd fsm.Command
		json.Unmarshal(sg.Payload, &cmd)
		proofs.sg, proofs.sr, proofs.eph = sg, sr, cmd.Release.Ephemeral
		proofs.rctx = fsm.ReleaseContext(sr.ClusterID, "share/lying", sr.Version, sr.Epoch, sg.Payload)
	}
	const smallOrder = "its value plus a small-order point"
	refused := map[string]int{}
	named := 0
	for at := range r.sr.Partials[:2] {
		for name, lie := range map[string]func(V []byte) []byte{
			"a wrong value": func([]byte) []byte {
				_, p, _ := shamir.GenerateEncryptionKey(rand.Reader)
				return p
			},
			smallOrder: func(V []byte) []byte {
				Vp, _ := new(edwards25519.Point).SetBytes(V)
				return Vp.Add(Vp, T).Bytes()
			},
		} {
			lying := r.clone()
			sp := &lying.Partials[at]
			sh := r.share(t, sp)
			bad := lie(shareValue(t, sh, r.sr.R))
			r.shareSeal(t, sp, sh, ct, bad)
			got, err := c.openRelease(r.sg, lying)
			if err == nil && name == smallOrder && bytes.Equal(got, r.secret) {
				continue // T's Lagrange coefficient kills it: the right secret
			}
			wantShareModeRefusal(t, name, got, err, 0)
			refused[name]++

			// The release again with proofs: the same holder, the same lie.
			again := proofs.clone()
			var psp *SealedPartial
			for i := range again.Partials {
				if again.Partials[i].Index == sp.Index {
					psp = &again.Partials[i]
				}
			}
			if psp == nil {
				continue // another pair of holders answered it
			}

			pr, err := shamir.NewProver(sh)
			if err != nil {
				t.Fatal(err)
			}
			p, err := pr.Partial(rand.Reader, proofs.sr.R, lie(shareValue(t, sh, proofs.sr.R)), proofs.rctx)
			if err != nil {
				t.Fatal(err)
			}
			proofs.seal(t, psp, p)
			got, err = c.openRelease(proofs.sg, again)
			if err == nil && name == smallOrder && bytes.Equal(got, r.secret) {
				continue // killed by this pair's coefficient: the right secret
			}
			want := "partial of share " + itoa(sp.Index) + " (node \"" + sp.Node + "\")"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "rejected 1 of") {
				t.Errorf("%s, with proofs: %v, want the error to name %s alone", name, err, want)
			}
			named++
		}
	}
	if named == 0 {
		t.Fatal("no lying holder was named with proofs")
	}
	if refused[smallOrder] == 0 || refused["a wrong value"] != 2 {
		t.Fatalf("refusals %v: want both wrong values and at least one small-order value refused", refused)
	}
}

// TestShareModeHolderRefusesALowOrderEphemeralKey: a client's ephemeral
// key of low order would make the seal's key known to all; the holder
// refuses it in share mode as in proof mode.
func TestShareModeHolderRefusesALowOrderEphemeralKey(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("share/low-order", randomBytes(t, 32))
	victim := c.nodes[2]
	c.waitHasKey(victim, "share/low-order")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req := c.holderRequest("share/low-order", 0)
	req.Request = c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "share/low-order", Op: fsm.OpGet,
		Ephemeral: mustDecodeHex(t, "0100000000000000000000000000000000000000000000000000000000000000"), Seal: fsm.SealShare}})
	if p, err := victim.n.answerSealedPartial(ctx, req); err == nil || KindOf(err) != KindInvalid {
		t.Fatalf("a low-order ephemeral key in share mode: %v (%v), want %s", err, p, KindInvalid)
	}
}

// scalarOf is the scalar i.
func scalarOf(i uint32) *edwards25519.Scalar {
	var b [32]byte
	b[0], b[1], b[2], b[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
	s, _ := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	return s
}

func randomScalar(t *testing.T) *edwards25519.Scalar {
	t.Helper()
	s, err := edwards25519.NewScalar().SetUniformBytes(randomBytes(t, 64))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
