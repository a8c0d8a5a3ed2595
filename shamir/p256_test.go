package shamir

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"filippo.io/bigmod"
	"filippo.io/nistec"
)

var p256Context = []byte("tang/test-key")

// p256Fixture is a dealt 2-of-3 (or t-of-n) P-256 key with the secret
// reconstructed in the clear so that results can be checked directly.
type p256Fixture struct {
	t            int
	pub          []byte
	shares       []*P256Share
	publicShares map[uint32][]byte
	secret       []byte // s, 32 bytes, only for checking
}

func dealP256(t testing.TB, th int, indexes ...uint32) *p256Fixture {
	t.Helper()
	pub, shares, publicShares, err := DealP256(rand.Reader, th, indexes)
	if err != nil {
		t.Fatalf("DealP256: %v", err)
	}
	f := &p256Fixture{t: th, pub: pub, shares: shares, publicShares: publicShares}
	f.secret = interpolateScalarsAtZero(t, shares[:th])
	return f
}

// interpolateScalarsAtZero rebuilds the secret with math/big, independently
// of the code under test.
func interpolateScalarsAtZero(t testing.TB, shares []*P256Share) []byte {
	t.Helper()
	n := p256OrderBig
	sum := new(big.Int)
	for i, si := range shares {
		num, den := big.NewInt(1), big.NewInt(1)
		for j, sj := range shares {
			if i == j {
				continue
			}
			num.Mul(num, big.NewInt(int64(sj.Index)))
			den.Mul(den, big.NewInt(int64(sj.Index)-int64(si.Index)))
		}
		den.Mod(den, n).ModInverse(den, n)
		l := num.Mul(num, den)
		l.Mul(l, new(big.Int).SetBytes(si.Scalar))
		sum.Add(sum, l)
	}
	return sum.Mod(sum, n).FillBytes(make([]byte, 32))
}

func randomP256Point(t testing.TB) []byte {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

func p256Partials(t testing.TB, shares []*P256Share, X, context []byte) []*P256Partial {
	t.Helper()
	out := make([]*P256Partial, len(shares))
	for i, sh := range shares {
		p, err := ComputeP256Partial(rand.Reader, sh, X, context)
		if err != nil {
			t.Fatalf("ComputeP256Partial(%d): %v", sh.Index, err)
		}
		out[i] = p
	}
	return out
}

// directMult computes s*X with crypto/ecdh (x only) and with nistec (full
// point), and checks that both agree.
func directMult(t testing.TB, s, X []byte) []byte {
	t.Helper()
	priv, err := ecdh.P256().NewPrivateKey(s)
	if err != nil {
		t.Fatal(err)
	}
	pubX, err := ecdh.P256().NewPublicKey(X)
	if err != nil {
		t.Fatal(err)
	}
	x, err := priv.ECDH(pubX)
	if err != nil {
		t.Fatal(err)
	}
	Xp, err := nistec.NewP256Point().SetBytes(X)
	if err != nil {
		t.Fatal(err)
	}
	P, err := nistec.NewP256Point().ScalarMult(Xp, s)
	if err != nil {
		t.Fatal(err)
	}
	full := P.Bytes()
	if !bytes.Equal(full[1:33], x) {
		t.Fatalf("nistec and crypto/ecdh disagree on s*X")
	}
	return full
}

func TestP256DealAndCombine(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	// The public key is s*G, as crypto/ecdh computes it from the secret.
	priv, err := ecdh.P256().NewPrivateKey(f.secret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), f.pub) {
		t.Fatal("public key is not s*G")
	}
	for _, sh := range f.shares {
		if err := CheckP256Share(sh, f.publicShares[sh.Index]); err != nil {
			t.Fatalf("share %d: %v", sh.Index, err)
		}
	}
	if err := CheckP256PublicShares(f.pub, f.t, f.publicShares); err != nil {
		t.Fatalf("CheckP256PublicShares: %v", err)
	}

	X := randomP256Point(t)
	want := directMult(t, f.secret, X)
	partials := p256Partials(t, f.shares, X, p256Context)
	for _, p := range partials {
		if err := VerifyP256Partial(f.publicShares[p.Index], X, p, p256Context); err != nil {
			t.Fatalf("VerifyP256Partial(%d): %v", p.Index, err)
		}
	}
	for _, sub := range subsets(3, 2) {
		ps := []*P256Partial{partials[sub[0]], partials[sub[1]]}
		got, err := CombineP256(ps, 2)
		if err != nil {
			t.Fatalf("CombineP256%v: %v", sub, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("CombineP256%v != s*X", sub)
		}
	}
	// More than t given: the first t are used.
	got, err := CombineP256([]*P256Partial{partials[2], partials[0], {Index: 9}}, 2)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("CombineP256 with an extra partial: %v", err)
	}
}

func TestP256AnyThresholdSubset(t *testing.T) {
	for _, tc := range []struct {
		t       int
		indexes []uint32
	}{
		{1, []uint32{1}},
		{1, []uint32{4, 9}},
		{3, []uint32{1, 2, 3, 4, 5}},
		{4, []uint32{2, 3, 5, 7, 11, 13, 17}},
		{7, []uint32{1, 2, 3, 4, 5, 6, 7}},
	} {
		t.Run(fmt.Sprintf("%d-of-%v", tc.t, tc.indexes), func(t *testing.T) {
			f := dealP256(t, tc.t, tc.indexes...)
			if err := CheckP256PublicShares(f.pub, f.t, f.publicShares); err != nil {
				t.Fatal(err)
			}
			X := randomP256Point(t)
			want := directMult(t, f.secret, X)
			partials := p256Partials(t, f.shares, X, p256Context)
			for _, sub := range subsets(len(tc.indexes), tc.t) {
				ps := make([]*P256Partial, len(sub))
				for k, i := range sub {
					ps[k] = partials[i]
				}
				got, err := CombineP256(ps, tc.t)
				if err != nil {
					t.Fatalf("subset %v: %v", sub, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("subset %v does not give s*X", sub)
				}
			}
		})
	}
}

func TestP256BelowThresholdDoesNotGiveSecretPoint(t *testing.T) {
	f := dealP256(t, 3, 1, 2, 3, 4)
	X := randomP256Point(t)
	want := directMult(t, f.secret, X)
	partials := p256Partials(t, f.shares, X, p256Context)
	if _, err := CombineP256(partials[:2], 3); !errors.Is(err, ErrNotEnoughPartials) {
		t.Fatalf("2 partials with t=3: %v, want ErrNotEnoughPartials", err)
	}
	// Interpolating t-1 partials as though t-1 were the threshold gives
	// some point, but not s*X.
	for _, sub := range subsets(4, 2) {
		got, err := CombineP256([]*P256Partial{partials[sub[0]], partials[sub[1]]}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, want) {
			t.Fatalf("2 of a 3-of-4 sharing gave s*X (subset %v)", sub)
		}
	}
}

func TestP256PartialProofRefused(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	X := randomP256Point(t)
	good, err := ComputeP256Partial(rand.Reader, f.shares[0], X, p256Context)
	if err != nil {
		t.Fatal(err)
	}
	S1 := f.publicShares[1]
	other := randomP256Point(t)
	clone := func() *P256Partial {
		return &P256Partial{Index: good.Index, Point: bytes.Clone(good.Point), C: bytes.Clone(good.C), Z: bytes.Clone(good.Z)}
	}

	// The genuine proof attached to another point.
	forged := clone()
	forged.Point = other
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[31] ^= 1; return b }
	// A proof for s_1*X', replayed for X.
	otherX := randomP256Point(t)
	replayed, err := ComputeP256Partial(rand.Reader, f.shares[0], otherX, p256Context)
	if err != nil {
		t.Fatal(err)
	}
	// A correct proof computed with another share, claiming index 1.
	wrongShare, err := ComputeP256Partial(rand.Reader, &P256Share{Index: 1, Scalar: f.shares[1].Scalar}, X, p256Context)
	if err != nil {
		t.Fatal(err)
	}
	overN := p256OrderBig.FillBytes(make([]byte, 32))

	for _, tc := range []struct {
		name        string
		publicShare []byte
		X           []byte
		p           *P256Partial
		context     []byte
		want        error
	}{
		{"wrong point", S1, X, forged, p256Context, ErrBadProof},
		{"flipped challenge", S1, X, &P256Partial{Index: 1, Point: good.Point, C: flip(good.C), Z: good.Z}, p256Context, ErrBadProof},
		{"flipped response", S1, X, &P256Partial{Index: 1, Point: good.Point, C: good.C, Z: flip(good.Z)}, p256Context, ErrBadProof},
		{"wrong context", S1, X, good, []byte("tang/other-key"), ErrBadProof},
		{"wrong index", S1, X, &P256Partial{Index: 2, Point: good.Point, C: good.C, Z: good.Z}, p256Context, ErrBadProof},
		{"wrong public share", f.publicShares[2], X, good, p256Context, ErrBadProof},
		{"wrong X", S1, otherX, good, p256Context, ErrBadProof},
		{"replayed for another X", S1, X, replayed, p256Context, ErrBadProof},
		{"another share's value", S1, X, wrongShare, p256Context, ErrBadProof},
		{"challenge >= n", S1, X, &P256Partial{Index: 1, Point: good.Point, C: overN, Z: good.Z}, p256Context, ErrBadProof},
		{"short response", S1, X, &P256Partial{Index: 1, Point: good.Point, C: good.C, Z: good.Z[1:]}, p256Context, ErrBadProof},
		{"index 0", S1, X, &P256Partial{Point: good.Point, C: good.C, Z: good.Z}, p256Context, ErrInvalidIndex},
		{"nil partial", S1, X, nil, p256Context, ErrBadProof},
		{"identity point", S1, X, &P256Partial{Index: 1, Point: []byte{0}, C: good.C, Z: good.Z}, p256Context, ErrInvalidPoint},
		{"compressed point", S1, X, &P256Partial{Index: 1, Point: compress(t, good.Point), C: good.C, Z: good.Z}, p256Context, ErrInvalidPoint},
		{"identity X", S1, []byte{0}, good, p256Context, ErrInvalidPoint},
		{"off-curve public share", offCurve(S1), X, good, p256Context, ErrInvalidPoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyP256Partial(tc.publicShare, tc.X, tc.p, tc.context)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyP256Partial: %v, want %v", err, tc.want)
			}
		})
	}
	if err := VerifyP256Partial(S1, X, good, p256Context); err != nil {
		t.Fatalf("the genuine partial: %v", err)
	}
}

func compress(t testing.TB, b []byte) []byte {
	t.Helper()
	p, err := nistec.NewP256Point().SetBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return p.BytesCompressed()
}

func offCurve(b []byte) []byte {
	b = bytes.Clone(b)
	b[64] ^= 1
	return b
}

// badP256Points are encodings that must be refused before any secret
// multiplication.
func badP256Points(t testing.TB) map[string][]byte {
	good := randomP256Point(t)
	zero := make([]byte, 65)
	zero[0] = 4
	pBytes, _ := new(big.Int).SetString("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16)
	// (x + p, y): same point mod p but a non-canonical coordinate.
	nonCanonical := bytes.Clone(good)
	xp := new(big.Int).Add(new(big.Int).SetBytes(good[1:33]), pBytes)
	if xp.BitLen() <= 256 {
		xp.FillBytes(nonCanonical[1:33])
	} else {
		nonCanonical[1] = 0xff
		copy(nonCanonical[2:33], bytes.Repeat([]byte{0xff}, 31))
	}
	hybrid := bytes.Clone(good)
	hybrid[0] = 6 | good[64]&1
	return map[string][]byte{
		"identity (0x00)":          {0},
		"all-zero uncompressed":    zero,
		"compressed":               compress(t, good),
		"off curve":                offCurve(good),
		"non-canonical x":          nonCanonical,
		"hybrid prefix":            hybrid,
		"empty":                    nil,
		"64 bytes without prefix":  good[1:],
		"66 bytes":                 append(bytes.Clone(good), 0),
		"wrong prefix 0x05":        append([]byte{5}, good[1:]...),
		"P-384 sized uncompressed": append([]byte{4}, make([]byte, 96)...),
	}
}

func TestP256BadPointsRefused(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	for name, b := range badP256Points(t) {
		t.Run(name, func(t *testing.T) {
			if err := ValidateP256Point(b); !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("ValidateP256Point: %v", err)
			}
			if _, err := ComputeP256Partial(rand.Reader, f.shares[0], b, p256Context); !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("ComputeP256Partial: %v", err)
			}
			if _, err := CombineP256([]*P256Partial{{Index: 1, Point: b}, {Index: 2, Point: f.pub}}, 2); !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("CombineP256: %v", err)
			}
			if err := CheckP256PublicShares(b, 2, f.publicShares); !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("CheckP256PublicShares: %v", err)
			}
			if err := CheckP256Share(f.shares[0], b); !errors.Is(err, ErrInvalidPoint) {
				t.Fatalf("CheckP256Share: %v", err)
			}
		})
	}
}

// countingReader counts how many bytes a function draws.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n += len(p)
	return rand.Read(p)
}

func TestP256BadPointRefusedBeforeSecretWork(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	r := &countingReader{}
	if _, err := ComputeP256Partial(r, f.shares[0], []byte{0}, p256Context); err == nil {
		t.Fatal("identity accepted")
	}
	if r.n != 0 {
		t.Fatalf("drew %d random bytes before refusing the point", r.n)
	}
}

func TestP256CombineRefusesBadInput(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	X := randomP256Point(t)
	ps := p256Partials(t, f.shares, X, p256Context)
	for _, tc := range []struct {
		name string
		ps   []*P256Partial
		t    int
		want error
	}{
		{"duplicate index", []*P256Partial{ps[0], ps[0]}, 2, ErrDuplicateIndex},
		{"index 0", []*P256Partial{ps[0], {Index: 0, Point: ps[1].Point}}, 2, ErrInvalidIndex},
		{"nil partial", []*P256Partial{ps[0], nil}, 2, ErrNotEnoughPartials},
		{"too few", ps[:1], 2, ErrNotEnoughPartials},
		{"t = 0", ps, 0, ErrBadThreshold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := CombineP256(tc.ps, tc.t); !errors.Is(err, tc.want) {
				t.Fatalf("CombineP256: %v, want %v", err, tc.want)
			}
		})
	}
	// Partials that cancel out give the identity, which is refused: for
	// indexes {1, 2}, lambda_1 = 2 and lambda_2 = -1, so P and 2P give
	// 2P - 2P.
	P := randomP256Point(t)
	Pp, _ := nistec.NewP256Point().SetBytes(P)
	twoP := nistec.NewP256Point().Double(Pp).Bytes()
	if _, err := CombineP256([]*P256Partial{{Index: 1, Point: P}, {Index: 2, Point: twoP}}, 2); !errors.Is(err, ErrInvalidPoint) {
		t.Fatalf("a combination giving the identity: %v", err)
	}
}

func TestP256CheckPublicShares(t *testing.T) {
	f := dealP256(t, 3, 1, 2, 3, 4, 5)
	other := dealP256(t, 3, 1, 2, 3, 4, 5)
	with := func(i uint32, b []byte) map[uint32][]byte {
		m := make(map[uint32][]byte, len(f.publicShares))
		for k, v := range f.publicShares {
			m[k] = v
		}
		if b == nil {
			delete(m, i)
		} else {
			m[i] = b
		}
		return m
	}
	if err := CheckP256PublicShares(f.pub, 3, f.publicShares); err != nil {
		t.Fatal(err)
	}
	// Any 3 or more of the shares still check.
	if err := CheckP256PublicShares(f.pub, 3, with(5, nil)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		pub    []byte
		t      int
		shares map[uint32][]byte
		want   error
	}{
		{"another key's public key", other.pub, 3, f.publicShares, ErrBadShare},
		{"a share of another key (lowest index)", f.pub, 3, with(1, other.publicShares[1]), ErrBadShare},
		{"a share of another key (highest index)", f.pub, 3, with(5, other.publicShares[5]), ErrBadShare},
		{"shares swapped", f.pub, 3, with(4, f.publicShares[5]), ErrBadShare},
		{"a lower threshold than dealt", f.pub, 2, f.publicShares, ErrBadShare},
		{"threshold above share count", f.pub, 6, f.publicShares, ErrBadThreshold},
		{"index 0", f.pub, 3, with(0, f.publicShares[1]), ErrInvalidIndex},
		{"invalid share point", f.pub, 3, with(2, []byte{0}), ErrInvalidPoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckP256PublicShares(tc.pub, tc.t, tc.shares); !errors.Is(err, tc.want) {
				t.Fatalf("CheckP256PublicShares: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestP256DealRefusesBadParameters(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       int
		indexes []uint32
		want    error
	}{
		{"t = 0", 0, []uint32{1, 2}, ErrBadThreshold},
		{"t > n", 3, []uint32{1, 2}, ErrBadThreshold},
		{"index 0", 2, []uint32{0, 1, 2}, ErrInvalidIndex},
		{"duplicate", 2, []uint32{1, 2, 2}, ErrDuplicateIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := DealP256(rand.Reader, tc.t, tc.indexes); !errors.Is(err, tc.want) {
				t.Fatalf("DealP256: %v, want %v", err, tc.want)
			}
		})
	}
	// A source that only ever returns 0xff...: every candidate is >= n.
	if _, _, _, err := DealP256(bytes.NewReader(bytes.Repeat([]byte{0xff}, 4096)), 2, []uint32{1, 2}); err == nil {
		t.Fatal("a degenerate randomness source was accepted")
	}
	if _, _, _, err := DealP256(bytes.NewReader(nil), 2, []uint32{1, 2}); err == nil {
		t.Fatal("an empty randomness source was accepted")
	}
}

func TestP256ShareScalarChecks(t *testing.T) {
	X := randomP256Point(t)
	n := p256OrderBig.FillBytes(make([]byte, 32))
	for name, sh := range map[string]*P256Share{
		"nil":      nil,
		"zero":     {Index: 1, Scalar: make([]byte, 32)},
		"n":        {Index: 1, Scalar: n},
		"short":    {Index: 1, Scalar: make([]byte, 31)},
		"index 0":  {Index: 0, Scalar: bytes.Repeat([]byte{1}, 32)},
		"erased":   func() *P256Share { s := &P256Share{Index: 1, Scalar: bytes.Repeat([]byte{1}, 32)}; s.Erase(); return s }(),
		"33 bytes": {Index: 1, Scalar: make([]byte, 33)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ComputeP256Partial(rand.Reader, sh, X, p256Context); err == nil {
				t.Fatal("ComputeP256Partial accepted it")
			}
			if _, err := P256PublicShare(sh); err == nil {
				t.Fatal("P256PublicShare accepted it")
			}
		})
	}
}

func TestP256ShareSealing(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	priv, pub, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, _, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sh := f.shares[1]
	sealed, err := SealP256Share(rand.Reader, pub, sh, p256Context)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != SealedP256ShareSize {
		t.Fatalf("sealed share is %d bytes, want %d", len(sealed), SealedP256ShareSize)
	}
	if bytes.Contains(sealed, sh.Scalar) {
		t.Fatal("the sealed share contains the scalar")
	}
	got, err := OpenP256Share(priv, sealed, sh.Index, p256Context)
	if err != nil {
		t.Fatalf("OpenP256Share: %v", err)
	}
	if got.Index != sh.Index || !bytes.Equal(got.Scalar, sh.Scalar) {
		t.Fatal("round trip changed the share")
	}
	if err := CheckP256Share(got, f.publicShares[sh.Index]); err != nil {
		t.Fatal(err)
	}
	if err := CheckP256Share(got, f.publicShares[1]); !errors.Is(err, ErrBadShare) {
		t.Fatalf("CheckP256Share against another index's public share: %v", err)
	}

	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name    string
		priv    []byte
		sealed  []byte
		index   uint32
		context []byte
		want    error
	}{
		{"wrong key", otherPriv, sealed, sh.Index, p256Context, ErrDecrypt},
		{"wrong index", priv, sealed, 3, p256Context, ErrDecrypt},
		{"wrong context", priv, sealed, sh.Index, []byte("tang/other"), ErrDecrypt},
		{"tampered", priv, tampered, sh.Index, p256Context, ErrDecrypt},
		{"truncated", priv, sealed[:len(sealed)-1], sh.Index, p256Context, ErrDecrypt},
		{"small-order ephemeral", priv, append(make([]byte, 32), sealed[32:]...), sh.Index, p256Context, ErrInvalidPoint},
		{"index 0", priv, sealed, 0, p256Context, ErrInvalidIndex},
		{"bad private key", make([]byte, 32), sealed, sh.Index, p256Context, ErrInvalidScalar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenP256Share(tc.priv, tc.sealed, tc.index, tc.context); !errors.Is(err, tc.want) {
				t.Fatalf("OpenP256Share: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := SealP256Share(rand.Reader, make([]byte, 32), sh, p256Context); !errors.Is(err, ErrInvalidPoint) {
		t.Fatalf("sealing to an invalid key: %v", err)
	}
	if _, err := SealP256Share(rand.Reader, pub, &P256Share{Index: 1, Scalar: make([]byte, 32)}, p256Context); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("sealing a zero share: %v", err)
	}
}

func TestP256ErrorsCarryNoSecret(t *testing.T) {
	f := dealP256(t, 2, 1, 2, 3)
	sh := f.shares[0]
	_, err := ComputeP256Partial(rand.Reader, sh, []byte{0}, p256Context)
	if err == nil {
		t.Fatal("identity accepted")
	}
	if bytes.Contains([]byte(err.Error()), []byte(fmt.Sprintf("%x", sh.Scalar))) {
		t.Fatal("error contains the share")
	}
}

func TestP256ScalarArithmetic(t *testing.T) {
	// z = w - c*s mod n as ComputeP256Partial does it, against math/big.
	for range 50 {
		w, err := randomP256Scalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := randomP256Scalar(rand.Reader)
		c, _ := randomP256Scalar(rand.Reader)
		wb, sb, cb := w.Bytes(p256Order), s.Bytes(p256Order), c.Bytes(p256Order)
		c.Mul(s, p256Order)
		z := bigmod.NewNat().ExpandFor(p256Order)
		z.Add(w, p256Order).Sub(c, p256Order)
		want := new(big.Int).Mul(new(big.Int).SetBytes(cb), new(big.Int).SetBytes(sb))
		want.Sub(new(big.Int).SetBytes(wb), want).Mod(want, p256OrderBig)
		if !bytes.Equal(z.Bytes(p256Order), want.FillBytes(make([]byte, 32))) {
			t.Fatal("bigmod and math/big disagree")
		}
	}
}

func BenchmarkP256ComputePartial(b *testing.B) {
	f := dealP256(b, 2, 1, 2, 3)
	X := randomP256Point(b)
	for b.Loop() {
		if _, err := ComputeP256Partial(rand.Reader, f.shares[0], X, p256Context); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkP256VerifyPartial(b *testing.B) {
	f := dealP256(b, 2, 1, 2, 3)
	X := randomP256Point(b)
	p := p256Partials(b, f.shares[:1], X, p256Context)[0]
	for b.Loop() {
		if err := VerifyP256Partial(f.publicShares[1], X, p, p256Context); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkP256Combine(b *testing.B) {
	f := dealP256(b, 2, 1, 2, 3)
	X := randomP256Point(b)
	ps := p256Partials(b, f.shares[:2], X, p256Context)
	for b.Loop() {
		if _, err := CombineP256(ps, 2); err != nil {
			b.Fatal(err)
		}
	}
}
