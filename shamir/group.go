package shamir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"go.dedis.ch/kyber/v3"
	kybered "go.dedis.ch/kyber/v3/group/edwards25519"
)

// Encoding sizes. A point is the 32-byte compressed edwards25519 encoding
// (RFC 8032 5.1.2, as for Ed25519 public keys and kyber's MarshalBinary); a
// scalar is 32 bytes, little-endian, fully reduced modulo the group order
// (kyber's encoding, filippo.io/edwards25519 SetCanonicalBytes).
const (
	PointSize  = 32
	ScalarSize = 32
)

// suite is the kyber group used for polynomials, dealing and resharing.
var suite = kybered.NewBlakeSHA256Ed25519()

var (
	identityPoint = edwards25519.NewIdentityPoint()
	zeroScalar    = edwards25519.NewScalar()
	// minusOne is l-1, so that (l-1)*P + P = l*P.
	minusOne = edwards25519.NewScalar().Subtract(edwards25519.NewScalar(), scalarFromUint32(1))
)

// ValidatePoint reports whether b is an acceptable public point: 32 bytes,
// on the curve, canonically encoded, and in the prime-order subgroup (so
// neither the identity nor any point with a small-order component). Use it
// to check encryption keys, ciphertexts and public keys when they are first
// received.
func ValidatePoint(b []byte) error {
	_, err := decodePoint(b)
	return err
}

// decodePoint decodes a point that comes from outside and may be multiplied
// by a secret or trusted as a public key: canonical, not small order, and in
// the prime-order subgroup (l*P == identity).
func decodePoint(b []byte) (*edwards25519.Point, error) {
	p, err := decodePointNoSubgroup(b)
	if err != nil {
		return nil, err
	}
	if !torsionFree(p) {
		return nil, fmt.Errorf("%w: not in the prime-order subgroup", ErrInvalidPoint)
	}
	return p, nil
}

// A ciphertext's R comes back with every release of its key: the
// holders' ComputePartial and the combiner's NewVerifier check it again
// and again. decodeCiphertextPoint is decodePoint for such points: the
// subgroup check, the costly one, is done once per process for an
// encoding (checkedPoints remembers the ones that passed, never a
// failure); the cheap checks are done every time.
const checkedPointsSize = 1024

var checkedPoints = struct {
	sync.Mutex
	ok map[[PointSize]byte]struct{}
}{ok: map[[PointSize]byte]struct{}{}}

func decodeCiphertextPoint(b []byte) (*edwards25519.Point, error) {
	p, err := decodePointNoSubgroup(b)
	if err != nil {
		return nil, err
	}
	k := [PointSize]byte(b)
	checkedPoints.Lock()
	_, ok := checkedPoints.ok[k]
	checkedPoints.Unlock()
	if ok {
		return p, nil
	}
	if !torsionFree(p) {
		return nil, fmt.Errorf("%w: not in the prime-order subgroup", ErrInvalidPoint)
	}
	checkedPoints.Lock()
	if len(checkedPoints.ok) >= checkedPointsSize {
		clear(checkedPoints.ok)
	}
	checkedPoints.ok[k] = struct{}{}
	checkedPoints.Unlock()
	return p, nil
}

// decodePointNoSubgroup performs the cheap checks only: length, on the
// curve, canonical, 8*P != identity. It is used for values the caller
// already trusts (commitments of a validated public polynomial, points
// handed to CombinePoints as already verified).
func decodePointNoSubgroup(b []byte) (*edwards25519.Point, error) {
	if len(b) != PointSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPoint, len(b), PointSize)
	}
	// filippo.io/edwards25519 accepts non-canonical encodings (y >= p, and
	// x = 0 with the sign bit set); kyber's encoder never produces them.
	// y >= p is refused here, on the bytes; x = 0 only for y = 1 or -1,
	// the identity and the point of order 2, which the cofactor check
	// below refuses. So b is accepted only if it is p's encoding, without
	// the field inversion that encoding p again to compare would cost.
	if !canonicalY(b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalidPoint)
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not on the curve", ErrInvalidPoint)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(identityPoint) == 1 {
		return nil, fmt.Errorf("%w: identity or small-order point", ErrInvalidPoint)
	}
	return p, nil
}

// canonicalY reports whether the y coordinate of the 32-byte encoding b
// (its low 255 bits, little-endian) is below p = 2^255-19.
func canonicalY(b []byte) bool {
	if b[31]&0x7f != 0x7f {
		return true
	}
	for i := 30; i >= 1; i-- {
		if b[i] != 0xff {
			return true
		}
	}
	return b[0] < 0xed
}

// encodePoints encodes points as Point.Bytes does, with one field
// inversion for all of them (Montgomery's trick) instead of one each.
func encodePoints(ps ...*edwards25519.Point) [][]byte {
	zs := make([]field.Element, len(ps))
	xs := make([]field.Element, len(ps))
	ys := make([]field.Element, len(ps))
	prefix := make([]field.Element, len(ps)) // z_0 * ... * z_i
	var acc field.Element
	acc.One()
	for i, p := range ps {
		x, y, z, _ := p.ExtendedCoordinates()
		xs[i], ys[i], zs[i] = *x, *y, *z
		acc.Multiply(&acc, &zs[i])
		prefix[i] = acc
	}
	var inv, zInv, x, y field.Element
	inv.Invert(&acc) // 1 / (z_0 * ... * z_n-1)
	out := make([][]byte, len(ps))
	for i := len(ps) - 1; i >= 0; i-- {
		if i > 0 {
			zInv.Multiply(&inv, &prefix[i-1])
			inv.Multiply(&inv, &zs[i])
		} else {
			zInv = inv
		}
		x.Multiply(&xs[i], &zInv)
		y.Multiply(&ys[i], &zInv)
		b := y.Bytes()
		b[31] |= byte(x.IsNegative() << 7)
		out[i] = b
	}
	return out
}

// torsionFree reports whether l*p is the identity. p is public, so a
// variable-time multiplication is fine.
func torsionFree(p *edwards25519.Point) bool {
	q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(minusOne, p, zeroScalar)
	q.Add(q, p)
	return q.Equal(identityPoint) == 1
}

// decodeScalar decodes a canonical scalar.
func decodeScalar(b []byte) (*edwards25519.Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidScalar, len(b), ScalarSize)
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not reduced modulo the group order", ErrInvalidScalar)
	}
	return s, nil
}

// decodeSecretScalar decodes a canonical, non-zero secret scalar.
func decodeSecretScalar(b []byte) (*edwards25519.Scalar, error) {
	s, err := decodeScalar(b)
	if err != nil {
		return nil, err
	}
	if s.Equal(zeroScalar) == 1 {
		return nil, fmt.Errorf("%w: zero", ErrInvalidScalar)
	}
	return s, nil
}

// randomScalar draws a uniform non-zero scalar from 64 bytes of rand.
func randomScalar(rand io.Reader) (*edwards25519.Scalar, error) {
	if rand == nil {
		return nil, errors.New("shamir: nil randomness source")
	}
	var buf [64]byte
	defer clear(buf[:])
	if _, err := io.ReadFull(rand, buf[:]); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(buf[:])
	if err != nil {
		return nil, err
	}
	if s.Equal(zeroScalar) == 1 {
		return nil, errors.New("shamir: randomness source returned a degenerate value")
	}
	return s, nil
}

// wipeScalar overwrites a secret scalar with zero.
func wipeScalar(s *edwards25519.Scalar) {
	if s != nil {
		s.Set(zeroScalar)
	}
}

func scalarFromUint32(v uint32) *edwards25519.Scalar {
	var b [ScalarSize]byte
	binary.LittleEndian.PutUint32(b[:4], v)
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("shamir: small integer is not a canonical scalar")
	}
	return s
}

// mulSmall returns k*p by double-and-add over the significant bits of k.
// k is public (a share index, a small Lagrange coefficient), p a public
// point, so variable time is fine; this is much faster than a full
// 256-bit multiplication.
func mulSmall(p *edwards25519.Point, k uint32) *edwards25519.Point {
	r := edwards25519.NewIdentityPoint()
	for bit := bits.Len32(k) - 1; bit >= 0; bit-- {
		r.Add(r, r)
		if k>>uint(bit)&1 == 1 {
			r.Add(r, p)
		}
	}
	return r
}

// checkIndexes rejects index 0 and duplicates.
func checkIndexes(xs []uint32) error {
	seen := make(map[uint32]bool, len(xs))
	for _, x := range xs {
		if x == 0 {
			return fmt.Errorf("%w: 0", ErrInvalidIndex)
		}
		if seen[x] {
			return fmt.Errorf("%w: %d", ErrDuplicateIndex, x)
		}
		seen[x] = true
	}
	return nil
}

// smallInt returns s as an integer k with s = k or s = -k modulo the
// group order, if |k| < 2^32, and which sign.
func smallInt(s *edwards25519.Scalar) (k uint32, negative, ok bool) {
	for _, neg := range []bool{false, true} {
		v := s
		if neg {
			v = edwards25519.NewScalar().Negate(s)
		}
		b := v.Bytes()
		if !slices.ContainsFunc(b[4:], func(c byte) bool { return c != 0 }) {
			return binary.LittleEndian.Uint32(b[:4]), neg, true
		}
	}
	return 0, false, false
}

// lagrangeAtZero returns the Lagrange coefficients for interpolating at x=0
// from the given distinct, non-zero x-coordinates:
// lambda_i = prod_{j != i} x_j / (x_j - x_i).
func lagrangeAtZero(xs []uint32) ([]*edwards25519.Scalar, error) {
	if len(xs) == 0 {
		return nil, fmt.Errorf("%w: no indexes", ErrNotEnoughPartials)
	}
	if err := checkIndexes(xs); err != nil {
		return nil, err
	}
	sx := make([]*edwards25519.Scalar, len(xs))
	for i, x := range xs {
		sx[i] = scalarFromUint32(x)
	}
	out := make([]*edwards25519.Scalar, len(xs))
	for i := range xs {
		num := scalarFromUint32(1)
		den := scalarFromUint32(1)
		diff := edwards25519.NewScalar()
		for j := range xs {
			if i == j {
				continue
			}
			num.Multiply(num, sx[j])
			diff.Subtract(sx[j], sx[i])
			den.Multiply(den, diff)
		}
		out[i] = num.Multiply(num, den.Invert(den))
	}
	return out, nil
}

// kyberIndex converts a 1-based index to kyber's 0-based share index
// (kyber evaluates at x = I+1).
func kyberIndex(x uint32) (int, error) {
	if x == 0 {
		return 0, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if uint64(x-1) > math.MaxInt {
		return 0, fmt.Errorf("%w: %d does not fit this platform's int", ErrInvalidIndex, x)
	}
	return int(x - 1), nil
}

// toKyberScalar copies a filippo scalar into a kyber scalar (same encoding).
func toKyberScalar(s *edwards25519.Scalar) kyber.Scalar {
	b := s.Bytes()
	defer clear(b)
	k := suite.Scalar()
	if err := k.UnmarshalBinary(b); err != nil {
		panic("shamir: kyber rejected a 32-byte scalar")
	}
	return k
}

// kyberScalarBytes encodes a kyber scalar as 32 canonical bytes.
func kyberScalarBytes(k kyber.Scalar) ([]byte, error) {
	b, err := k.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(b) != ScalarSize {
		clear(b)
		return nil, fmt.Errorf("%w: kyber produced %d bytes", ErrInvalidScalar, len(b))
	}
	return b, nil
}

// toKyberPoint converts an already validated filippo point to kyber.
func toKyberPoint(p *edwards25519.Point) kyber.Point {
	k := suite.Point()
	if err := k.UnmarshalBinary(p.Bytes()); err != nil {
		panic("shamir: kyber rejected a valid point")
	}
	return k
}

// kyberPointBytes encodes a kyber point and re-validates it with the strict
// decoder's cheap checks (a sum of prime-order points is prime-order, so only
// the identity can appear).
func kyberPointBytes(k kyber.Point) ([]byte, error) {
	b, err := k.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := decodePointNoSubgroup(b); err != nil {
		return nil, err
	}
	return b, nil
}

// decodePoints strictly decodes a list of points.
func decodePoints(bs [][]byte, what string) ([]*edwards25519.Point, error) {
	out := make([]*edwards25519.Point, len(bs))
	for i, b := range bs {
		p, err := decodePoint(b)
		if err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, i, err)
		}
		out[i] = p
	}
	return out, nil
}

func cloneBytes(bs [][]byte) [][]byte {
	out := make([][]byte, len(bs))
	for i, b := range bs {
		out[i] = slices.Clone(b)
	}
	return out
}
