package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

var (
	testContext = []byte("cluster=c1;epoch=1")
	testInfo    = []byte("key=disk-17;version=3")
	testRelease = []byte("release=42")
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ n, t int }{
		{1, 1}, {3, 2}, {4, 3}, {5, 3},
	} {
		t.Run(fmt.Sprintf("%dof%d", tc.t, tc.n), func(t *testing.T) {
			idx := make([]uint32, tc.n)
			for i := range idx {
				idx[i] = uint32(i + 1)
			}
			nodes := newNodes(t, idx...)
			poly := runDKG(t, nodes, tc.t, testContext)
			if poly.Threshold() != tc.t {
				t.Fatalf("threshold %d, want %d", poly.Threshold(), tc.t)
			}
			msg := []byte("the unlock key of disk 17")
			ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
			if err != nil {
				t.Fatal(err)
			}
			all := partialsFrom(t, nodes, ct.R, testRelease)
			for _, p := range all {
				if err := VerifyPartial(poly, ct.R, p, testRelease); err != nil {
					t.Fatalf("honest partial rejected: %v", err)
				}
			}
			for _, sub := range subsets(tc.n, tc.t) {
				ps := make([]*Partial, len(sub))
				for i, k := range sub {
					ps[i] = all[k]
				}
				got, err := Open(poly, ct, testInfo, ps, testRelease)
				if err != nil {
					t.Fatalf("subset %v: %v", sub, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("subset %v: wrong plaintext", sub)
				}
			}
			// More partials than needed: still fine.
			if got, err := Open(poly, ct, testInfo, all, testRelease); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("all partials: %v", err)
			}
			// t-1 partials are not enough.
			if _, err := Open(poly, ct, testInfo, all[:tc.t-1], testRelease); !errors.Is(err, ErrNotEnoughPartials) {
				t.Fatalf("t-1 partials: got %v, want ErrNotEnoughPartials", err)
			}
			// Wrong info, wrong release context.
			if _, err := Open(poly, ct, []byte("other key"), all, testRelease); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("wrong info: got %v, want ErrDecrypt", err)
			}
			if _, err := Open(poly, ct, testInfo, all, []byte("other release")); !errors.Is(err, ErrNotEnoughPartials) || !errors.Is(err, ErrBadProof) {
				t.Fatalf("wrong context: got %v, want ErrNotEnoughPartials+ErrBadProof", err)
			}
			// Tampered sealed data.
			bad := &Ciphertext{R: ct.R, Sealed: bytes.Clone(ct.Sealed)}
			bad.Sealed[len(bad.Sealed)-1] ^= 1
			if _, err := Open(poly, bad, testInfo, all, testRelease); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("tampered: got %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestDuplicatePartialsDoNotCount(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	p1 := partialsFrom(t, nodes[:1], ct.R, testRelease)[0]
	p1b := partialsFrom(t, nodes[:1], ct.R, testRelease)[0] // fresh proof, same index
	_, err = Open(poly, ct, testInfo, []*Partial{p1, p1b, nil}, testRelease)
	if !errors.Is(err, ErrNotEnoughPartials) || !errors.Is(err, ErrDuplicateIndex) {
		t.Fatalf("got %v, want ErrNotEnoughPartials and ErrDuplicateIndex", err)
	}
	if !strings.Contains(err.Error(), "partial from 1") {
		t.Fatalf("error does not name the index: %v", err)
	}
}

func TestReshare(t *testing.T) {
	for _, tc := range []struct {
		name           string
		oldIdx, newIdx []uint32
		oldT, newT     int
		removed        uint32 // an old holder that is not in the new set (0: none)
	}{
		{name: "3to4", oldIdx: []uint32{1, 2, 3}, newIdx: []uint32{1, 2, 3, 4}, oldT: 2, newT: 3},
		{name: "4to3", oldIdx: []uint32{1, 2, 3, 4}, newIdx: []uint32{1, 2, 4}, oldT: 3, newT: 2, removed: 3},
		{name: "3to3new", oldIdx: []uint32{1, 2, 3}, newIdx: []uint32{2, 3, 5}, oldT: 2, newT: 2, removed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldNodes := newNodes(t, tc.oldIdx...)
			oldPoly := runDKG(t, oldNodes, tc.oldT, testContext)
			msg := []byte("sealed before the reshare")
			ct, err := Seal(rand.Reader, oldPoly.PublicKey(), testInfo, msg)
			if err != nil {
				t.Fatal(err)
			}

			// New nodes keep their encryption keys if they were old members.
			byIdx := map[uint32]*node{}
			for _, n := range oldNodes {
				byIdx[n.index] = n
			}
			newNodesList := make([]*node, len(tc.newIdx))
			for i, x := range tc.newIdx {
				if n, ok := byIdx[x]; ok {
					newNodesList[i] = &node{index: x, encPriv: n.encPriv, encPub: n.encPub}
				} else {
					newNodesList[i] = newNodes(t, x)[0]
				}
			}
			// Dealers: the last oldT old holders (so the removed node deals).
			dealers := oldNodes[len(oldNodes)-tc.oldT:]
			ctx2 := []byte("cluster=c1;epoch=2")
			newPoly := runReshare(t, oldPoly, dealers, newNodesList, tc.newT, ctx2)
			if !bytes.Equal(newPoly.PublicKey(), oldPoly.PublicKey()) {
				t.Fatal("public key changed")
			}
			if newPoly.Threshold() != tc.newT {
				t.Fatalf("threshold %d, want %d", newPoly.Threshold(), tc.newT)
			}
			if newPoly.Equal(oldPoly) {
				t.Fatal("the polynomial did not change")
			}

			// Old blobs open with every t-subset of new shares.
			newParts := partialsFrom(t, newNodesList, ct.R, testRelease)
			for _, sub := range subsets(len(newNodesList), tc.newT) {
				ps := make([]*Partial, len(sub))
				for i, k := range sub {
					ps[i] = newParts[k]
				}
				got, err := Open(newPoly, ct, testInfo, ps, testRelease)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("subset %v: %v", sub, err)
				}
			}
			// New blobs too.
			ct2, err := Seal(rand.Reader, newPoly.PublicKey(), testInfo, msg)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Open(newPoly, ct2, testInfo, partialsFrom(t, newNodesList[:tc.newT], ct2.R, testRelease), testRelease); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("new blob: %v", err)
			}

			// An old-epoch partial mixed with new-epoch partials does not open.
			oldHolder := oldNodes[0]
			if tc.removed != 0 {
				oldHolder = byIdx[tc.removed]
			}
			oldPart := partialsFrom(t, []*node{oldHolder}, ct.R, testRelease)[0]
			var others []*node
			for _, n := range newNodesList {
				if n.index != oldHolder.index && len(others) < tc.newT-1 {
					others = append(others, n)
				}
			}
			mixed := append([]*Partial{oldPart}, partialsFrom(t, others, ct.R, testRelease)...)
			_, err = Open(newPoly, ct, testInfo, mixed, testRelease)
			if !errors.Is(err, ErrNotEnoughPartials) || !errors.Is(err, ErrBadProof) {
				t.Fatalf("old partial accepted: %v", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("partial from %d", oldHolder.index)) {
				t.Fatalf("error does not name node %d: %v", oldHolder.index, err)
			}
			// Even combined without proof checks, the old value is useless.
			raw := map[uint32][]byte{}
			for _, p := range mixed {
				raw[p.Index] = p.Value
			}
			K, err := CombinePoints(raw, tc.newT)
			if err != nil {
				t.Fatal(err)
			}
			Kp, err := decodePointNoSubgroup(K)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := openWithPoint(Kp, ct, testInfo); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("mixed epochs decrypted: %v", err)
			}
		})
	}
}

func TestReshareTwiceAndDifferentDealerSets(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3, 4, 5)
	poly := runDKG(t, nodes, 3, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	// Two different qualified dealer sets give the same public key.
	for _, dealers := range [][]*node{nodes[:3], {nodes[1], nodes[3], nodes[4]}} {
		fresh := make([]*node, len(nodes))
		for i, n := range nodes {
			fresh[i] = &node{index: n.index, encPriv: n.encPriv, encPub: n.encPub}
		}
		p2 := runReshare(t, poly, dealers, fresh, 3, []byte("e2"))
		p3 := runReshare(t, p2, fresh[2:], fresh[:4], 2, []byte("e3"))
		got, err := Open(p3, ct, testInfo, partialsFrom(t, fresh[2:4], ct.R, testRelease), testRelease)
		if err != nil || string(got) != "m" {
			t.Fatalf("after two reshares: %v", err)
		}
	}
}

func TestReshareWithTooFewDealersChangesKey(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	rs, _ := recipientsOf(nodes)
	d, err := NewReshareDeal(rand.Reader, nodes[0].share, 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := CombineReshare([]*Deal{d}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if SamePublicKey(poly, p) {
		t.Fatal("one dealer of a 2-of-3 reshare kept the public key")
	}
}

func TestForgedPartials(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	ct2, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	honest := partialsFrom(t, nodes, ct.R, testRelease)
	other := partialsFrom(t, nodes, ct2.R, testRelease)
	p1 := honest[0]
	clone := func(p *Partial) *Partial {
		return &Partial{Index: p.Index, Value: bytes.Clone(p.Value), Challenge: bytes.Clone(p.Challenge), Response: bytes.Clone(p.Response)}
	}
	randScalar := func() []byte {
		s, err := randomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return s.Bytes()
	}
	lBytes := mustHex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")

	// forgeAgainstNoRecompute builds the classic forgery that a verifier
	// which trusts the prover's commitments (kyber v3.1.0's dleq) accepts:
	// pick c, z, and a wrong V, then set A1, A2 to make the equations hold.
	forgeAgainstNoRecompute := func() *Partial {
		V := randomPoint(t).Bytes()
		return &Partial{Index: 1, Value: V, Challenge: randScalar(), Response: randScalar()}
	}

	for _, tc := range []struct {
		name    string
		p       *Partial
		context []byte
		want    error
	}{
		{"random challenge and response", func() *Partial { p := clone(p1); p.Challenge, p.Response = randScalar(), randScalar(); return p }(), testRelease, ErrBadProof},
		{"random challenge", func() *Partial { p := clone(p1); p.Challenge = randScalar(); return p }(), testRelease, ErrBadProof},
		{"random response", func() *Partial { p := clone(p1); p.Response = randScalar(); return p }(), testRelease, ErrBadProof},
		{"valid proof relabelled to another index", func() *Partial { p := clone(honest[1]); p.Index = 1; return p }(), testRelease, ErrBadProof},
		{"valid proof for another ciphertext", clone(other[0]), testRelease, ErrBadProof},
		{"proof kept, value from another ciphertext", func() *Partial { p := clone(p1); p.Value = other[0].Value; return p }(), testRelease, ErrBadProof},
		{"proof kept, value of another node", func() *Partial { p := clone(p1); p.Value = honest[1].Value; return p }(), testRelease, ErrBadProof},
		{"proof kept, random value", func() *Partial { p := clone(p1); p.Value = randomPoint(t).Bytes(); return p }(), testRelease, ErrBadProof},
		{"proof kept, value doubled", func() *Partial {
			p := clone(p1)
			v, _ := new(edwards25519.Point).SetBytes(p.Value)
			p.Value = v.Add(v, v).Bytes()
			return p
		}(), testRelease, ErrBadProof},
		{"wrong context", clone(p1), []byte("another release"), ErrBadProof},
		{"wrong context of the same length", clone(p1), []byte("release=43"), ErrBadProof},
		{"holder picks its value after the challenge", adaptiveValueForgery(t, nodes[0].share, ct.R), testRelease, ErrBadProof},
		{"holder proves only its public share", provesOnlyA1Forgery(t, nodes[0].share, ct.R), testRelease, ErrBadProof},
		{"outsider proves a value it knows the log of", provesOnlyA2Forgery(t, 1, poly, ct.R), testRelease, ErrBadProof},
		{"forgery without recompute", forgeAgainstNoRecompute(), testRelease, ErrBadProof},
		{"non-canonical challenge", func() *Partial { p := clone(p1); p.Challenge = lBytes; return p }(), testRelease, ErrBadProof},
		{"non-canonical response", func() *Partial { p := clone(p1); p.Response = lBytes; return p }(), testRelease, ErrBadProof},
		{"short response", func() *Partial { p := clone(p1); p.Response = p.Response[:31]; return p }(), testRelease, ErrBadProof},
		{"index 0", func() *Partial { p := clone(p1); p.Index = 0; return p }(), testRelease, ErrInvalidIndex},
		{"index outside the cluster", func() *Partial { p := clone(p1); p.Index = 9; return p }(), testRelease, ErrBadProof},
		{"identity value", func() *Partial { p := clone(p1); p.Value = mustHex(t, torsionHex[0]); return p }(), testRelease, ErrInvalidPoint},
		{"nil", nil, testRelease, ErrBadProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyPartial(poly, ct.R, tc.p, tc.context)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyPartial: got %v, want %v", err, tc.want)
			}
			if tc.p != nil && tc.p.Index != 0 && !strings.Contains(err.Error(), fmt.Sprintf("from %d", tc.p.Index)) {
				t.Fatalf("error does not name the index: %v", err)
			}
			if !bytes.Equal(tc.context, testRelease) {
				return
			}
			// Open with the forgery and one honest partial: not enough.
			_, err = Open(poly, ct, testInfo, []*Partial{tc.p, honest[2]}, testRelease)
			if !errors.Is(err, ErrNotEnoughPartials) || !errors.Is(err, tc.want) {
				t.Fatalf("Open: got %v, want ErrNotEnoughPartials and %v", err, tc.want)
			}
			// Open skips the forgery when enough honest partials follow.
			got, err := Open(poly, ct, testInfo, []*Partial{tc.p, honest[1], honest[2]}, testRelease)
			if err != nil || string(got) != "secret" {
				t.Fatalf("Open with a forgery and t honest partials: %v", err)
			}
		})
	}
}

// adaptiveValueForgery is what a malicious holder (who knows its share s)
// could do if Value were not hashed into the challenge: commit to a random
// A2, derive c, then solve z*R + c*V = A2 for a wrong V.
func adaptiveValueForgery(t testing.TB, sh *Share, R []byte) *Partial {
	s, err := decodeScalar(sh.Value)
	if err != nil {
		t.Fatal(err)
	}
	Rp, err := decodePoint(R)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := randomScalar(rand.Reader)
	S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	A1 := new(edwards25519.Point).ScalarBaseMult(w).Bytes()
	A2 := randomPoint(t)
	placeholder := edwards25519.NewGeneratorPoint().Bytes()
	c := dleqChallenge(R, S, placeholder, A1, A2.Bytes(), sh.Index, testRelease)
	z := edwards25519.NewScalar().Multiply(c, s)
	z.Subtract(w, z)
	// V = (A2 - z*R) / c
	V := new(edwards25519.Point).ScalarMult(z, Rp)
	V.Subtract(A2, V)
	V.ScalarMult(edwards25519.NewScalar().Invert(c), V)
	honest := new(edwards25519.Point).ScalarMult(s, Rp)
	if V.Equal(honest) == 1 {
		t.Fatal("forgery produced the honest value")
	}
	return &Partial{Index: sh.Index, Value: V.Bytes(), Challenge: c.Bytes(), Response: z.Bytes()}
}

// provesOnlyA1Forgery would pass if A2 were not hashed: a correct proof of
// knowledge of s for S, attached to an arbitrary value.
func provesOnlyA1Forgery(t testing.TB, sh *Share, R []byte) *Partial {
	s, _ := decodeScalar(sh.Value)
	w, _ := randomScalar(rand.Reader)
	V := randomPoint(t).Bytes()
	S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	A1 := new(edwards25519.Point).ScalarBaseMult(w).Bytes()
	c := dleqChallenge(R, S, V, A1, edwards25519.NewGeneratorPoint().Bytes(), sh.Index, testRelease)
	z := edwards25519.NewScalar().Multiply(c, s)
	z.Subtract(w, z)
	return &Partial{Index: sh.Index, Value: V, Challenge: c.Bytes(), Response: z.Bytes()}
}

// provesOnlyA2Forgery would pass if A1 were not hashed: someone without a
// share picks V = s'*R for a known s' and proves log_R(V) = s' only.
func provesOnlyA2Forgery(t testing.TB, index uint32, poly *PublicPoly, R []byte) *Partial {
	Rp, _ := decodePoint(R)
	s2, _ := randomScalar(rand.Reader)
	w, _ := randomScalar(rand.Reader)
	V := new(edwards25519.Point).ScalarMult(s2, Rp).Bytes()
	S, err := poly.PublicShare(index)
	if err != nil {
		t.Fatal(err)
	}
	A2 := new(edwards25519.Point).ScalarMult(w, Rp).Bytes()
	c := dleqChallenge(R, S, V, edwards25519.NewGeneratorPoint().Bytes(), A2, index, testRelease)
	z := edwards25519.NewScalar().Multiply(c, s2)
	z.Subtract(w, z)
	return &Partial{Index: index, Value: V, Challenge: c.Bytes(), Response: z.Bytes()}
}

func TestVerifyShare(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	for _, n := range nodes {
		if err := poly.VerifyShare(n.share); err != nil {
			t.Fatal(err)
		}
	}
	wrong := &Share{Index: 2, Value: nodes[0].share.Value}
	err := poly.VerifyShare(wrong)
	if !errors.Is(err, ErrBadShare) {
		t.Fatalf("got %v, want ErrBadShare", err)
	}
	if strings.Contains(err.Error(), fmt.Sprintf("%x", wrong.Value)) {
		t.Fatal("error contains the share bytes")
	}
	if err := poly.VerifyShare(&Share{Index: 0, Value: nodes[0].share.Value}); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("index 0: got %v", err)
	}
	sh := &Share{Index: nodes[0].share.Index, Value: bytes.Clone(nodes[0].share.Value)}
	backing := sh.Value
	sh.Erase()
	if sh.Value != nil || !bytes.Equal(backing, make([]byte, ScalarSize)) {
		t.Fatal("Erase left share bytes behind")
	}
	if _, err := ComputePartial(rand.Reader, sh, randomPoint(t).Bytes(), nil); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("erased share: got %v", err)
	}
}

func TestCombinePoints(t *testing.T) {
	// f(x) = a0 + a1 x + a2 x^2; points f(i)*P; combination must be a0*P.
	a := make([]*edwards25519.Scalar, 3)
	for i := range a {
		s, err := randomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a[i] = s
	}
	P := randomPoint(t)
	at := func(x uint32) []byte {
		xs := scalarFromUint32(x)
		v := edwards25519.NewScalar().Multiply(a[2], xs)
		v.Add(v, a[1])
		v.Multiply(v, xs)
		v.Add(v, a[0])
		return new(edwards25519.Point).ScalarMult(v, P).Bytes()
	}
	want := new(edwards25519.Point).ScalarMult(a[0], P).Bytes()
	pts := map[uint32][]byte{7: at(7), 2: at(2), 1000000: at(1000000), 4294967295: at(4294967295)}
	got, err := CombinePoints(pts, 3)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("CombinePoints: %v", err)
	}
	if _, err := CombinePoints(map[uint32][]byte{7: at(7), 2: at(2)}, 3); !errors.Is(err, ErrNotEnoughPartials) {
		t.Fatalf("2 of 3: got %v", err)
	}
	// Using only 2 points of a degree-2 polynomial gives a different point.
	if got, err := CombinePoints(map[uint32][]byte{7: at(7), 2: at(2)}, 2); err != nil || bytes.Equal(got, want) {
		t.Fatalf("t=2 on a degree-2 polynomial: %v", err)
	}
	if _, err := CombinePoints(map[uint32][]byte{0: at(1), 2: at(2)}, 2); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("index 0: got %v", err)
	}
	if _, err := CombinePoints(map[uint32][]byte{1: mustHex(t, torsionHex[3]), 2: at(2)}, 2); !errors.Is(err, ErrInvalidPoint) {
		t.Fatalf("small order: got %v", err)
	}
	if _, err := CombinePoints(pts, 0); !errors.Is(err, ErrBadThreshold) {
		t.Fatalf("t=0: got %v", err)
	}
}

func TestLagrange(t *testing.T) {
	// Interpolating the constant polynomial 1 gives sum lambda_i = 1, and
	// (with two points or more) f(x) = x gives sum lambda_i x_i = 0.
	for _, xs := range [][]uint32{{1}, {1, 2}, {3, 1, 2}, {5, 9, 4294967295, 2}} {
		ls, err := lagrangeAtZero(xs)
		if err != nil {
			t.Fatal(err)
		}
		sum, sumx := edwards25519.NewScalar(), edwards25519.NewScalar()
		for i, l := range ls {
			sum.Add(sum, l)
			sumx.Add(sumx, edwards25519.NewScalar().Multiply(l, scalarFromUint32(xs[i])))
		}
		if sum.Equal(scalarFromUint32(1)) != 1 || (len(xs) > 1 && sumx.Equal(zeroScalar) != 1) {
			t.Fatalf("%v: wrong coefficients", xs)
		}
	}
	if _, err := lagrangeAtZero([]uint32{1, 1}); !errors.Is(err, ErrDuplicateIndex) {
		t.Fatalf("duplicates: got %v", err)
	}
	if _, err := lagrangeAtZero([]uint32{0, 1}); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("zero: got %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("entropy source broken") }

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestBadRandomness(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	rs, _ := recipientsOf(nodes)
	for _, r := range []struct {
		name string
		r    interface{ Read([]byte) (int, error) }
	}{{"error", errReader{}}, {"zeros", zeroReader{}}, {"nil", nil}} {
		t.Run(r.name, func(t *testing.T) {
			if _, _, err := GenerateEncryptionKey(r.r); err == nil {
				t.Error("GenerateEncryptionKey")
			}
			if _, err := NewFreshDeal(r.r, 1, 2, rs, nil); err == nil {
				t.Error("NewFreshDeal")
			}
			if _, err := Seal(r.r, poly.PublicKey(), nil, nil); err == nil {
				t.Error("Seal")
			}
			if _, err := ComputePartial(r.r, nodes[0].share, poly.PublicKey(), nil); err == nil {
				t.Error("ComputePartial")
			}
		})
	}
}

func TestEncryptionPublicKey(t *testing.T) {
	priv, pub, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncryptionPublicKey(priv)
	if err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("EncryptionPublicKey: %v", err)
	}
	if err := ValidatePoint(pub); err != nil {
		t.Fatal(err)
	}
	if _, err := EncryptionPublicKey(make([]byte, 32)); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("zero key: got %v", err)
	}
}

func TestOpenWithOwn(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	msg := []byte("released by the coordinator and one more holder")
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, msg)
	if err != nil {
		t.Fatal(err)
	}
	all := partialsFrom(t, nodes, ct.R, testRelease)
	got, err := OpenWithOwn(poly, ct, testInfo, all[0], all[1:2], testRelease)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("own + one honest partial: %v", err)
	}
	// The others are still checked: a forged proof does not count.
	forged := *all[1]
	forged.Challenge = bytes.Clone(all[2].Challenge)
	if _, err := OpenWithOwn(poly, ct, testInfo, all[0], []*Partial{&forged}, testRelease); !errors.Is(err, ErrBadProof) {
		t.Fatalf("forged other: got %v, want ErrBadProof", err)
	}
	// The own index cannot be counted twice.
	if _, err := OpenWithOwn(poly, ct, testInfo, all[0], all[:1], testRelease); !errors.Is(err, ErrDuplicateIndex) {
		t.Fatalf("own index twice: got %v, want ErrDuplicateIndex", err)
	}
	// A wrong own value yields no plaintext.
	wrong := *all[0]
	wrong.Value = all[1].Value
	if _, err := OpenWithOwn(poly, ct, testInfo, &wrong, all[2:], testRelease); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong own value: got %v, want ErrDecrypt", err)
	}
}

func TestEncryptionKeyFromEd25519(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncryptionKeyFromEd25519(priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncryptionPublicKey(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pub) {
		t.Fatalf("the encryption key's public key %x is not the Ed25519 public key %x", got, pub)
	}
}

func TestOpenWithKey(t *testing.T) {
	priv, pub, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Seal(rand.Reader, pub, []byte("info"), []byte("a partial"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenWithKey(priv, ct, []byte("info"))
	if err != nil || string(got) != "a partial" {
		t.Fatalf("OpenWithKey = %q, %v", got, err)
	}
	if _, err := OpenWithKey(priv, ct, []byte("other info")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("with other info: %v, want ErrDecrypt", err)
	}
	other, _, _ := GenerateEncryptionKey(rand.Reader)
	if _, err := OpenWithKey(other, ct, []byte("info")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("with another key: %v, want ErrDecrypt", err)
	}
}
