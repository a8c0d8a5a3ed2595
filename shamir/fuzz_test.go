package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/edwards25519"
)

// FuzzDecodePoint checks the strict point decoder against the definition:
// accepted iff 32 bytes, decodable, canonical, 8*P != identity and l*P ==
// identity; and accepted points round-trip through kyber.
func FuzzDecodePoint(f *testing.F) {
	for _, h := range torsionHex {
		f.Add(mustHex(f, h))
	}
	f.Add(randomPoint(f).Bytes())
	f.Add(mixedPoint(f))
	f.Add(mustHex(f, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		P, err := decodePoint(b)
		want := false
		if len(b) == PointSize {
			if Q, err := new(edwards25519.Point).SetBytes(b); err == nil {
				want = bytes.Equal(Q.Bytes(), b) &&
					new(edwards25519.Point).MultByCofactor(Q).Equal(identityPoint) == 0 &&
					torsionFree(Q)
			}
		}
		if (err == nil) != want {
			t.Fatalf("decodePoint(%x): err=%v, want accept=%v", b, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("error does not wrap ErrInvalidPoint: %v", err)
			}
			return
		}
		k := suite.Point()
		if err := k.UnmarshalBinary(b); err != nil {
			t.Fatalf("kyber rejects a valid point %x", b)
		}
		kb, _ := k.MarshalBinary()
		if !bytes.Equal(kb, b) || !bytes.Equal(P.Bytes(), b) {
			t.Fatalf("round trip of %x differs", b)
		}
	})
}

// FuzzOpenDeal feeds arbitrary ciphertexts, commitments and indexes to
// OpenDeal and VerifyFreshDeal: no panic, and nothing but the genuine
// ciphertext under the genuine commitments opens.
func FuzzOpenDeal(f *testing.F) {
	nodes := newNodes(f, 1, 2, 3)
	rs, xs := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext)
	if err != nil {
		f.Fatal(err)
	}
	me := nodes[1]
	var orig []byte
	for _, s := range d.Shares {
		if s.Index == me.index {
			orig = s.Ciphertext
		}
	}
	f.Add(orig, d.Commits[0], d.Commits[1], uint32(1), uint32(2))
	f.Add(orig[:10], d.Commits[0], mustHex(f, torsionHex[5]), uint32(1), uint32(2))
	f.Add(append(mustHex(f, torsionHex[0]), orig[PointSize:]...), d.Commits[0], d.Commits[1], uint32(1), uint32(2))
	f.Add(orig, d.Commits[0], d.Commits[1], uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, ct, c0, c1 []byte, dealer, index uint32) {
		fd := &Deal{Dealer: dealer, Commits: [][]byte{c0, c1}}
		for _, s := range d.Shares {
			if s.Index == me.index {
				s.Ciphertext = ct
			}
			fd.Shares = append(fd.Shares, s)
		}
		_ = VerifyFreshDeal(fd, 2, xs)
		sub, err := OpenDeal(fd, index, me.encPriv, testContext)
		genuine := bytes.Equal(ct, orig) && bytes.Equal(c0, d.Commits[0]) && bytes.Equal(c1, d.Commits[1]) && dealer == 1 && index == me.index
		if err == nil && !genuine {
			t.Fatalf("tampered deal opened")
		}
		if err != nil && genuine {
			t.Fatalf("genuine deal rejected: %v", err)
		}
		if err == nil && len(sub) != ScalarSize {
			t.Fatalf("sub-share of %d bytes", len(sub))
		}
	})
}

// FuzzVerifyPartial: arbitrary partials never panic, and an accepted one
// carries the holder's true value s_i*R (soundness on the fuzzed inputs).
func FuzzVerifyPartial(f *testing.F) {
	nodes := newNodes(f, 1, 2, 3)
	poly := runDKG(f, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		f.Fatal(err)
	}
	parts := partialsFrom(f, nodes, ct.R, testRelease)
	for _, p := range parts {
		f.Add(p.Index, p.Value, p.Challenge, p.Response, ct.R)
	}
	f.Add(uint32(1), parts[1].Value, parts[1].Challenge, parts[1].Response, ct.R)
	f.Add(uint32(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint32(2), mustHex(f, torsionHex[1]), parts[1].Challenge, parts[1].Response, ct.R)
	f.Fuzz(func(t *testing.T, index uint32, value, c, z, R []byte) {
		p := &Partial{Index: index, Value: value, Challenge: c, Response: z}
		err := VerifyPartial(poly, R, p, testRelease)
		_, _ = Open(poly, &Ciphertext{R: R, Sealed: ct.Sealed}, testInfo, []*Partial{p, parts[2]}, testRelease)
		if err != nil {
			return
		}
		if index < 1 || index > 3 {
			t.Fatalf("accepted a partial for non-member %d", index)
		}
		Rp, err := decodePoint(R)
		if err != nil {
			t.Fatalf("accepted with invalid R")
		}
		s, _ := decodeScalar(nodes[index-1].share.Value)
		want := new(edwards25519.Point).ScalarMult(s, Rp).Bytes()
		if !bytes.Equal(want, value) {
			t.Fatalf("accepted a wrong value for %d", index)
		}
	})
}

// FuzzOpen: arbitrary ciphertexts never panic and never decrypt unless
// they are the genuine one.
func FuzzOpen(f *testing.F) {
	nodes := newNodes(f, 1, 2, 3)
	poly := runDKG(f, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct.R, ct.Sealed)
	f.Add(ct.R, ct.Sealed[:5])
	f.Add(mustHex(f, torsionHex[2]), ct.Sealed)
	f.Fuzz(func(t *testing.T, R, sealed []byte) {
		c := &Ciphertext{R: R, Sealed: sealed}
		var ps []*Partial
		for _, n := range nodes[:2] {
			p, err := ComputePartial(rand.Reader, n.share, R, testRelease)
			if err != nil {
				if !errors.Is(err, ErrInvalidPoint) {
					t.Fatalf("ComputePartial: %v", err)
				}
				return
			}
			ps = append(ps, p)
		}
		pt, err := Open(poly, c, testInfo, ps, testRelease)
		genuine := bytes.Equal(R, ct.R) && bytes.Equal(sealed, ct.Sealed)
		if (err == nil) != genuine {
			t.Fatalf("Open: err=%v genuine=%v", err, genuine)
		}
		if genuine && string(pt) != "m" {
			t.Fatal("wrong plaintext")
		}
	})
}

// FuzzVerifyBatch: an arbitrary partial batched with an honest one never
// panics, and the batch passes it only if its value's prime-order part is
// the holder's s_i*R (the cofactor drops the rest, which Open checks).
func FuzzVerifyBatch(f *testing.F) {
	nodes := newNodes(f, 1, 2, 3)
	poly := runDKG(f, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		f.Fatal(err)
	}
	parts := proverPartials(f, nodes, ct.R, testRelease)
	for _, p := range parts[1:] {
		f.Add(p.Index, p.Value, p.Challenge, p.Response, p.Commits)
	}
	f.Add(uint32(2), parts[2].Value, parts[2].Challenge, parts[2].Response, parts[2].Commits)
	f.Add(uint32(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint32(2), mustHex(f, torsionHex[1]), parts[1].Challenge, parts[1].Response, parts[1].Commits)
	v, err := NewVerifier(poly, ct.R, testRelease)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, index uint32, value, c, z, commits []byte) {
		p := &Partial{Index: index, Value: value, Challenge: c, Response: z, Commits: commits}
		vps, ok := v.VerifyBatch(rand.Reader, []*Partial{parts[0], p})
		if !ok {
			return
		}
		_, _ = v.Open(ct, testInfo, vps)
		if index < 1 || index > 3 {
			t.Fatalf("passed a partial for non-member %d", index)
		}
		Rp, _ := decodePoint(ct.R)
		s, _ := decodeScalar(nodes[index-1].share.Value)
		want := new(edwards25519.Point).ScalarMult(s, Rp)
		got, err := decodePointNoSubgroup(value)
		if err != nil {
			t.Fatalf("passed an undecodable value")
		}
		if new(edwards25519.Point).MultByCofactor(got).Equal(new(edwards25519.Point).MultByCofactor(want)) != 1 {
			t.Fatalf("passed a wrong value for %d", index)
		}
	})
}
