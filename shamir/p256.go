package shamir

// Threshold Diffie-Hellman on P-256, for Tang keys (docs/protocols.md, Tang).
//
// A dealer picks a random secret s and a random polynomial f of degree t-1
// with f(0) = s over the scalars mod n (the order of P-256), and gives node
// i the share s_i = f(i). The Tang exchange public key is S = s*G and node
// i's public share is S_i = s_i*G. To answer a Tang recovery request for a
// client point X, each of t nodes returns the partial s_i*X with a
// Chaum-Pedersen proof that log_G(S_i) = log_X(s_i*X); the combiner checks
// the proofs and interpolates s*X = sum lambda_i s_i*X. s is never rebuilt.
//
// Points are 65-byte uncompressed SEC 1 encodings (0x04 || x || y); the
// compressed form and the 1-byte infinity encoding are refused, as are
// points not on the curve (P-256 has cofactor 1, so every point on the curve
// other than the identity has prime order n). Scalars are 32 bytes,
// big-endian, fully reduced mod n.
//
// Every multiplication by a secret scalar uses filippo.io/nistec (constant
// time) and all arithmetic on secret scalars uses filippo.io/bigmod
// (constant time). math/big is used only for public values: Lagrange
// coefficients of public indexes and the Fiat-Shamir challenge.

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"filippo.io/bigmod"
	"filippo.io/nistec"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

// Sizes of P-256 encodings.
const (
	// P256PointSize is the size of an uncompressed P-256 point.
	P256PointSize = 65
	// P256ScalarSize is the size of a P-256 scalar (big-endian, < n).
	P256ScalarSize = 32
	// SealedP256ShareSize is the size of a share sealed by SealP256Share.
	SealedP256ShareSize = PointSize + P256ScalarSize + chacha20poly1305.Overhead
)

const (
	p256DLEQLabel    = vocab.LabelP256DLEQ
	p256ShareADLabel = vocab.LabelP256Share
	// p256RandomTries bounds rejection sampling: a uniform 32-byte string
	// is >= n with probability about 2^-32, so reaching the bound means the
	// randomness source is broken.
	p256RandomTries = 8
)

// p256OrderHex is n, the order of the P-256 base point.
const p256OrderHex = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"

var (
	p256OrderBig = mustBigHex(p256OrderHex)
	p256Order    = mustModulus(p256OrderBig.FillBytes(make([]byte, P256ScalarSize)))
	p256GenBytes = nistec.NewP256Point().SetGenerator().Bytes()
)

func mustBigHex(h string) *big.Int {
	n, ok := new(big.Int).SetString(h, 16)
	if !ok {
		panic("shamir: bad P-256 order constant")
	}
	return n
}

func mustModulus(b []byte) *bigmod.Modulus {
	m, err := bigmod.NewModulus(b)
	if err != nil {
		panic("shamir: bad P-256 order modulus")
	}
	return m
}

// P256Share is one node's share of a P-256 secret: Scalar = f(Index), 32
// bytes big-endian, non-zero and reduced mod n. Index is the 1-based
// x-coordinate.
type P256Share struct {
	Index  uint32
	Scalar []byte
}

// Erase overwrites the share's scalar with zeros and drops it.
func (s *P256Share) Erase() {
	if s == nil {
		return
	}
	clear(s.Scalar)
	s.Scalar = nil
}

// P256Partial is one holder's contribution to s*X: Point = s_i*X, with a
// Chaum-Pedersen proof (challenge C, response Z, 32-byte scalars) that
// log_G(S_i) = log_X(Point).
type P256Partial struct {
	Index uint32
	Point []byte
	C, Z  []byte
}

// ValidateP256Point reports whether b is an acceptable P-256 public point:
// 65 bytes, uncompressed, on the curve (hence not the identity, which has
// no uncompressed encoding).
func ValidateP256Point(b []byte) error {
	_, err := decodeP256Point(b)
	return err
}

// decodeP256Point decodes a point received from outside. nistec's SetBytes
// also takes the compressed form and the 1-byte infinity encoding; both are
// refused here before it is called.
func decodeP256Point(b []byte) (*nistec.P256Point, error) {
	switch {
	case len(b) == 1 && b[0] == 0:
		return nil, fmt.Errorf("%w: P-256 identity (point at infinity)", ErrInvalidPoint)
	case len(b) == 1+P256ScalarSize && (b[0] == 2 || b[0] == 3):
		return nil, fmt.Errorf("%w: compressed P-256 point; the 65-byte uncompressed form is required", ErrInvalidPoint)
	case len(b) != P256PointSize:
		return nil, fmt.Errorf("%w: %d bytes, want a %d-byte uncompressed P-256 point", ErrInvalidPoint, len(b), P256PointSize)
	case b[0] != 4:
		return nil, fmt.Errorf("%w: P-256 point prefix 0x%02x, want 0x04 (uncompressed)", ErrInvalidPoint, b[0])
	}
	p, err := nistec.NewP256Point().SetBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not on P-256", ErrInvalidPoint)
	}
	return p, nil
}

// p256PointBytes encodes a computed point, refusing the identity.
func p256PointBytes(p *nistec.P256Point, what string) ([]byte, error) {
	b := p.Bytes()
	if len(b) != P256PointSize {
		return nil, fmt.Errorf("%w: %s is the identity", ErrInvalidPoint, what)
	}
	return b, nil
}

// decodeP256Scalar decodes a 32-byte scalar < n.
func decodeP256Scalar(b []byte) (*bigmod.Nat, error) {
	if len(b) != P256ScalarSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidScalar, len(b), P256ScalarSize)
	}
	x, err := bigmod.NewNat().SetBytes(b, p256Order)
	if err != nil {
		return nil, fmt.Errorf("%w: not reduced modulo the P-256 order", ErrInvalidScalar)
	}
	return x, nil
}

// decodeP256SecretScalar decodes a non-zero 32-byte scalar < n.
func decodeP256SecretScalar(b []byte) (*bigmod.Nat, error) {
	x, err := decodeP256Scalar(b)
	if err != nil {
		return nil, err
	}
	if x.IsZero() == 1 {
		return nil, fmt.Errorf("%w: zero", ErrInvalidScalar)
	}
	return x, nil
}

// randomP256Scalar draws a uniform non-zero scalar by rejection sampling.
func randomP256Scalar(rand io.Reader) (*bigmod.Nat, error) {
	if rand == nil {
		return nil, errors.New("shamir: nil randomness source")
	}
	var buf [P256ScalarSize]byte
	defer clear(buf[:])
	for range p256RandomTries {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return nil, fmt.Errorf("shamir: reading randomness: %w", err)
		}
		x, err := bigmod.NewNat().SetBytes(buf[:], p256Order)
		if err != nil {
			continue
		}
		if x.IsZero() == 1 {
			continue
		}
		return x, nil
	}
	return nil, errors.New("shamir: randomness source returned degenerate values")
}

// p256NatFromUint32 returns a small public value as a scalar.
func p256NatFromUint32(v uint32) *bigmod.Nat {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	x, err := bigmod.NewNat().SetBytes(b[:], p256Order)
	if err != nil {
		panic("shamir: a 32-bit integer overflows the P-256 order")
	}
	return x
}

// wipeNat overwrites a secret scalar with zero.
func wipeNat(x *bigmod.Nat) {
	if x != nil {
		x.SetUint(0)
	}
}

// DealP256 makes a fresh random secret s and splits it t-of-n over the
// given share indexes (distinct, non-zero). It returns the public key
// S = s*G, one share per index (in the order given) and each index's public
// share S_i = s_i*G, all points 65-byte uncompressed. The secret and the
// polynomial are overwritten before it returns; the caller must seal each
// share to its holder (SealP256Share) and Erase it.
func DealP256(rand io.Reader, t int, indexes []uint32) (pub []byte, shares []*P256Share, publicShares map[uint32][]byte, err error) {
	if t < 1 || t > len(indexes) {
		return nil, nil, nil, fmt.Errorf("%w: t=%d with %d share indexes", ErrBadThreshold, t, len(indexes))
	}
	if err := checkIndexes(indexes); err != nil {
		return nil, nil, nil, fmt.Errorf("share indexes: %w", err)
	}
	coeffs := make([]*bigmod.Nat, t)
	defer func() {
		for _, c := range coeffs {
			wipeNat(c)
		}
	}()
	for j := range coeffs {
		if coeffs[j], err = randomP256Scalar(rand); err != nil {
			return nil, nil, nil, err
		}
	}
	s0 := coeffs[0].Bytes(p256Order)
	P, err := nistec.NewP256Point().ScalarBaseMult(s0)
	clear(s0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("shamir: P-256 base multiplication: %w", err)
	}
	if pub, err = p256PointBytes(P, "public key"); err != nil {
		return nil, nil, nil, err
	}

	shares = make([]*P256Share, 0, len(indexes))
	publicShares = make(map[uint32][]byte, len(indexes))
	fail := func(err error) ([]byte, []*P256Share, map[uint32][]byte, error) {
		for _, sh := range shares {
			sh.Erase()
		}
		return nil, nil, nil, err
	}
	for _, x := range indexes {
		// Horner's rule: f(x) = a_0 + x*(a_1 + x*(... + x*a_{t-1})).
		xi := p256NatFromUint32(x)
		acc := bigmod.NewNat().ExpandFor(p256Order)
		for j := t - 1; j >= 0; j-- {
			acc.Mul(xi, p256Order)
			acc.Add(coeffs[j], p256Order)
		}
		if acc.IsZero() == 1 {
			return fail(fmt.Errorf("shamir: share %d is zero; deal again", x))
		}
		sh := &P256Share{Index: x, Scalar: acc.Bytes(p256Order)}
		wipeNat(acc)
		shares = append(shares, sh)
		Si, err := nistec.NewP256Point().ScalarBaseMult(sh.Scalar)
		if err != nil {
			return fail(fmt.Errorf("shamir: P-256 base multiplication: %w", err))
		}
		if publicShares[x], err = p256PointBytes(Si, "public share"); err != nil {
			return fail(err)
		}
	}
	return pub, shares, publicShares, nil
}

// P256PublicShare returns S_i = s_i*G for a share.
func P256PublicShare(sh *P256Share) ([]byte, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil P-256 share", ErrInvalidScalar)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if _, err := decodeP256SecretScalar(sh.Scalar); err != nil {
		return nil, fmt.Errorf("P-256 share %d: %w", sh.Index, err)
	}
	P, err := nistec.NewP256Point().ScalarBaseMult(sh.Scalar)
	if err != nil {
		return nil, fmt.Errorf("shamir: P-256 base multiplication: %w", err)
	}
	return p256PointBytes(P, "public share")
}

// CheckP256Share checks a private share against its public share:
// Scalar*G == publicShare. A holder runs it after OpenP256Share.
func CheckP256Share(sh *P256Share, publicShare []byte) error {
	if _, err := decodeP256Point(publicShare); err != nil {
		return fmt.Errorf("public share: %w", err)
	}
	got, err := P256PublicShare(sh)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, publicShare) != 1 {
		return fmt.Errorf("P-256 share %d: %w", sh.Index, ErrBadShare)
	}
	return nil
}

// CheckP256PublicShares checks that the public shares are those of one
// t-of-n sharing of the secret behind pub: that all the points
// (i, S_i) lie on a single polynomial of degree at most t-1 in the
// exponent, whose value at 0 is pub. It interpolates from the t smallest
// indexes to 0 and to every other index, so the check is complete: when it
// passes, every t-subset of the shares interpolates to pub. Every point must
// be valid, and there must be at least t public shares.
func CheckP256PublicShares(pub []byte, t int, publicShares map[uint32][]byte) error {
	P, err := decodeP256Point(pub)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	if t < 1 || t > len(publicShares) {
		return fmt.Errorf("%w: t=%d with %d public shares", ErrBadThreshold, t, len(publicShares))
	}
	idx := make([]uint32, 0, len(publicShares))
	pts := make(map[uint32]*nistec.P256Point, len(publicShares))
	for i, b := range publicShares {
		if i == 0 {
			return fmt.Errorf("public share: %w: 0", ErrInvalidIndex)
		}
		p, err := decodeP256Point(b)
		if err != nil {
			return fmt.Errorf("public share %d: %w", i, err)
		}
		idx = append(idx, i)
		pts[i] = p
	}
	slices.Sort(idx)
	basis := idx[:t]
	basisPts := make([]*nistec.P256Point, t)
	for k, i := range basis {
		basisPts[k] = pts[i]
	}
	check := func(at uint32, want *nistec.P256Point, what string) error {
		got, err := p256Interpolate(basis, basisPts, at)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(got.Bytes(), want.Bytes()) != 1 {
			return fmt.Errorf("%w: %s does not lie on the polynomial of public shares %v", ErrBadShare, what, basis)
		}
		return nil
	}
	if err := check(0, P, "the public key"); err != nil {
		return err
	}
	for _, i := range idx[t:] {
		if err := check(i, pts[i], fmt.Sprintf("public share %d", i)); err != nil {
			return err
		}
	}
	return nil
}

// p256Lagrange returns the Lagrange coefficients, as 32-byte scalars, for
// evaluating at x = at the polynomial through the given distinct, non-zero
// x-coordinates: lambda_i = prod_{j != i} (at - x_j) / (x_i - x_j) mod n.
// The indexes are public, so math/big is fine.
func p256Lagrange(xs []uint32, at uint32) ([][]byte, error) {
	if len(xs) == 0 {
		return nil, fmt.Errorf("%w: no indexes", ErrNotEnoughPartials)
	}
	if err := checkIndexes(xs); err != nil {
		return nil, err
	}
	n := p256OrderBig
	a := new(big.Int).SetUint64(uint64(at))
	out := make([][]byte, len(xs))
	for i, xi := range xs {
		num := big.NewInt(1)
		den := big.NewInt(1)
		bi := new(big.Int).SetUint64(uint64(xi))
		for j, xj := range xs {
			if i == j {
				continue
			}
			bj := new(big.Int).SetUint64(uint64(xj))
			num.Mul(num, new(big.Int).Sub(a, bj))
			num.Mod(num, n)
			den.Mul(den, new(big.Int).Sub(bi, bj))
			den.Mod(den, n)
		}
		if den.ModInverse(den, n) == nil {
			return nil, fmt.Errorf("%w: indexes %v are not invertible mod n", ErrInvalidIndex, xs)
		}
		num.Mul(num, den).Mod(num, n)
		out[i] = num.FillBytes(make([]byte, P256ScalarSize))
	}
	return out, nil
}

// p256Interpolate returns sum lambda_i(at) * pts[i].
func p256Interpolate(xs []uint32, pts []*nistec.P256Point, at uint32) (*nistec.P256Point, error) {
	lambdas, err := p256Lagrange(xs, at)
	if err != nil {
		return nil, err
	}
	acc := nistec.NewP256Point()
	term := nistec.NewP256Point()
	for k, l := range lambdas {
		if _, err := term.ScalarMult(pts[k], l); err != nil {
			return nil, fmt.Errorf("shamir: P-256 multiplication: %w", err)
		}
		acc.Add(acc, term)
	}
	return acc, nil
}

// p256Challenge is the Fiat-Shamir challenge of the DLEQ proof:
// SHA-512("keyquorum/p256-dleq/v1", G, X, S_i, V, A1, A2, index,
// len(context), context) reduced mod n, as 32 bytes. Points are hashed as
// their 65-byte encodings; an identity (which no honest prover produces)
// is hashed as 65 zero bytes so that every field has a fixed length.
func p256Challenge(X, Si, V []byte, A1, A2 *nistec.P256Point, index uint32, context []byte) []byte {
	h := sha512.New()
	h.Write([]byte(p256DLEQLabel))
	h.Write(p256GenBytes)
	h.Write(X)
	h.Write(Si)
	h.Write(V)
	for _, A := range []*nistec.P256Point{A1, A2} {
		b := A.Bytes()
		if len(b) != P256PointSize {
			b = make([]byte, P256PointSize)
		}
		h.Write(b)
	}
	var buf [12]byte
	binary.BigEndian.PutUint32(buf[:4], index)
	binary.BigEndian.PutUint64(buf[4:], uint64(len(context)))
	h.Write(buf[:])
	h.Write(context)
	c := new(big.Int).SetBytes(h.Sum(nil))
	return c.Mod(c, p256OrderBig).FillBytes(make([]byte, P256ScalarSize))
}

// ComputeP256Partial returns Point = s_i*X with a DLEQ proof that
// log_G(S_i) = log_X(Point), S_i = s_i*G. X is checked (uncompressed, on the
// curve, not the identity) before the secret multiplication. context
// (request id, key name, ...) is bound into the proof and must be given
// again to VerifyP256Partial.
func ComputeP256Partial(rand io.Reader, sh *P256Share, X []byte, context []byte) (*P256Partial, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil P-256 share", ErrInvalidScalar)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	Xp, err := decodeP256Point(X)
	if err != nil {
		return nil, fmt.Errorf("point X: %w", err)
	}
	s, err := decodeP256SecretScalar(sh.Scalar)
	if err != nil {
		return nil, fmt.Errorf("P-256 share %d: %w", sh.Index, err)
	}
	defer wipeNat(s)
	w, err := randomP256Scalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeNat(w)
	wb := w.Bytes(p256Order)
	defer clear(wb)

	V, err := nistec.NewP256Point().ScalarMult(Xp, sh.Scalar)
	if err != nil {
		return nil, fmt.Errorf("shamir: P-256 multiplication: %w", err)
	}
	Vb, err := p256PointBytes(V, "partial")
	if err != nil {
		return nil, err
	}
	S, err := nistec.NewP256Point().ScalarBaseMult(sh.Scalar)
	if err != nil {
		return nil, fmt.Errorf("shamir: P-256 base multiplication: %w", err)
	}
	A1, err := nistec.NewP256Point().ScalarBaseMult(wb)
	if err != nil {
		return nil, fmt.Errorf("shamir: P-256 base multiplication: %w", err)
	}
	A2, err := nistec.NewP256Point().ScalarMult(Xp, wb)
	if err != nil {
		return nil, fmt.Errorf("shamir: P-256 multiplication: %w", err)
	}
	c := p256Challenge(X, S.Bytes(), Vb, A1, A2, sh.Index, context)
	cN, err := decodeP256Scalar(c)
	if err != nil {
		return nil, err
	}
	// z = w - c*s mod n, in constant time.
	cN.Mul(s, p256Order)
	z := w.Sub(cN, p256Order)
	zb := z.Bytes(p256Order)
	wipeNat(cN)
	return &P256Partial{Index: sh.Index, Point: Vb, C: c, Z: zb}, nil
}

// VerifyP256Partial checks a partial against the holder's public share S_i
// and the client point X: Point must be a valid point, C and Z canonical
// scalars, and C must equal the challenge recomputed here from
// A1 = Z*G + C*S_i and A2 = Z*X + C*Point. context must be the one the
// partial was computed with.
func VerifyP256Partial(publicShare, X []byte, p *P256Partial, context []byte) error {
	if p == nil {
		return fmt.Errorf("%w: nil P-256 partial", ErrBadProof)
	}
	if p.Index == 0 {
		return fmt.Errorf("P-256 partial: %w: 0", ErrInvalidIndex)
	}
	Si, err := decodeP256Point(publicShare)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: public share: %w", p.Index, err)
	}
	Xp, err := decodeP256Point(X)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: point X: %w", p.Index, err)
	}
	V, err := decodeP256Point(p.Point)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: point: %w", p.Index, err)
	}
	if _, err := decodeP256Scalar(p.C); err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: challenge: %w", p.Index, ErrBadProof, err)
	}
	if _, err := decodeP256Scalar(p.Z); err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: response: %w", p.Index, ErrBadProof, err)
	}
	// The scalars here are public; nistec's constant-time routines are
	// simply the ones at hand.
	A1, err := nistec.NewP256Point().ScalarBaseMult(p.Z)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: response: %w", p.Index, ErrBadProof, err)
	}
	cS, err := nistec.NewP256Point().ScalarMult(Si, p.C)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: challenge: %w", p.Index, ErrBadProof, err)
	}
	A1.Add(A1, cS)
	A2, err := nistec.NewP256Point().ScalarMult(Xp, p.Z)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: response: %w", p.Index, ErrBadProof, err)
	}
	cV, err := nistec.NewP256Point().ScalarMult(V, p.C)
	if err != nil {
		return fmt.Errorf("P-256 partial from %d: %w: challenge: %w", p.Index, ErrBadProof, err)
	}
	A2.Add(A2, cV)
	want := p256Challenge(X, publicShare, p.Point, A1, A2, p.Index, context)
	if subtle.ConstantTimeCompare(want, p.C) != 1 {
		return fmt.Errorf("P-256 partial from %d: %w", p.Index, ErrBadProof)
	}
	return nil
}

// CombineP256 interpolates, in the exponent at 0, the first t partials
// (which must have distinct, non-zero indexes and valid points) and returns
// s*X, 65-byte uncompressed. It does not check the proofs: verify each
// partial with VerifyP256Partial first. Partials after the first t are not
// examined.
func CombineP256(partials []*P256Partial, t int) ([]byte, error) {
	if t < 1 {
		return nil, fmt.Errorf("%w: t=%d", ErrBadThreshold, t)
	}
	if len(partials) < t {
		return nil, fmt.Errorf("%w: %d P-256 partials, need %d", ErrNotEnoughPartials, len(partials), t)
	}
	idx := make([]uint32, t)
	pts := make([]*nistec.P256Point, t)
	for k, p := range partials[:t] {
		if p == nil {
			return nil, fmt.Errorf("%w: P-256 partial %d is nil", ErrNotEnoughPartials, k)
		}
		V, err := decodeP256Point(p.Point)
		if err != nil {
			return nil, fmt.Errorf("P-256 partial from %d: %w", p.Index, err)
		}
		idx[k] = p.Index
		pts[k] = V
	}
	K, err := p256Interpolate(idx, pts, 0)
	if err != nil {
		return nil, err
	}
	return p256PointBytes(K, "combined point")
}

// p256ShareAD is the associated data of a sealed P-256 share.
func p256ShareAD(index uint32, context []byte) []byte {
	ad := make([]byte, 0, len(p256ShareADLabel)+12+len(context))
	ad = append(ad, p256ShareADLabel...)
	ad = binary.BigEndian.AppendUint32(ad, index)
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(context)))
	return append(ad, context...)
}

// SealP256Share encrypts a share to a node's edwards25519 encryption public
// key (GenerateEncryptionKey), the way deals encrypt sub-shares: a fresh
// ephemeral key E, HKDF-SHA256 of the Diffie-Hellman result and
// ChaCha20-Poly1305, with associated data binding a label, the share index
// and context (key name, epoch, ...). The result is SealedP256ShareSize
// bytes: E || ciphertext || tag.
func SealP256Share(rand io.Reader, encPub []byte, sh *P256Share, context []byte) ([]byte, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil P-256 share", ErrInvalidScalar)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if _, err := decodeP256SecretScalar(sh.Scalar); err != nil {
		return nil, fmt.Errorf("P-256 share %d: %w", sh.Index, err)
	}
	pub, err := decodePoint(encPub)
	if err != nil {
		return nil, fmt.Errorf("encryption public key: %w", err)
	}
	return encryptSubshare(rand, pub, sh.Scalar, p256ShareAD(sh.Index, context))
}

// OpenP256Share decrypts a share sealed by SealP256Share with the node's
// encryption private key; index and context must be those it was sealed
// with. A wrong key, index, context or a tampered ciphertext gives
// ErrDecrypt. Check the result against the share's public share with
// CheckP256Share.
func OpenP256Share(encPriv []byte, sealed []byte, index uint32, context []byte) (*P256Share, error) {
	if index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if len(sealed) != SealedP256ShareSize {
		return nil, fmt.Errorf("%w: sealed P-256 share is %d bytes, want %d", ErrDecrypt, len(sealed), SealedP256ShareSize)
	}
	v, err := openSubshare(encPriv, sealed, p256ShareAD(index, context))
	if err != nil {
		return nil, fmt.Errorf("P-256 share %d: %w", index, err)
	}
	if _, err := decodeP256SecretScalar(v); err != nil {
		clear(v)
		return nil, fmt.Errorf("P-256 share %d: %w: %w", index, ErrBadShare, err)
	}
	return &P256Share{Index: index, Scalar: v}, nil
}
