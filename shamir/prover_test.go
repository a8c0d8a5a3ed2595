package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// proverPartials are the partials of nodes' shares for R made by Provers,
// with their commitments.
func proverPartials(t testing.TB, nodes []*node, R, context []byte) []*Partial {
	t.Helper()
	var out []*Partial
	for _, n := range nodes {
		pr, err := NewProver(n.share)
		if err != nil {
			t.Fatal(err)
		}
		V, err := pr.Value(R)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pr.Partial(rand.Reader, R, V, context)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestProverMakesComputePartialsPartials: a Prover's partial has
// ComputePartial's value and a proof that every verifier accepts, one by
// one or in a batch; with another value its proof fails; once erased it
// makes nothing.
func TestProverMakesComputePartialsPartials(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	msg := []byte("the unlock key of disk 18")
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	parts := proverPartials(t, nodes, ct.R, testRelease)
	v, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		cp, err := ComputePartial(rand.Reader, nodes[i].share, ct.R, testRelease)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(cp.Value, p.Value) || len(p.Commits) != 2*PointSize || len(cp.Commits) != 0 {
			t.Fatalf("partial %d: the Prover's value or commitments differ from ComputePartial's", p.Index)
		}
		if err := VerifyPartial(poly, ct.R, p, testRelease); err != nil {
			t.Fatalf("partial %d of a Prover: %v", p.Index, err)
		}
	}
	if got, err := Open(poly, ct, testInfo, parts, testRelease); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open with a Prover's partials: %v", err)
	}

	pr, err := NewProver(nodes[0].share)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pr.Value(poly.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := pr.Partial(rand.Reader, ct.R, other, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(wrong); !errors.Is(err, ErrBadProof) {
		t.Fatalf("a Prover's partial with the value of another R: %v, want ErrBadProof", err)
	}
	if _, ok := v.VerifyBatch(rand.Reader, []*Partial{wrong, parts[1]}); ok {
		t.Fatal("a batch with a partial of the wrong value passed")
	}
	pr.Erase()
	if _, err := pr.Value(ct.R); err == nil {
		t.Fatal("an erased Prover computed a value")
	}
	if _, err := pr.Partial(rand.Reader, ct.R, parts[0].Value, testRelease); err == nil {
		t.Fatal("an erased Prover made a partial")
	}
}

// TestVerifyBatchDecidesAsVerifyProof: a batch of honest partials passes
// and opens; a batch with any bad partial fails, and checking each with
// VerifyProof (what OpenRelease then does) names the bad one, or passes a
// partial whose proof is good and only its commitments are bad; a value
// with a small-order component passes the batch (its cofactor drops it, as
// VerifyProof leaves it) and Open refuses it and names it.
func TestVerifyBatchDecidesAsVerifyProof(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	msg := []byte("the unlock key of disk 18")
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	parts := proverPartials(t, nodes, ct.R, testRelease)
	for _, pair := range [][]*Partial{parts[:2], parts[1:], {parts[2], parts[0]}, parts} {
		vps, ok := v.VerifyBatch(rand.Reader, pair)
		if !ok {
			t.Fatal("a batch of honest partials failed")
		}
		if got, err := v.Open(ct, testInfo, vps); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Open with a batch's partials: %v", err)
		}
	}
	// Another context: every challenge differs.
	other, err := NewVerifier(poly, ct.R, []byte("release=43"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.VerifyBatch(rand.Reader, parts[:2]); ok {
		t.Fatal("a batch verified for another release")
	}

	clone := func(p *Partial) *Partial {
		c := *p
		c.Value, c.Challenge, c.Response, c.Commits = bytes.Clone(p.Value), bytes.Clone(p.Challenge), bytes.Clone(p.Response), bytes.Clone(p.Commits)
		return &c
	}
	_, point, _ := GenerateEncryptionKey(rand.Reader)
	s, err := decodeSecretScalar(nodes[1].share.Value)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		lie         func(p *Partial)
		proofPasses bool // the proof alone is good: VerifyProof passes it
	}{
		"no commitments": {lie: func(p *Partial) { p.Commits = nil }, proofPasses: true},
		"commitments swapped": {lie: func(p *Partial) {
			p.Commits = append(bytes.Clone(p.Commits[PointSize:]), p.Commits[:PointSize]...)
		}, proofPasses: true},
		"another response": {lie: func(p *Partial) {
			p.Response = edwards25519.NewScalar().Add(mustScalar(t, p.Response), scalarFromUint32(1)).Bytes()
		}},
		"another value, challenge recomputed": {lie: func(p *Partial) {
			p.Value = point
			S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
			p.Challenge = dleqChallenge(ct.R, S, p.Value, p.Commits[:PointSize], p.Commits[PointSize:], p.Index, testRelease).Bytes()
		}},
		"a commitment off by a point": {lie: func(p *Partial) {
			A1, _ := new(edwards25519.Point).SetBytes(p.Commits[:PointSize])
			A1.Add(A1, edwards25519.NewGeneratorPoint())
			S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
			p.Commits = append(A1.Bytes(), p.Commits[PointSize:]...)
			p.Challenge = dleqChallenge(ct.R, S, p.Value, p.Commits[:PointSize], p.Commits[PointSize:], p.Index, testRelease).Bytes()
		}},
	} {
		bad := clone(parts[1])
		c.lie(bad)
		if _, ok := v.VerifyBatch(rand.Reader, []*Partial{parts[0], bad}); ok {
			t.Fatalf("%s: the batch passed", name)
		}
		if _, err := v.VerifyProof(parts[0]); err != nil {
			t.Fatalf("%s: the honest partial fails alone: %v", name, err)
		}
		_, err := v.VerifyProof(bad)
		if c.proofPasses != (err == nil) {
			t.Fatalf("%s: VerifyProof of the lying partial: %v", name, err)
		}
	}

	// A value with a small-order component and honest commitments: the
	// batch's cofactor drops c*T whatever the challenge.
	T := torsionPoints(t)[1]
	Tp, err := new(edwards25519.Point).SetBytes(T)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := NewProver(nodes[1].share)
	if err != nil {
		t.Fatal(err)
	}
	V, _ := pr.Value(ct.R)
	Vp, _ := new(edwards25519.Point).SetBytes(V)
	for range 4 {
		lying, err := pr.Partial(rand.Reader, ct.R, new(edwards25519.Point).Add(Vp, Tp).Bytes(), testRelease)
		if err != nil {
			t.Fatal(err)
		}
		vps, ok := v.VerifyBatch(rand.Reader, []*Partial{parts[0], lying})
		if !ok {
			t.Fatal("the batch refused a value whose prime-order part is s*R: it leaves the subgroup check to Open")
		}
		_, err = v.Open(ct, testInfo, vps)
		if !errors.Is(err, ErrInvalidPoint) || !strings.Contains(err.Error(), "partial from 2:") || strings.Contains(err.Error(), "partial from 1") {
			t.Fatalf("Open with a batch holding a small-order value: %v, want ErrInvalidPoint naming partial 2", err)
		}
	}
}

func mustScalar(t *testing.T, b []byte) *edwards25519.Scalar {
	t.Helper()
	s, err := decodeScalar(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestVerifyBatchesAcrossPoints: the partials of several ciphertext points
// (a batch of transit items) pass in one batch and each item combines to
// its own s*R; a partial moved to another item, or another item's context,
// or a wrong value in any one item, fails the whole batch.
func TestVerifyBatchesAcrossPoints(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	var vs []*Verifier
	var ps [][]*Partial
	var cts []*Ciphertext
	for i := range 3 {
		ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		ctx := []byte{'i', byte(i)}
		v, err := NewVerifier(poly, ct.R, ctx)
		if err != nil {
			t.Fatal(err)
		}
		cts, vs, ps = append(cts, ct), append(vs, v), append(ps, proverPartials(t, nodes, ct.R, ctx)[:2])
	}
	vps, ok := VerifyBatches(rand.Reader, vs, ps)
	if !ok {
		t.Fatal("a batch of honest partials of three points failed")
	}
	for i, v := range vs {
		got, err := v.Open(cts[i], testInfo, vps[i])
		if err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("item %d opened with the batch's partials: %q, %v", i, got, err)
		}
	}
	moved := [][]*Partial{ps[0], {ps[2][0], ps[1][1]}, ps[2]}
	if _, ok := VerifyBatches(rand.Reader, vs, moved); ok {
		t.Fatal("a batch with a partial moved to another item passed")
	}
	swapped := []*Verifier{vs[1], vs[0], vs[2]}
	if _, ok := VerifyBatches(rand.Reader, swapped, ps); ok {
		t.Fatal("a batch of items checked against each other's points passed")
	}
	bad := *ps[2][1]
	bad.Value = ps[1][1].Value
	if _, ok := VerifyBatches(rand.Reader, vs, [][]*Partial{ps[0], ps[1], {ps[2][0], &bad}}); ok {
		t.Fatal("a batch with a wrong value in one item passed")
	}
}
