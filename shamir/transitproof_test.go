package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"filippo.io/edwards25519"
)

// proved is a point E = r*G with its proof for binding, and r.
func proved(t testing.TB, binding []byte) (E, proof []byte, r *edwards25519.Scalar) {
	t.Helper()
	r, err := randomScalar(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	E = new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	proof, err = transitProve(rand.Reader, r, E, binding)
	if err != nil {
		t.Fatal(err)
	}
	return E, proof, r
}

// TestTransitProof: the encryptor's proof verifies for its point and
// binding only; another binding, another point, a derivation's point
// (whose discrete log nobody knows), a changed commitment or response, a
// response that is not canonical, a point outside the prime-order
// subgroup (whose r the maker knows) are each refused, alone and in a
// batch, where the batch names exactly the bad items.
func TestTransitProof(t *testing.T) {
	bind := TransitBinding("aad", "id:k", 2, []byte("ctx"))
	E, proof, r := proved(t, bind)
	if err := VerifyTransitProof(bind, E, proof); err != nil {
		t.Fatalf("an honest proof: %v", err)
	}
	E2, proof2, _ := proved(t, bind)
	X, err := TransitDerivePoint(TransitBinding("derive", "id:k", 2, []byte("ctx")))
	if err != nil {
		t.Fatal(err)
	}
	plusOne := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at]++
		return c
	}
	// z + l: the same residue, not canonical.
	nonCanonical := append(bytes.Clone(proof[:PointSize]), addL(t, proof[PointSize:])...)
	// E = r*G + T, T of order 8, with a proof made with r: the cofactored
	// equation holds, the point is refused.
	T, _ := new(edwards25519.Point).SetBytes(mustHex(t, torsionHex[4]))
	mixed := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(r), T).Bytes()
	mixedProof, err := transitProve(rand.Reader, r, mixed, bind)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]TransitProofItem{
		"another context":        {Binding: TransitBinding("aad", "id:k", 2, []byte("other")), E: E, Proof: proof},
		"another version":        {Binding: TransitBinding("aad", "id:k", 1, []byte("ctx")), E: E, Proof: proof},
		"another key":            {Binding: TransitBinding("aad", "id:j", 2, []byte("ctx")), E: E, Proof: proof},
		"another point's proof":  {Binding: bind, E: E, Proof: proof2},
		"a derivation's point":   {Binding: bind, E: X, Proof: proof},
		"a changed commitment":   {Binding: bind, E: E, Proof: plusOne(proof, 0)},
		"a changed response":     {Binding: bind, E: E, Proof: plusOne(proof, PointSize)},
		"a non-canonical z":      {Binding: bind, E: E, Proof: nonCanonical},
		"a short proof":          {Binding: bind, E: E, Proof: proof[:63]},
		"no proof":               {Binding: bind, E: E},
		"a point with torsion":   {Binding: bind, E: mixed, Proof: mixedProof},
		"the identity as R":      {Binding: bind, E: E, Proof: append(mustHex(t, torsionHex[0]), proof[PointSize:]...)},
		"an all-zero proof":      {Binding: bind, E: E, Proof: make([]byte, TransitProofSize)},
		"E and R swapped around": {Binding: bind, E: proof[:PointSize], Proof: append(bytes.Clone(E), proof[PointSize:]...)},
	}
	good := []TransitProofItem{{Binding: bind, E: E, Proof: proof}, {Binding: bind, E: E2, Proof: proof2}}
	if errs := VerifyTransitProofs(rand.Reader, good); errs != nil {
		t.Fatalf("a batch of good proofs: %v", errs)
	}
	for name, it := range bad {
		if err := VerifyTransitProof(it.Binding, it.E, it.Proof); err == nil {
			t.Errorf("%s: accepted", name)
		}
		errs := VerifyTransitProofs(rand.Reader, []TransitProofItem{good[0], it, good[1]})
		if len(errs) != 3 || errs[0] != nil || errs[1] == nil || errs[2] != nil {
			t.Errorf("%s in a batch: %v; want item 1 alone refused", name, errs)
		}
	}
	if err := VerifyTransitProof(bind, E, proof[:63]); !errors.Is(err, ErrBadTransitProof) {
		t.Errorf("a short proof: %v; want ErrBadTransitProof", err)
	}
}

// addL is the 32-byte little-endian b + l for a canonical b (< l < 2^253).
func addL(t *testing.T, b []byte) []byte {
	t.Helper()
	l := mustHex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	out := make([]byte, 32)
	carry := 0
	for i := range 32 {
		s := int(b[i]) + int(l[i]) + carry
		out[i], carry = byte(s), s>>8
	}
	if carry != 0 || out[31]&0xf0 == 0 {
		t.Fatal("z + l does not fit in 32 bytes")
	}
	return out
}

// TestTransitProofBatchCannotCancel: two bad proofs whose errors cancel
// in a plain sum (z+d and z'-d) are both refused by the batch check,
// which weighs each equation by its own random coefficient; and a batch
// agrees with the item-by-item checks on a commitment with a small-order
// component (both accept it: the equations are cofactored).
func TestTransitProofBatchCannotCancel(t *testing.T) {
	bind := []byte("binding")
	E1, p1, _ := proved(t, bind)
	E2, p2, _ := proved(t, bind)
	d, _ := randomScalar(rand.Reader)
	z1, _ := edwards25519.NewScalar().SetCanonicalBytes(p1[PointSize:])
	z2, _ := edwards25519.NewScalar().SetCanonicalBytes(p2[PointSize:])
	// (z1+d)*G - c1*E1 - R1 + (z2-d)*G - c2*E2 - R2 = 0: a sum passes.
	q1 := append(bytes.Clone(p1[:PointSize]), edwards25519.NewScalar().Add(z1, d).Bytes()...)
	q2 := append(bytes.Clone(p2[:PointSize]), edwards25519.NewScalar().Subtract(z2, d).Bytes()...)
	errs := VerifyTransitProofs(rand.Reader, []TransitProofItem{{bind, E1, q1}, {bind, E2, q2}})
	if len(errs) != 2 || errs[0] == nil || errs[1] == nil {
		t.Fatalf("two cancelling bad proofs: %v; want both refused", errs)
	}
	// R + T (T of order 8): refused by neither check, so both agree.
	// The challenge hashes R's encoding, so the response is made again
	// for the changed R: k stays, c changes.
	T, _ := new(edwards25519.Point).SetBytes(mustHex(t, torsionHex[4]))
	for i := range 16 {
		E, proof, r := proved(t, bind)
		k := edwards25519.NewScalar()
		Rp, _ := new(edwards25519.Point).SetBytes(proof[:PointSize])
		Rt := new(edwards25519.Point).Add(Rp, T).Bytes()
		// z = k + c'*r with c' over the new R: k is z - c*r of the old one.
		z, _ := edwards25519.NewScalar().SetCanonicalBytes(proof[PointSize:])
		k.Subtract(z, edwards25519.NewScalar().Multiply(transitProofChallenge(bind, E, proof[:PointSize]), r))
		z.MultiplyAdd(transitProofChallenge(bind, E, Rt), r, k)
		it := TransitProofItem{Binding: bind, E: E, Proof: append(Rt, z.Bytes()...)}
		single := VerifyTransitProof(bind, E, it.Proof)
		batch := VerifyTransitProofs(rand.Reader, []TransitProofItem{it, {bind, E1, p1}})
		if (single == nil) != (batch == nil) {
			t.Fatalf("try %d: a commitment with torsion: alone %v, in a batch %v", i, single, batch)
		}
	}
}

// TestTransitSealProves: what TransitSeal returns carries a proof bound
// to its info, for its E.
func TestTransitSealProves(t *testing.T) {
	_, poly, _ := transitKey(t)
	info := TransitBinding("aad", "id:k", 1, nil)
	E, proof, _, err := TransitSeal(rand.Reader, poly.Commits[0], CipherAES256GCM, info, info, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if len(proof) != TransitProofSize || VerifyTransitProof(info, E, proof) != nil || VerifyTransitProof(info[1:], E, proof) == nil {
		t.Fatal("TransitSeal's proof does not verify for its info alone")
	}
}

// BenchmarkVerifyTransitProof is one proof checked alone.
func BenchmarkVerifyTransitProof(b *testing.B) {
	bind := []byte("binding")
	E, proof, _ := proved(b, bind)
	for b.Loop() {
		if err := VerifyTransitProof(bind, E, proof); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyTransitProofs is a batch's check per item, by batch size.
func BenchmarkVerifyTransitProofs(b *testing.B) {
	for _, n := range []int{16, 64, 512} {
		items := make([]TransitProofItem, n)
		for i := range items {
			E, proof, _ := proved(b, []byte("binding"))
			items[i] = TransitProofItem{Binding: []byte("binding"), E: E, Proof: proof}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if errs := VerifyTransitProofs(rand.Reader, items); errs != nil {
					b.Fatal(errs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
		})
	}
}
