package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
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
