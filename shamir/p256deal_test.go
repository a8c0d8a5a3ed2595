package shamir

import (
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/nistec"
)

// reshareP256 deals the given old shares to nodes t-of-len(nodes), checks
// every deal publicly against the old public shares, and returns the new
// shares and commitments.
func reshareP256(t *testing.T, old []*P256Share, oldPublic map[uint32][]byte, tNew int, nodes []*node) ([]*P256Share, [][]byte) {
	t.Helper()
	rs, xs := recipientsOf(nodes)
	var deals []*P256Deal
	for _, sh := range old {
		d, err := NewP256ReshareDeal(rand.Reader, sh, tNew, rs, testContext)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyP256ReshareDeal(d, oldPublic[sh.Index], tNew, xs); err != nil {
			t.Fatalf("deal of %d: %v", sh.Index, err)
		}
		deals = append(deals, d)
	}
	_, public, err := CombineP256Reshare(deals, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []*P256Share
	for _, n := range nodes {
		mine := map[uint32][]byte{}
		for _, d := range deals {
			sub, err := OpenP256Deal(d, n.index, n.encPriv, testContext)
			if err != nil {
				t.Fatalf("node %d opening the deal of %d: %v", n.index, d.Dealer, err)
			}
			mine[d.Dealer] = sub
		}
		sh, commits, err := CombineP256Reshare(deals, mine, n.index)
		if err != nil {
			t.Fatalf("node %d: %v", n.index, err)
		}
		for k := range commits {
			if !equalBytes(commits[k], public[k]) {
				t.Fatalf("node %d combined other commitments than the public combination", n.index)
			}
		}
		out = append(out, sh)
	}
	return out, public
}

// exchange computes s*X from t shares' partials, with proofs checked
// against public shares taken from the commitments.
func exchangeWith(t *testing.T, shares []*P256Share, commits [][]byte, X []byte) ([]byte, error) {
	t.Helper()
	var ps []*P256Partial
	for _, sh := range shares {
		p, err := ComputeP256Partial(rand.Reader, sh, X, testContext)
		if err != nil {
			t.Fatal(err)
		}
		if commits != nil {
			pub, err := P256PublicShareAt(commits, sh.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyP256Partial(pub, X, p, testContext); err != nil {
				return nil, err
			}
		}
		ps = append(ps, p)
	}
	return CombineP256(ps, len(shares))
}

// TestP256ReshareKeepsTheKey: a 2-of-3 Tang sharing reshared by two of its
// holders to 3-of-4 new members, then again to 2-of-3 others, still gives
// s*X; the new public shares lie on one polynomial whose value at 0 is the
// unchanged public key; an old share mixed with new ones gives another
// point.
func TestP256ReshareKeepsTheKey(t *testing.T) {
	pub, shares, public, err := DealP256(rand.Reader, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	X := nistec.NewP256Point().SetGenerator().Bytes()
	gen2 := newNodes(t, 2, 4, 5, 6)
	next, commits := reshareP256(t, shares[1:], public, 3, gen2)
	if !equalBytes(commits[0], pub) {
		t.Fatal("the reshared commitments have another public key")
	}
	newPublic := map[uint32][]byte{}
	for _, sh := range next {
		newPublic[sh.Index], _ = P256PublicShareAt(commits, sh.Index)
	}
	if err := CheckP256PublicShares(pub, 3, newPublic); err != nil {
		t.Fatalf("the new public shares: %v", err)
	}
	for _, subset := range [][]*P256Share{next[:3], next[1:]} {
		got, err := exchangeWith(t, subset, commits, X)
		if err != nil || !equalBytes(got, pub) {
			t.Fatalf("three new shares: s*G = %x, %v; want the public key", got, err)
		}
	}
	// An old share (index 1, which dealt nothing) with two new ones.
	if got, err := exchangeWith(t, []*P256Share{shares[0], next[1], next[2]}, nil, X); err == nil && equalBytes(got, pub) {
		t.Fatal("an old share combined with two new ones")
	}
	gen3 := newNodes(t, 7, 8, 9)
	last, commits3 := reshareP256(t, next[1:], newPublic, 2, gen3)
	if got, err := exchangeWith(t, last[:2], commits3, X); err != nil || !equalBytes(got, pub) {
		t.Fatalf("after two resharings: %x, %v", got, err)
	}
}

// TestP256DealChecks: a deal of another share than the dealer's, or with a
// sub-share off its polynomial, is caught: the first by anyone, the second
// by its recipient, whose complaint anyone upholds; a false complaint is
// refused.
func TestP256DealChecks(t *testing.T) {
	_, shares, public, err := DealP256(rand.Reader, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	nodes := newNodes(t, 1, 2, 3)
	rs, xs := recipientsOf(nodes)
	d, err := NewP256ReshareDeal(rand.Reader, shares[0], 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyP256ReshareDeal(d, public[2], 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Errorf("a deal checked against another holder's public share: %v, want %v", err, ErrBadDeal)
	}
	if err := VerifyP256ReshareDeal(d, public[1], 3, xs); !errors.Is(err, ErrBadDeal) {
		t.Errorf("a deal of the wrong threshold: %v, want %v", err, ErrBadDeal)
	}
	if err := VerifyP256ReshareDeal(d, public[1], 2, xs[:2]); !errors.Is(err, ErrBadDeal) {
		t.Errorf("a deal with a share for a non-recipient: %v, want %v", err, ErrBadDeal)
	}
	victim := nodes[1]
	good, err := NewP256DealComplaint(rand.Reader, d, victim.index, victim.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyP256DealComplaint(d, victim.encPub, good, testContext); !errors.Is(err, ErrFalseComplaint) {
		t.Errorf("a complaint against a good sub-share: %v, want %v", err, ErrFalseComplaint)
	}
	// The dealer encrypts a value off its polynomial to the victim.
	wrong := nistec.NewP256Point().SetGenerator().Bytes()[1:33]
	pub, _ := decodePoint(victim.encPub)
	ct, err := encryptSubshare(rand.Reader, pub, wrong, dealAD(testContext, d.Dealer, victim.index, d.Commits))
	if err != nil {
		t.Fatal(err)
	}
	d.Shares[1].Ciphertext = ct
	if err := VerifyP256ReshareDeal(d, public[1], 2, xs); err != nil {
		t.Fatalf("the bad sub-share is visible to its recipient only, yet the public check says %v", err)
	}
	if _, err := OpenP256Deal(d, victim.index, victim.encPriv, testContext); !errors.Is(err, ErrBadShare) {
		t.Fatalf("the victim opening a wrong value: %v, want %v", err, ErrBadShare)
	}
	c, err := NewP256DealComplaint(rand.Reader, d, victim.index, victim.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyP256DealComplaint(d, victim.encPub, c, testContext); err != nil {
		t.Fatalf("a true complaint was refused: %v", err)
	}
	if err := VerifyP256DealComplaint(d, nodes[0].encPub, c, testContext); !errors.Is(err, ErrBadProof) {
		t.Errorf("the complaint checked against another member's key: %v, want %v", err, ErrBadProof)
	}
	d.Shares[1].Ciphertext[PointSize+2] ^= 1
	if _, err := OpenP256Deal(d, victim.index, victim.encPriv, testContext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("a tampered ciphertext: %v, want %v", err, ErrDecrypt)
	}
	c, err = NewP256DealComplaint(rand.Reader, d, victim.index, victim.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyP256DealComplaint(d, victim.encPub, c, testContext); err != nil {
		t.Fatalf("a complaint against a sub-share that does not open was refused: %v", err)
	}
}
