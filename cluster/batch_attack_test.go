package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// A client checks the proofs of the t partials it combines in one batch
// (shamir.Verifier.VerifyBatch), from the commitments each holder's
// partial carries, and checks them one by one when the batch fails. These
// attacks are a holder's, or the coordinator's, on that shortcut.

// relayedRelease is a blind release through node 0 of a new secret, with
// what a lying relay needs to seal partials of its own.
type relayedRelease struct {
	c      *testCluster
	secret []byte
	sg     *fsm.Signed
	sr     *SealedRelease
	eph    []byte // the request's ephemeral key
	rctx   []byte
}

func newRelayedRelease(t *testing.T, c *testCluster, name string) *relayedRelease {
	t.Helper()
	secret := randomBytes(t, 32)
	c.createSecret(name, secret)
	return relaySigned(t, c, name, secret, c.releaseRequest(name))
}

// wantOpens asserts that the client opens r, as relayed, to its secret
// (what: the release, for the failure).
func (r *relayedRelease) wantOpens(t *testing.T, what string) {
	t.Helper()
	if got, err := r.c.openRelease(r.sg, r.sr); err != nil || !bytes.Equal(got, r.secret) {
		t.Fatalf("%s: %v", what, err)
	}
}

// relaySigned releases key name, whose secret is secret, through node 0
// with the signed request sg, as the coordinator relays it to the client.
func relaySigned(t *testing.T, c *testCluster, name string, secret []byte, sg *fsm.Signed) *relayedRelease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sr, err := c.nodes[0].n.Release(ctx, sg)
	if err != nil {
		t.Fatal(err)
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	return &relayedRelease{c: c, secret: secret, sg: sg, sr: sr, eph: cmd.Release.Ephemeral,
		rctx: fsm.ReleaseContext(sr.ClusterID, name, sr.Version, sr.Epoch, sg.Payload)}
}

// share is the share of the node that made sealed partial sp.
func (r *relayedRelease) share(t *testing.T, sp *SealedPartial) *shamir.Share {
	t.Helper()
	for _, tn := range r.c.nodes {
		if tn.n.id.NodeID == sp.Node {
			return tn.n.shares.current(r.sr.Epoch)
		}
	}
	t.Fatalf("no share of node %s", sp.Node)
	return nil
}

// seal seals partial p in place of sp, to the request's ephemeral key.
func (r *relayedRelease) seal(t *testing.T, sp *SealedPartial, p *shamir.Partial) {
	t.Helper()
	plain, _ := json.Marshal(p)
	ct, err := shamir.SealX25519(rand.Reader, r.eph, fsm.PartialSealInfo(r.rctx, sp.Index), plain)
	if err != nil {
		t.Fatal(err)
	}
	sp.R, sp.Sealed = ct.R, ct.Sealed
}

func (r *relayedRelease) clone() *SealedRelease {
	out := *r.sr
	out.Partials = append([]SealedPartial(nil), r.sr.Partials...)
	return &out
}

// TestClientNamesALyingHolderWhenTheBatchFails: a holder's partial with a
// value of its choosing, commitments and a challenge consistent with it,
// fails the client's batch; the client then checks each partial and names
// that holder, and only it. A partial whose proof is good but whose
// commitments are not (or are missing) fails the batch too, passes alone,
// and the right secret opens.
func TestClientNamesALyingHolderWhenTheBatchFails(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newRelayedRelease(t, c, "batch/lying")
	r.wantOpens(t, "the honest release")
	for at := range r.sr.Partials {
		lying := r.clone()
		victim := &lying.Partials[at]
		pr, err := shamir.NewProver(r.share(t, victim))
		if err != nil {
			t.Fatal(err)
		}
		// The value for another point: a proof made with it for R fails.
		_, other, _ := shamir.GenerateEncryptionKey(rand.Reader)
		V, err := pr.Value(other)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pr.Partial(rand.Reader, r.sr.R, V, r.rctx)
		if err != nil {
			t.Fatal(err)
		}
		r.seal(t, victim, p)
		_, err = c.openRelease(r.sg, lying)
		if err == nil {
			t.Fatalf("the client opened a release with share %d's wrong value", victim.Index)
		}
		want := "partial of share " + itoa(victim.Index) + " (node \"" + victim.Node + "\")"
		if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "rejected 1 of") {
			t.Errorf("the client's error %q does not name %s alone", msg, want)
		}
	}
	for name, lie := range map[string]func(p *shamir.Partial){
		"no commitments":      func(p *shamir.Partial) { p.Commits = nil },
		"commitments swapped": func(p *shamir.Partial) { p.Commits = append(bytes.Clone(p.Commits[32:]), p.Commits[:32]...) },
	} {
		lying := r.clone()
		victim := &lying.Partials[0]
		pr, err := shamir.NewProver(r.share(t, victim))
		if err != nil {
			t.Fatal(err)
		}
		V, _ := pr.Value(r.sr.R)
		p, err := pr.Partial(rand.Reader, r.sr.R, V, r.rctx)
		if err != nil {
			t.Fatal(err)
		}
		lie(p)
		r.seal(t, victim, p)
		if got, err := c.openRelease(r.sg, lying); err != nil || !bytes.Equal(got, r.secret) {
			t.Fatalf("%s, with a good proof: %v", name, err)
		}
	}
}

// TestClientRefusesTheCoordinatorsOwnCiphertext: a coordinator relays the
// key's ciphertext (R and the sealed secret), and knows the request's
// ephemeral key, so it can relay a ciphertext of its own, R' = r'*G and a
// secret of its choice sealed under r'*X, with partials of its making
// that combine to r'*X: they open with the ephemeral key, they combine,
// and the AEAD tag passes. Only the proofs refuse them: no holder proved
// anything for R', and the coordinator cannot prove for another share.
// This is why the client checks the proofs before it trusts the
// combination, and never lets the tag decide alone.
func TestClientRefusesTheCoordinatorsOwnCiphertext(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newRelayedRelease(t, c, "batch/substituted")
	planted := []byte("a secret the coordinator chose")
	ct, err := shamir.Seal(rand.Reader, r.sr.Poly[0], fsm.SealInfo(r.sr.ClusterID, "batch/substituted"), planted)
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator knows r' (it sealed) and can make values that
	// combine to r'*X; the test takes the holders' own values for R'
	// (it has every share), which do.
	forged := r.clone()
	forged.R, forged.Sealed = ct.R, ct.Sealed
	for i := range forged.Partials[:2] {
		sp := &forged.Partials[i]
		pr, err := shamir.NewProver(r.share(t, sp))
		if err != nil {
			t.Fatal(err)
		}
		V, err := pr.Value(ct.R)
		if err != nil {
			t.Fatal(err)
		}
		// Values that combine to r'*X, and proofs the coordinator made up
		// (for the shares' values at R', which only the holders could
		// prove, and did not).
		r.seal(t, sp, &shamir.Partial{Index: sp.Index, Value: V, Challenge: make([]byte, 32), Response: make([]byte, 32),
			Commits: append(edwards25519.NewGeneratorPoint().Bytes(), edwards25519.NewGeneratorPoint().Bytes()...)})
	}
	forged.Partials = forged.Partials[:2]
	got, err := c.openRelease(r.sg, forged)
	if err == nil {
		t.Fatalf("the client opened the coordinator's own ciphertext: %q", got)
	}
	for _, sp := range forged.Partials {
		if want := "partial of share " + itoa(sp.Index); !strings.Contains(err.Error(), want) {
			t.Errorf("the client's error %q does not name %s", err, want)
		}
	}
}

// TestClientNamesASmallOrderPartialInABatch: with its commitments sent,
// a lying holder need not grind its proof to add T of order 8 to its
// value: the batch multiplies by the cofactor and passes it. The client's
// subgroup check on the combination refuses it and names that holder
// alone, unless its Lagrange coefficient kills T, when the right secret
// opens (as in TestClientNamesASmallOrderPartial).
func TestClientNamesASmallOrderPartialInABatch(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	r := newRelayedRelease(t, c, "batch/torsion")
	T, err := new(edwards25519.Point).SetBytes(mustDecodeHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for at := range r.sr.Partials {
		lying := r.clone()
		victim := &lying.Partials[at]
		pr, err := shamir.NewProver(r.share(t, victim))
		if err != nil {
			t.Fatal(err)
		}
		V, _ := pr.Value(r.sr.R)
		Vp, _ := new(edwards25519.Point).SetBytes(V)
		p, err := pr.Partial(rand.Reader, r.sr.R, Vp.Add(Vp, T).Bytes(), r.rctx)
		if err != nil {
			t.Fatal(err)
		}
		r.seal(t, victim, p)
		got, err := c.openRelease(r.sg, lying)
		if err == nil {
			if !bytes.Equal(got, r.secret) {
				t.Fatalf("the client opened share %d's small-order value to another secret", victim.Index)
			}
			continue
		}
		refused++
		want := "partial of share " + itoa(victim.Index) + " (node \"" + victim.Node + "\")"
		if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "rejected 1 of") {
			t.Errorf("the client's error %q does not name %s alone", msg, want)
		}
	}
	if refused == 0 {
		t.Fatal("no lying holder was named")
	}
}
