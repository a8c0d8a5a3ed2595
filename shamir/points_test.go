package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
)

// torsionHex are the encodings of the 8 points of small order (the torsion
// subgroup E[8]); TestTorsionFixture checks that this list is exactly that
// subgroup.
var torsionHex = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2 (y = -1)
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4
	"0000000000000000000000000000000000000000000000000000000000000080", // order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
}

func torsionPoints(t testing.TB) [][]byte {
	out := make([][]byte, len(torsionHex))
	for i, h := range torsionHex {
		out[i] = mustHex(t, h)
	}
	return out
}

// TestTorsionFixture generates E[8] from l*P for a random point P and
// checks it against torsionHex.
func TestTorsionFixture(t *testing.T) {
	var gen *edwards25519.Point
	for gen == nil {
		b := randomBytes(t, 32)
		P, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			continue
		}
		T := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(minusOne, P, zeroScalar)
		T.Add(T, P) // l*P: the torsion component of P, times l
		four := new(edwards25519.Point).Add(T, T)
		four.Add(four, four)
		if four.Equal(identityPoint) == 0 { // order 8
			gen = T
		}
	}
	want := map[string]bool{}
	for _, h := range torsionHex {
		want[h] = true
	}
	acc := edwards25519.NewIdentityPoint()
	for k := 0; k < 8; k++ {
		h := hex.EncodeToString(acc.Bytes())
		if !want[h] {
			t.Fatalf("%d*T = %s is not in the fixture", k, h)
		}
		delete(want, h)
		acc.Add(acc, gen)
	}
	if len(want) != 0 {
		t.Fatalf("fixture has extra entries: %v", want)
	}
	// The list also holds the non-canonical-looking zero-y encodings; each
	// entry must decode to a point with 8*P = identity.
	for _, b := range torsionPoints(t) {
		P, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			t.Fatalf("%x does not decode: %v", b, err)
		}
		if new(edwards25519.Point).MultByCofactor(P).Equal(identityPoint) != 1 {
			t.Fatalf("%x is not of small order", b)
		}
	}
}

// TestKyberAcceptsSmallOrder documents the trap this package guards against.
func TestKyberAcceptsSmallOrder(t *testing.T) {
	for _, b := range torsionPoints(t) {
		if err := suite.Point().UnmarshalBinary(b); err != nil {
			t.Logf("kyber rejects %x (fine, but the trap note in doc.go is outdated)", b)
		}
	}
}

// mixedPoint returns a valid prime-order point plus an order-8 point.
func mixedPoint(t testing.TB) []byte {
	P := randomPoint(t)
	T, err := new(edwards25519.Point).SetBytes(mustHex(t, torsionHex[4]))
	if err != nil {
		t.Fatal(err)
	}
	return P.Add(P, T).Bytes()
}

func TestSmallOrderPointsRejected(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, poly.PublicKey(), testInfo, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	honest := partialsFrom(t, nodes, ct.R, testRelease)
	rs, xs := recipientsOf(nodes)
	d, err := NewFreshDeal(rand.Reader, 1, 2, rs, testContext)
	if err != nil {
		t.Fatal(err)
	}

	bad := torsionPoints(t)
	bad = append(bad, mixedPoint(t), mixedPoint(t))
	for i, b := range bad {
		name := "torsion"
		if i >= len(torsionHex) {
			name = "mixed"
		}
		t.Run(name+"_"+hex.EncodeToString(b[:4]), func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrInvalidPoint) {
					t.Errorf("%s: got %v, want ErrInvalidPoint", what, err)
				}
			}
			check("ValidatePoint", ValidatePoint(b))
			// As the ciphertext R.
			_, err := ComputePartial(rand.Reader, nodes[0].share, b, testRelease)
			check("ComputePartial R", err)
			check("VerifyPartial R", VerifyPartial(poly, b, honest[0], testRelease))
			_, err = Open(poly, &Ciphertext{R: b, Sealed: ct.Sealed}, testInfo, honest, testRelease)
			check("Open R", err)
			// As the public key.
			_, err = Seal(rand.Reader, b, nil, []byte("m"))
			check("Seal public key", err)
			// As a partial value.
			p := *honest[0]
			p.Value = b
			check("VerifyPartial value", VerifyPartial(poly, ct.R, &p, testRelease))
			_, err = Open(poly, ct, testInfo, []*Partial{&p, honest[1]}, testRelease)
			check("Open value", err)
			// As a commitment.
			for j := range d.Commits {
				bd := *d
				bd.Commits = cloneBytes(d.Commits)
				bd.Commits[j] = b
				check("VerifyFreshDeal commitment", VerifyFreshDeal(&bd, 2, xs))
				_, err = OpenDeal(&bd, 2, nodes[1].encPriv, testContext)
				check("OpenDeal commitment", err)
				_, _, err = CombineFresh([]*Deal{&bd}, nil, 0)
				check("CombineFresh commitment", err)
				check("PublicPoly.Validate", (&PublicPoly{Commits: bd.Commits}).Validate())
			}
			// As a deal's ephemeral key.
			bd := *d
			bd.Shares = append([]EncryptedShare(nil), d.Shares...)
			bd.Shares[1].Ciphertext = append(bytes.Clone(b), d.Shares[1].Ciphertext[PointSize:]...)
			check("VerifyFreshDeal ephemeral", VerifyFreshDeal(&bd, 2, xs))
			_, err = OpenDeal(&bd, bd.Shares[1].Index, nodes[1].encPriv, testContext)
			check("OpenDeal ephemeral", err)
			// As a recipient's encryption key.
			rb := append([]Recipient(nil), rs...)
			rb[2].EncPub = b
			_, err = NewFreshDeal(rand.Reader, 1, 2, rb, testContext)
			check("NewFreshDeal recipient key", err)
		})
	}
	// The cheap check alone (used on trusted commitments) still rejects all
	// of E[8].
	for _, b := range torsionPoints(t) {
		if _, err := decodePointNoSubgroup(b); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("cheap check accepted %x", b)
		}
		if _, err := (&PublicPoly{Commits: [][]byte{poly.Commits[0], b}}).PublicShare(1); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("PublicShare accepted commitment %x", b)
		}
	}
}

func TestNonCanonicalEncodingsRejected(t *testing.T) {
	// y = p + k for k in 0..18 (y >= p is non-canonical), both sign bits,
	// plus "negative zero" x for y = 1 and y = -1.
	var encs [][]byte
	for k := 0; k <= 18; k++ {
		b := make([]byte, 32)
		for i := range b {
			b[i] = 0xff
		}
		b[0] = byte(0xed + k)
		b[31] = 0x7f
		encs = append(encs, b)
		neg := bytes.Clone(b)
		neg[31] |= 0x80
		encs = append(encs, neg)
	}
	encs = append(encs,
		mustHex(t, "0100000000000000000000000000000000000000000000000000000000000080"),
		mustHex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"))
	decodedByFilippo, largeOrder := 0, 0
	for _, b := range encs {
		P, err := new(edwards25519.Point).SetBytes(b)
		if err == nil {
			decodedByFilippo++
			if new(edwards25519.Point).MultByCofactor(P).Equal(identityPoint) == 0 {
				largeOrder++
			}
		}
		if err := ValidatePoint(b); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("%x accepted: %v", b, err)
		}
		if _, err := decodePointNoSubgroup(b); err == nil {
			t.Errorf("cheap check accepted %x", b)
		} else if P != nil && largeOrderPoint(P) && !strings.Contains(err.Error(), "non-canonical") {
			t.Errorf("%x rejected for the wrong reason: %v", b, err)
		}
		if _, err := Seal(rand.Reader, b, nil, nil); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("Seal accepted public key %x", b)
		}
	}
	// The test is only meaningful if the permissive decoder accepts some of
	// these, including points that are not of small order.
	if decodedByFilippo == 0 || largeOrder == 0 {
		t.Fatalf("filippo decoded %d non-canonical encodings, %d of large order", decodedByFilippo, largeOrder)
	}

	// Non-canonical scalars: l, l+1, 2^256-1.
	for _, h := range []string{
		"edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
		"eed3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		b := mustHex(t, h)
		if _, err := decodeScalar(b); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("scalar %s accepted", h)
		}
		if _, err := ComputePartial(rand.Reader, &Share{Index: 1, Value: b}, randomPoint(t).Bytes(), nil); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("share value %s accepted: %v", h, err)
		}
		if _, err := EncryptionPublicKey(b); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("private key %s accepted: %v", h, err)
		}
	}
}

func largeOrderPoint(P *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(P).Equal(identityPoint) == 0
}

func TestEncodingAgreement(t *testing.T) {
	for i := 0; i < 32; i++ {
		fs, err := randomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ks := toKyberScalar(fs)
		// Scalars: kyber's MarshalBinary is filippo's canonical encoding.
		kb, err := kyberScalarBytes(ks)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kb, fs.Bytes()) {
			t.Fatalf("scalar encodings differ: kyber %x filippo %x", kb, fs.Bytes())
		}
		// Base multiplication gives the same 32 bytes.
		fp := new(edwards25519.Point).ScalarBaseMult(fs)
		kp := suite.Point().Mul(ks, nil)
		kpb, _ := kp.MarshalBinary()
		if !bytes.Equal(kpb, fp.Bytes()) {
			t.Fatalf("point encodings differ: kyber %x filippo %x", kpb, fp.Bytes())
		}
		// Each decodes the other's encoding to the same point.
		kp2 := suite.Point()
		if err := kp2.UnmarshalBinary(fp.Bytes()); err != nil || !kp2.Equal(kp) {
			t.Fatal("kyber does not decode filippo's encoding")
		}
		if fp2, err := new(edwards25519.Point).SetBytes(kpb); err != nil || fp2.Equal(fp) != 1 {
			t.Fatal("filippo does not decode kyber's encoding")
		}
		// Arithmetic agrees: variable-base multiplication and addition.
		fs2, _ := randomScalar(rand.Reader)
		ks2 := toKyberScalar(fs2)
		fm := new(edwards25519.Point).ScalarMult(fs2, fp)
		km := suite.Point().Mul(ks2, kp)
		kmb, _ := km.MarshalBinary()
		if !bytes.Equal(kmb, fm.Bytes()) {
			t.Fatal("scalar multiplication differs")
		}
		fa := new(edwards25519.Point).Add(fm, fp)
		ka := suite.Point().Add(km, kp)
		kab, _ := ka.MarshalBinary()
		if !bytes.Equal(kab, fa.Bytes()) {
			t.Fatal("addition differs")
		}
		// Scalar arithmetic agrees.
		fprod := edwards25519.NewScalar().Multiply(fs, fs2)
		kprod, _ := suite.Scalar().Mul(ks, ks2).MarshalBinary()
		if !bytes.Equal(kprod, fprod.Bytes()) {
			t.Fatal("scalar multiplication mod l differs")
		}
		// And both equal crypto/ed25519's public key for a seed's scalar:
		// the encoding is that of Ed25519 public keys.
		seed := randomBytes(t, ed25519.SeedSize)
		priv := ed25519.NewKeyFromSeed(seed)
		es, err := new(edwards25519.Scalar).SetBytesWithClamping(hashSeed(seed))
		if err != nil {
			t.Fatal(err)
		}
		kes := toKyberScalar(es)
		kpub, _ := suite.Point().Mul(kes, nil).MarshalBinary()
		if !bytes.Equal(kpub, priv.Public().(ed25519.PublicKey)) {
			t.Fatal("kyber's encoding differs from crypto/ed25519")
		}
	}
	// Base point and identity.
	kb, _ := suite.Point().Base().MarshalBinary()
	if !bytes.Equal(kb, edwards25519.NewGeneratorPoint().Bytes()) {
		t.Fatal("base points differ")
	}
	kn, _ := suite.Point().Null().MarshalBinary()
	if !bytes.Equal(kn, edwards25519.NewIdentityPoint().Bytes()) {
		t.Fatal("identity encodings differ")
	}
}

func TestPublicShareMatchesKyber(t *testing.T) {
	for _, th := range []int{1, 2, 3, 5} {
		coeffs := make([]*edwards25519.Scalar, th)
		for i := range coeffs {
			coeffs[i], _ = randomScalar(rand.Reader)
		}
		kc := make([]kyber.Scalar, th)
		for i, c := range coeffs {
			kc[i] = toKyberScalar(c)
		}
		pri := share.CoefficientsToPriPoly(suite, kc)
		_, commits := pri.Commit(nil).Info()
		poly := &PublicPoly{}
		for _, c := range commits {
			b, _ := c.MarshalBinary()
			poly.Commits = append(poly.Commits, b)
		}
		pub := share.NewPubPoly(suite, nil, commits)
		for _, x := range []uint32{1, 2, 3, 7, 255, 65537, 4294967295} {
			got, err := poly.PublicShare(x)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := pub.Eval(int(x) - 1).V.MarshalBinary()
			if !bytes.Equal(got, want) {
				t.Fatalf("t=%d x=%d: PublicShare differs from kyber", th, x)
			}
			v, _ := kyberScalarBytes(pri.Eval(int(x) - 1).V)
			if err := poly.VerifyShare(&Share{Index: x, Value: v}); err != nil {
				t.Fatalf("t=%d x=%d: %v", th, x, err)
			}
		}
	}
}

func hashSeed(seed []byte) []byte {
	h := sha512.Sum512(seed)
	return h[:32]
}

// encodePoints, with its one shared inversion, encodes each point as
// Point.Bytes does.
func TestEncodePointsMatchesBytes(t *testing.T) {
	ps := []*edwards25519.Point{edwards25519.NewIdentityPoint(), edwards25519.NewGeneratorPoint()}
	for range 6 {
		ps = append(ps, randomPoint(t))
	}
	for n := 1; n <= len(ps); n++ {
		got := encodePoints(ps[:n]...)
		for i, p := range ps[:n] {
			if !bytes.Equal(got[i], p.Bytes()) {
				t.Fatalf("encodePoints of %d points: point %d is %x, Bytes %x", n, i, got[i], p.Bytes())
			}
		}
	}
}

// combinePoints gives the multi-scalar multiplication's point whether the
// coefficients are small integers (neighbouring indexes) or not.
func TestCombinePointsSmallCoefficients(t *testing.T) {
	pts := []*edwards25519.Point{randomPoint(t), randomPoint(t), randomPoint(t)}
	for _, idx := range [][]uint32{{1, 2}, {2, 3}, {2, 1}, {1, 3}, {2, 4}, {7, 8}, {1, 2, 3}, {1, 3, 5}, {4294967294, 4294967295}} {
		lambdas, err := lagrangeAtZero(idx)
		if err != nil {
			t.Fatal(err)
		}
		want := new(edwards25519.Point).VarTimeMultiScalarMult(lambdas, pts[:len(idx)])
		got, err := combinePoints(idx, pts[:len(idx)])
		if err != nil {
			t.Fatal(err)
		}
		if got.Equal(want) != 1 {
			t.Errorf("combinePoints over %v differs from the multi-scalar multiplication", idx)
		}
	}
	for _, c := range []struct {
		v        uint32
		negative bool
	}{{0, false}, {1, false}, {2, false}, {1, true}, {4294967295, false}, {4294967295, true}} {
		s := scalarFromUint32(c.v)
		if c.negative {
			s.Negate(s)
		}
		k, neg, ok := smallInt(s)
		if !ok || k != c.v || (neg && c.v != 0) != c.negative {
			t.Errorf("smallInt(%v, negative %v) = %d, %v, %v", c.v, c.negative, k, neg, ok)
		}
	}
	if _, _, ok := smallInt(edwards25519.NewScalar().Multiply(scalarFromUint32(1<<31), scalarFromUint32(1<<31))); ok {
		t.Error("2^62 is taken for a small integer")
	}
}
