package shamir

import (
	"crypto/rand"
	"fmt"
	"testing"

	"filippo.io/edwards25519"
)

// node is one participant of a test cluster.
type node struct {
	index   uint32
	encPriv []byte
	encPub  []byte
	share   *Share
}

func newNodes(t testing.TB, indexes ...uint32) []*node {
	t.Helper()
	out := make([]*node, len(indexes))
	for i, x := range indexes {
		priv, pub, err := GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &node{index: x, encPriv: priv, encPub: pub}
	}
	return out
}

func recipientsOf(nodes []*node) ([]Recipient, []uint32) {
	rs := make([]Recipient, len(nodes))
	xs := make([]uint32, len(nodes))
	for i, n := range nodes {
		rs[i] = Recipient{Index: n.index, EncPub: n.encPub}
		xs[i] = n.index
	}
	return rs, xs
}

// runDKG runs a full DKG among nodes with threshold th and returns the
// agreed public polynomial; every node gets its share.
func runDKG(t testing.TB, nodes []*node, th int, context []byte) *PublicPoly {
	t.Helper()
	rs, xs := recipientsOf(nodes)
	deals := make([]*Deal, len(nodes))
	for i, n := range nodes {
		d, err := NewFreshDeal(rand.Reader, n.index, th, rs, context)
		if err != nil {
			t.Fatalf("NewFreshDeal(%d): %v", n.index, err)
		}
		if err := VerifyFreshDeal(d, th, xs); err != nil {
			t.Fatalf("VerifyFreshDeal(%d): %v", n.index, err)
		}
		deals[i] = d
	}
	public, err := func() (*PublicPoly, error) {
		s, p, err := CombineFresh(deals, nil, 0)
		if s != nil {
			return nil, fmt.Errorf("share returned without sub-shares")
		}
		return p, err
	}()
	if err != nil {
		t.Fatalf("CombineFresh(nil): %v", err)
	}
	if err := public.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		mine := map[uint32][]byte{}
		for _, d := range deals {
			sub, err := OpenDeal(d, n.index, n.encPriv, context)
			if err != nil {
				t.Fatalf("OpenDeal(dealer %d, me %d): %v", d.Dealer, n.index, err)
			}
			mine[d.Dealer] = sub
		}
		sh, p, err := CombineFresh(deals, mine, n.index)
		if err != nil {
			t.Fatalf("CombineFresh(%d): %v", n.index, err)
		}
		if !p.Equal(public) {
			t.Fatalf("node %d computed a different public polynomial", n.index)
		}
		if err := p.VerifyShare(sh); err != nil {
			t.Fatal(err)
		}
		n.share = sh
	}
	return public
}

// runReshare reshares from the old holders `dealers` (their shares are
// used) to newNodes with threshold th; newNodes get their new shares.
func runReshare(t testing.TB, old *PublicPoly, dealers []*node, newNodes []*node, th int, context []byte) *PublicPoly {
	t.Helper()
	rs, xs := recipientsOf(newNodes)
	deals := make([]*Deal, len(dealers))
	for i, n := range dealers {
		d, err := NewReshareDeal(rand.Reader, n.share, th, rs, context)
		if err != nil {
			t.Fatalf("NewReshareDeal(%d): %v", n.index, err)
		}
		if err := VerifyReshareDeal(d, old, th, xs); err != nil {
			t.Fatalf("VerifyReshareDeal(%d): %v", n.index, err)
		}
		deals[i] = d
	}
	_, public, err := CombineReshare(deals, nil, 0)
	if err != nil {
		t.Fatalf("CombineReshare(nil): %v", err)
	}
	if !SamePublicKey(old, public) {
		t.Fatal("reshare changed the public key")
	}
	for _, n := range newNodes {
		mine := map[uint32][]byte{}
		for _, d := range deals {
			sub, err := OpenDeal(d, n.index, n.encPriv, context)
			if err != nil {
				t.Fatalf("OpenDeal(dealer %d, me %d): %v", d.Dealer, n.index, err)
			}
			mine[d.Dealer] = sub
		}
		sh, p, err := CombineReshare(deals, mine, n.index)
		if err != nil {
			t.Fatalf("CombineReshare(%d): %v", n.index, err)
		}
		if !p.Equal(public) {
			t.Fatalf("node %d computed a different public polynomial", n.index)
		}
		n.share = sh
	}
	return public
}

func partialsFrom(t testing.TB, nodes []*node, R, context []byte) []*Partial {
	t.Helper()
	out := make([]*Partial, len(nodes))
	for i, n := range nodes {
		p, err := ComputePartial(rand.Reader, n.share, R, context)
		if err != nil {
			t.Fatalf("ComputePartial(%d): %v", n.index, err)
		}
		out[i] = p
	}
	return out
}

// subsets returns all k-subsets of {0..n-1}.
func subsets(n, k int) [][]int {
	var out [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
	return out
}

func randomPoint(t testing.TB) *edwards25519.Point {
	t.Helper()
	s, err := randomScalar(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return new(edwards25519.Point).ScalarBaseMult(s)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
