package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// TestVerifierOpensWithWhatItVerified: a Verifier accepts honest partials,
// refuses a forged one as VerifyPartial does, and opens only with partials
// it verified itself, for its own ciphertext.
func TestVerifierOpensWithWhatItVerified(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	msg := []byte("the unlock key of disk 17")
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	parts := partialsFrom(t, nodes, ct.R, testRelease)
	v, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	var good []*VerifiedPartial
	for _, p := range parts {
		vp, err := v.Verify(p)
		if err != nil {
			t.Fatalf("honest partial %d rejected: %v", p.Index, err)
		}
		if vp.Index() != p.Index {
			t.Fatalf("verified partial says index %d, want %d", vp.Index(), p.Index)
		}
		good = append(good, vp)
	}
	got, err := v.Open(ct, testInfo, good[1:])
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open with verified partials: %v", err)
	}

	forged := *parts[0]
	forged.Value = parts[1].Value
	if _, err := v.Verify(&forged); !errors.Is(err, ErrBadProof) {
		t.Fatalf("forged partial: %v, want ErrBadProof", err)
	}
	wrongContext, err := NewVerifier(poly, ct.R, []byte("another release"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrongContext.Verify(parts[0]); !errors.Is(err, ErrBadProof) {
		t.Fatalf("partial for another context: %v, want ErrBadProof", err)
	}

	// Partials another Verifier accepted do not open here, even for the
	// same ciphertext.
	other, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(ct, testInfo, good); !errors.Is(err, ErrBadProof) {
		t.Fatalf("Open with another verifier's partials: %v, want ErrBadProof", err)
	}
	// Nor do they open another ciphertext.
	ct2, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Open(ct2, testInfo, good); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open of another ciphertext: %v, want ErrDecrypt", err)
	}
	if _, err := v.Open(ct, testInfo, good[:1]); !errors.Is(err, ErrNotEnoughPartials) {
		t.Fatalf("Open with 1 of 2: %v, want ErrNotEnoughPartials", err)
	}
	if _, err := v.Open(ct, testInfo, []*VerifiedPartial{good[0], good[0]}); !errors.Is(err, ErrDuplicateIndex) {
		t.Fatalf("Open with one partial twice: %v, want ErrDuplicateIndex", err)
	}
}

// TestCheckedPointsRememberOnlyPassed: the ciphertext R a release uses
// again and again passes its subgroup check once, and a point with a
// small-order component is refused every time, even right after the
// prime-order point it was made from passed.
func TestCheckedPointsRememberOnlyPassed(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := ComputePartial(rand.Reader, nodes[0].share, ct.R, testRelease); err != nil {
			t.Fatal(err)
		}
		if _, err := NewVerifier(poly, ct.R, testRelease); err != nil {
			t.Fatal(err)
		}
	}
	mixed := mixedPoint(t)
	for range 3 {
		if _, err := ComputePartial(rand.Reader, nodes[0].share, mixed, testRelease); !errors.Is(err, ErrInvalidPoint) {
			t.Fatalf("ComputePartial with a mixed-order R: %v, want ErrInvalidPoint", err)
		}
		if _, err := NewVerifier(poly, mixed, testRelease); !errors.Is(err, ErrInvalidPoint) {
			t.Fatalf("NewVerifier with a mixed-order R: %v, want ErrInvalidPoint", err)
		}
	}
}

// smallOrderPartial is what a lying holder of share sh can send: a value
// s*R + T with T of small order, and a proof it ground (new nonces until
// the challenge c kills c*T) so that the DLEQ check passes.
func smallOrderPartial(t *testing.T, sh *Share, R, context []byte) *Partial {
	t.Helper()
	var T *edwards25519.Point
	for _, b := range torsionPoints(t) {
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		if p.Equal(identityPoint) == 0 && new(edwards25519.Point).Add(p, p).Equal(identityPoint) == 1 {
			T = p // of order 2
		}
	}
	Rp, err := decodePoint(R)
	if err != nil {
		t.Fatal(err)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		t.Fatal(err)
	}
	V := new(edwards25519.Point).ScalarMult(s, Rp)
	V.Add(V, T)
	S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	for range 256 {
		w, err := randomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		A1 := new(edwards25519.Point).ScalarBaseMult(w).Bytes()
		A2 := new(edwards25519.Point).ScalarMult(w, Rp).Bytes()
		c := dleqChallenge(R, S, V.Bytes(), A1, A2, sh.Index, context)
		z := edwards25519.NewScalar().Multiply(c, s)
		z.Subtract(w, z)
		p := &Partial{Index: sh.Index, Value: V.Bytes(), Challenge: c.Bytes(), Response: z.Bytes()}
		// The proof verifies when c*T is the identity: for T of order 2,
		// when c is even, every other try.
		c2 := new(edwards25519.Point).VarTimeMultiScalarMult([]*edwards25519.Scalar{c}, []*edwards25519.Point{T})
		if c2.Equal(identityPoint) == 1 {
			return p
		}
	}
	t.Fatal("no challenge killed the small-order component in 256 tries")
	return nil
}

// TestOpenChecksTheSubgroupOfProofOnlyPartials: partials of VerifyProof
// open as Verify's do; a lying holder's value with a small-order component
// and a proof that verifies is refused by Verify, passes VerifyProof, and
// is refused by Open, which names it and only it.
func TestOpenChecksTheSubgroupOfProofOnlyPartials(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	msg := []byte("the unlock key of disk 18")
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	parts := partialsFrom(t, nodes, ct.R, testRelease)
	v, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	var honest []*VerifiedPartial
	for _, p := range parts {
		vp, err := v.VerifyProof(p)
		if err != nil {
			t.Fatalf("honest partial %d rejected by VerifyProof: %v", p.Index, err)
		}
		honest = append(honest, vp)
	}
	for _, pair := range [][]*VerifiedPartial{honest[:2], honest[1:], {honest[2], honest[0]}} {
		if got, err := v.Open(ct, testInfo, pair); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Open with partials of VerifyProof: %v", err)
		}
	}
	full, err := v.Verify(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Open(ct, testInfo, []*VerifiedPartial{full, honest[1]}); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open with one partial of Verify and one of VerifyProof: %v", err)
	}

	bad := smallOrderPartial(t, nodes[1].share, ct.R, testRelease)
	if _, err := v.Verify(bad); !errors.Is(err, ErrInvalidPoint) {
		t.Fatalf("Verify of a small-order value with a ground proof: %v, want ErrInvalidPoint", err)
	}
	if err := VerifyPartial(poly, ct.R, bad, testRelease); !errors.Is(err, ErrInvalidPoint) {
		t.Fatalf("VerifyPartial of it: %v, want ErrInvalidPoint", err)
	}
	vbad, err := v.VerifyProof(bad)
	if err != nil {
		t.Fatalf("VerifyProof should leave the subgroup check to Open, and the proof verifies: %v", err)
	}
	for _, pair := range [][]*VerifiedPartial{{honest[0], vbad}, {vbad, honest[2]}, {full, vbad}} {
		_, err := v.Open(ct, testInfo, pair)
		if !errors.Is(err, ErrInvalidPoint) {
			t.Fatalf("Open with the lying holder's partial: %v, want ErrInvalidPoint", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "partial from 2:") || strings.Contains(msg, "partial from 1") || strings.Contains(msg, "partial from 3") {
			t.Fatalf("Open's error %q should name partial 2 and no other", msg)
		}
	}
}

// TestDecodedCommitsRememberOnlyPassed: NewVerifier decodes a polynomial's
// commitments once; a polynomial with a commitment that does not decode is
// refused every time, before and after its valid neighbour was decoded,
// and the remembered points give the same public shares.
func TestDecodedCommitsRememberOnlyPassed(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	bad := &PublicPoly{Commits: [][]byte{poly.Commits[0], torsionPoints(t)[1]}}
	for range 2 {
		if _, err := NewVerifier(bad, ct.R, testRelease); !errors.Is(err, ErrInvalidPoint) {
			t.Fatalf("a polynomial with a small-order commitment: %v, want ErrInvalidPoint", err)
		}
		parts := partialsFrom(t, nodes, ct.R, testRelease)
		v, err := NewVerifier(poly, ct.R, testRelease)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if _, err := v.Verify(p); err != nil {
				t.Fatalf("partial %d against the remembered commitments: %v", p.Index, err)
			}
		}
	}
}
