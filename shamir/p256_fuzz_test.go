package shamir

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzDecodeP256Point checks the strict P-256 decoder against crypto/ecdh,
// which accepts exactly the uncompressed encodings of points on the curve
// other than the identity; accepted points must round-trip.
func FuzzDecodeP256Point(f *testing.F) {
	for _, b := range badP256Points(f) {
		f.Add(b)
	}
	f.Add(randomP256Point(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		P, err := decodeP256Point(b)
		_, ecdhErr := ecdh.P256().NewPublicKey(b)
		if (err == nil) != (ecdhErr == nil) {
			t.Fatalf("decodeP256Point(%x): err=%v, crypto/ecdh: %v", b, err, ecdhErr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("error does not wrap ErrInvalidPoint: %v", err)
			}
			return
		}
		if !bytes.Equal(P.Bytes(), b) {
			t.Fatalf("round trip of %x differs", b)
		}
	})
}

// FuzzVerifyP256Partial feeds arbitrary points, proofs, indexes and
// contexts to VerifyP256Partial and CombineP256: no panic, and only the
// genuine partial verifies.
func FuzzVerifyP256Partial(f *testing.F) {
	fx := dealP256(f, 2, 1, 2, 3)
	X := randomP256Point(f)
	good, err := ComputeP256Partial(rand.Reader, fx.shares[0], X, p256Context)
	if err != nil {
		f.Fatal(err)
	}
	S1 := fx.publicShares[1]
	f.Add(uint32(1), good.Point, good.C, good.Z, X, p256Context)
	f.Add(uint32(2), good.Point, good.C, good.Z, X, p256Context)
	f.Add(uint32(1), []byte{0}, good.C, good.Z, X, p256Context)
	f.Add(uint32(1), good.Point, good.Z, good.C, X, []byte{})
	f.Add(uint32(0), []byte{4}, []byte{}, []byte{1}, []byte{0}, []byte("x"))
	f.Fuzz(func(t *testing.T, index uint32, point, c, z, x, context []byte) {
		p := &P256Partial{Index: index, Point: point, C: c, Z: z}
		err := VerifyP256Partial(S1, x, p, context)
		genuine := index == 1 && bytes.Equal(point, good.Point) && bytes.Equal(c, good.C) &&
			bytes.Equal(z, good.Z) && bytes.Equal(x, X) && bytes.Equal(context, p256Context)
		if err == nil && !genuine {
			t.Fatalf("a partial other than the genuine one verified: %+v", p)
		}
		if err != nil && genuine {
			t.Fatalf("the genuine partial was refused: %v", err)
		}
		if _, err := CombineP256([]*P256Partial{p, good}, 2); err == nil && ValidateP256Point(point) != nil {
			t.Fatalf("CombineP256 accepted an invalid point %x", point)
		}
	})
}
