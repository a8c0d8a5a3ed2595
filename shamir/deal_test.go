package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

func cloneDeal(d *Deal) *Deal {
	out := &Deal{Dealer: d.Dealer, Commits: cloneBytes(d.Commits)}
	for _, s := range d.Shares {
		out.Shares = append(out.Shares, EncryptedShare{Index: s.Index, Ciphertext: bytes.Clone(s.Ciphertext)})
	}
	return out
}

func TestVerifyFreshDealRejects(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, xs := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 2, 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFreshDeal(d, 2, xs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		mutate     func(d *Deal)
		t          int
		recipients []uint32
		want       error
	}{
		{"wrong threshold", func(*Deal) {}, 3, xs, ErrBadDeal},
		{"threshold above recipients", func(*Deal) {}, 4, xs, ErrBadThreshold},
		{"threshold 0", func(*Deal) {}, 0, xs, ErrBadThreshold},
		{"extra commitment", func(d *Deal) { d.Commits = append(d.Commits, randomPoint(t).Bytes()) }, 2, xs, ErrBadDeal},
		{"missing share", func(d *Deal) { d.Shares = d.Shares[:2] }, 2, xs, ErrBadDeal},
		{"duplicate share", func(d *Deal) { d.Shares[2] = d.Shares[1] }, 2, xs, ErrBadDeal},
		{"share for a non-recipient", func(d *Deal) { d.Shares[2].Index = 9 }, 2, xs, ErrBadDeal},
		{"truncated ciphertext", func(d *Deal) { d.Shares[0].Ciphertext = d.Shares[0].Ciphertext[:EncryptedShareSize-1] }, 2, xs, ErrBadDeal},
		{"dealer 0", func(d *Deal) { d.Dealer = 0 }, 2, xs, ErrInvalidIndex},
		{"recipient 0", func(*Deal) {}, 2, []uint32{0, 1, 2}, ErrInvalidIndex},
		{"duplicate recipient", func(*Deal) {}, 2, []uint32{1, 1, 2}, ErrDuplicateIndex},
		{"non-canonical commitment", func(d *Deal) {
			d.Commits[1] = mustHex(t, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
		}, 2, xs, ErrInvalidPoint},
		{"short commitment", func(d *Deal) { d.Commits[0] = d.Commits[0][:31] }, 2, xs, ErrInvalidPoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bd := cloneDeal(d)
			tc.mutate(bd)
			if err := VerifyFreshDeal(bd, tc.t, tc.recipients); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := VerifyFreshDeal(nil, 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Fatalf("nil deal: %v", err)
	}
}

func TestVerifyReshareDealRejects(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	old := runDKG(t, nodes, 2, testContext)
	rs, xs := recipientsOf(nodes)
	ctx := []byte("epoch=2")
	d, err := NewReshareDeal(rand.Reader, nodes[1].share, 2, rs, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReshareDeal(d, old, 2, xs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Commits[0], mustPublicShare(t, old, 2)) {
		t.Fatal("Commits[0] is not the dealer's public share")
	}

	// Commits[0] replaced by another valid point.
	bd := cloneDeal(d)
	bd.Commits[0] = randomPoint(t).Bytes()
	if err := VerifyReshareDeal(bd, old, 2, xs); !errors.Is(err, ErrBadDeal) || !strings.Contains(err.Error(), "public share") {
		t.Fatalf("other Commits[0]: %v", err)
	}
	// A fresh deal (random secret) passed off as a reshare.
	fd, err := NewFreshDeal(rand.Reader, 2, 2, rs, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReshareDeal(fd, old, 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Fatalf("fresh deal as reshare: %v", err)
	}
	// Node 2's reshare deal relabelled as node 3's.
	bd = cloneDeal(d)
	bd.Dealer = 3
	if err := VerifyReshareDeal(bd, old, 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Fatalf("relabelled dealer: %v", err)
	}
	// Resharing with a share value that is not the holder's.
	stolen := &Share{Index: 3, Value: nodes[1].share.Value}
	sd, err := NewReshareDeal(rand.Reader, stolen, 2, rs, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReshareDeal(sd, old, 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Fatalf("wrong share value: %v", err)
	}
	// Commits[0] of the old public key itself (dealer claims f(0)).
	bd = cloneDeal(d)
	bd.Commits[0] = old.PublicKey()
	if err := VerifyReshareDeal(bd, old, 2, xs); !errors.Is(err, ErrBadDeal) {
		t.Fatalf("Commits[0] = X: %v", err)
	}
}

func mustPublicShare(t testing.TB, p *PublicPoly, i uint32) []byte {
	t.Helper()
	b, err := p.PublicShare(i)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenDealRejectsTampering(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	me := nodes[1]
	good, err := OpenDeal(d, me.index, me.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != ScalarSize {
		t.Fatalf("sub-share is %d bytes", len(good))
	}
	shareAt := func(d *Deal, i uint32) *EncryptedShare {
		for k := range d.Shares {
			if d.Shares[k].Index == i {
				return &d.Shares[k]
			}
		}
		t.Fatalf("no share for %d", i)
		return nil
	}

	for _, tc := range []struct {
		name    string
		mutate  func(d *Deal)
		index   uint32
		priv    []byte
		context []byte
		want    error
	}{
		{"sub-share ciphertext bit flipped", func(d *Deal) { shareAt(d, 2).Ciphertext[PointSize+3] ^= 1 }, 2, me.encPriv, testContext, ErrDecrypt},
		{"tag bit flipped", func(d *Deal) { shareAt(d, 2).Ciphertext[EncryptedShareSize-1] ^= 1 }, 2, me.encPriv, testContext, ErrDecrypt},
		{"ephemeral key replaced", func(d *Deal) { copy(shareAt(d, 2).Ciphertext, randomPoint(t).Bytes()) }, 2, me.encPriv, testContext, ErrDecrypt},
		{"higher commitment altered", func(d *Deal) { d.Commits[1] = randomPoint(t).Bytes() }, 2, me.encPriv, testContext, ErrDecrypt},
		{"Commits[0] altered", func(d *Deal) { d.Commits[0] = randomPoint(t).Bytes() }, 2, me.encPriv, testContext, ErrDecrypt},
		{"commitment dropped", func(d *Deal) { d.Commits = d.Commits[:1] }, 2, me.encPriv, testContext, ErrDecrypt},
		{"dealer relabelled", func(d *Deal) { d.Dealer = 3 }, 2, me.encPriv, testContext, ErrDecrypt},
		{"share swapped with another recipient's", func(d *Deal) {
			a, b := shareAt(d, 2), shareAt(d, 3)
			a.Ciphertext, b.Ciphertext = b.Ciphertext, a.Ciphertext
		}, 2, me.encPriv, testContext, ErrDecrypt},
		{"other epoch context", func(*Deal) {}, 2, me.encPriv, []byte("cluster=c1;epoch=2"), ErrDecrypt},
		{"wrong private key", func(*Deal) {}, 2, nodes[2].encPriv, testContext, ErrDecrypt},
		{"no share for me", func(*Deal) {}, 4, me.encPriv, testContext, ErrBadDeal},
		{"two shares for me", func(d *Deal) { *shareAt(d, 3) = *shareAt(d, 2) }, 2, me.encPriv, testContext, ErrBadDeal},
		{"truncated", func(d *Deal) { s := shareAt(d, 2); s.Ciphertext = s.Ciphertext[:40] }, 2, me.encPriv, testContext, ErrBadDeal},
		{"no commitments", func(d *Deal) { d.Commits = nil }, 2, me.encPriv, testContext, ErrBadDeal},
		{"index 0", func(*Deal) {}, 0, me.encPriv, testContext, ErrInvalidIndex},
		{"bad private key", func(*Deal) {}, 2, make([]byte, 32), testContext, ErrInvalidScalar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bd := cloneDeal(d)
			tc.mutate(bd)
			sub, err := OpenDeal(bd, tc.index, tc.priv, tc.context)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if sub != nil {
				t.Fatal("sub-share returned with an error")
			}
		})
	}
}

// TestOpenDealFeldman: a dealer that encrypts a value inconsistent with its
// commitments (correctly authenticated, so only the Feldman check can
// catch it) is caught with ErrBadShare.
func TestOpenDealFeldman(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	me := nodes[2]
	good, err := OpenDeal(d, me.index, me.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := new(edwards25519.Point).SetBytes(me.encPub)
	one := scalarFromUint32(1)
	gs, _ := decodeScalar(good)
	for name, value := range map[string][]byte{
		"sub-share + 1":              edwards25519.NewScalar().Add(gs, one).Bytes(),
		"another recipient's value":  mustOpen(t, d, nodes[1]),
		"zero":                       make([]byte, 32),
		"non-canonical (l)":          mustHex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010"),
		"the right value, sanity ok": good,
	} {
		t.Run(name, func(t *testing.T) {
			bd := cloneDeal(d)
			ct, err := encryptSubshare(rand.Reader, pub, value, dealAD(testContext, bd.Dealer, me.index, bd.Commits))
			if err != nil {
				t.Fatal(err)
			}
			for k := range bd.Shares {
				if bd.Shares[k].Index == me.index {
					bd.Shares[k].Ciphertext = ct
				}
			}
			sub, err := OpenDeal(bd, me.index, me.encPriv, testContext)
			if bytes.Equal(value, good) {
				if err != nil || !bytes.Equal(sub, good) {
					t.Fatalf("re-encrypted good value: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadShare) {
				t.Fatalf("got %v, want ErrBadShare", err)
			}
		})
	}
}

func mustOpen(t testing.TB, d *Deal, n *node) []byte {
	t.Helper()
	sub, err := OpenDeal(d, n.index, n.encPriv, testContext)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestCombineRejects(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	var deals []*Deal
	for _, n := range nodes {
		d, err := NewFreshDeal(rand.Reader, n.index, 2, rs, testContext)
		if err != nil {
			t.Fatal(err)
		}
		deals = append(deals, d)
	}
	me := nodes[0]
	mine := map[uint32][]byte{}
	for _, d := range deals {
		mine[d.Dealer] = mustOpen(t, d, me)
	}
	if _, _, err := CombineFresh(deals, mine, me.index); err != nil {
		t.Fatal(err)
	}
	d3, err := NewFreshDeal(rand.Reader, 3, 3, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	wrongSub := map[uint32][]byte{1: mine[1], 2: mine[2], 3: mine[1]}
	for _, tc := range []struct {
		name  string
		deals []*Deal
		mine  map[uint32][]byte
		me    uint32
		want  error
	}{
		{"no deals", nil, nil, 1, ErrBadDeal},
		{"nil deal", []*Deal{deals[0], nil}, nil, 1, ErrBadDeal},
		{"duplicate dealer", []*Deal{deals[0], deals[0]}, nil, 1, ErrDuplicateIndex},
		{"mixed thresholds", []*Deal{deals[0], deals[1], d3}, nil, 1, ErrBadDeal},
		{"missing sub-share", deals, map[uint32][]byte{1: mine[1], 2: mine[2]}, 1, ErrBadShare},
		{"sub-share from the wrong dealer", deals, map[uint32][]byte{1: mine[1], 2: mine[2], 4: mine[3]}, 1, ErrBadShare},
		{"wrong sub-share", deals, wrongSub, 1, ErrBadShare},
		{"right sub-shares, wrong index", deals, mine, 2, ErrBadShare},
		{"my index 0", deals, mine, 0, ErrInvalidIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := CombineFresh(tc.deals, tc.mine, tc.me)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CombineFresh: got %v, want %v", err, tc.want)
			}
			if tc.name == "mixed thresholds" || tc.name == "duplicate dealer" || tc.name == "wrong sub-share" {
				_, _, err := CombineReshare(tc.deals, tc.mine, tc.me)
				if !errors.Is(err, tc.want) {
					t.Fatalf("CombineReshare: got %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestNewDealRejects(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	rs, _ := recipientsOf(nodes)
	dup := append([]Recipient(nil), rs...)
	dup[2].Index = 1
	zero := append([]Recipient(nil), rs...)
	zero[0].Index = 0
	for _, tc := range []struct {
		name   string
		dealer uint32
		t      int
		rs     []Recipient
		want   error
	}{
		{"dealer 0", 0, 2, rs, ErrInvalidIndex},
		{"t 0", 1, 0, rs, ErrBadThreshold},
		{"t > n", 1, 4, rs, ErrBadThreshold},
		{"duplicate recipient", 1, 2, dup, ErrDuplicateIndex},
		{"recipient 0", 1, 2, zero, ErrInvalidIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFreshDeal(rand.Reader, tc.dealer, tc.t, tc.rs, nil); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := NewReshareDeal(rand.Reader, &Share{Index: 1, Value: make([]byte, 32)}, 2, rs, nil); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("zero share: %v", err)
	}
	if _, err := NewReshareDeal(rand.Reader, nil, 2, rs, nil); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("nil share: %v", err)
	}
}
