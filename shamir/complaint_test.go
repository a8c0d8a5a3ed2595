package shamir

import (
	"crypto/rand"
	"errors"
	"testing"
)

// badSubshare re-encrypts recipient's sub-share of d as value, with a
// valid ciphertext: the dealer lies about f(recipient) and only the
// recipient can see it.
func badSubshare(t *testing.T, d *Deal, recipient *node, value []byte, context []byte) {
	t.Helper()
	pub, err := decodePoint(recipient.encPub)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := encryptSubshare(rand.Reader, pub, value, dealAD(context, d.Dealer, recipient.index, d.Commits))
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Shares {
		if d.Shares[i].Index == recipient.index {
			d.Shares[i].Ciphertext = ct
		}
	}
}

// TestDealComplaint: a recipient's complaint against a bad sub-share is
// upheld by anyone from public data alone; a complaint against a good
// sub-share is refused as false, and a forged proof as a bad proof.
func TestDealComplaint(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, xs := recipientsOf(nodes)
	victim := nodes[1]
	fresh := func() *Deal {
		d, err := NewFreshDeal(rand.Reader, 7, 2, rs, testContext)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	wrong := randomScalarBytes(t)
	for _, tc := range []struct {
		name   string
		deal   func() *Deal
		signer *node // whose key makes the proof (the victim unless set)
		tamper func(c *DealComplaint)
		want   error // nil: the complaint holds
	}{
		{name: "wrong value under a valid ciphertext", deal: func() *Deal {
			d := fresh()
			badSubshare(t, d, victim, wrong, testContext)
			return d
		}},
		{name: "ciphertext that does not open", deal: func() *Deal {
			d := fresh()
			for i := range d.Shares {
				if d.Shares[i].Index == victim.index {
					d.Shares[i].Ciphertext[PointSize+3] ^= 1
				}
			}
			return d
		}},
		{name: "non-canonical scalar", deal: func() *Deal {
			d := fresh()
			badSubshare(t, d, victim, mustHex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010"), testContext)
			return d
		}},
		{name: "good sub-share", deal: fresh, want: ErrFalseComplaint},
		{name: "another node's key", deal: func() *Deal {
			d := fresh()
			badSubshare(t, d, victim, wrong, testContext)
			return d
		}, signer: nodes[0], want: ErrBadProof},
		{name: "forged shared point", deal: func() *Deal {
			d := fresh()
			badSubshare(t, d, victim, wrong, testContext)
			return d
		}, tamper: func(c *DealComplaint) { c.Shared = randomPoint(t).Bytes() }, want: ErrBadProof},
		{name: "complaint for another dealer", deal: func() *Deal {
			d := fresh()
			badSubshare(t, d, victim, wrong, testContext)
			return d
		}, tamper: func(c *DealComplaint) { c.Dealer = 8 }, want: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.deal()
			if err := VerifyFreshDeal(d, 2, xs); err != nil {
				t.Fatalf("the deal fails its public checks: %v", err)
			}
			_, openErr := OpenDeal(d, victim.index, victim.encPriv, testContext)
			if (openErr == nil) != errors.Is(tc.want, ErrFalseComplaint) {
				t.Fatalf("OpenDeal by the victim: %v", openErr)
			}
			signer := victim
			if tc.signer != nil {
				signer = tc.signer
			}
			c, err := NewDealComplaint(rand.Reader, d, victim.index, signer.encPriv, testContext)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(c)
			}
			err = VerifyDealComplaint(d, victim.encPub, c, testContext)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("a true complaint was refused: %v", err)
			case tc.want == errAny && err == nil, tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			// Bound to its context: the same complaint in another round
			// does not verify.
			if err := VerifyDealComplaint(d, victim.encPub, c, []byte("another round")); err == nil && tc.want == nil {
				t.Fatal("a complaint verified under another context")
			}
		})
	}
}

var errAny = errors.New("any error")

func randomScalarBytes(t *testing.T) []byte {
	t.Helper()
	s, err := randomScalar(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}
