package shamir

import (
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// X25519 by quorum (docs/transit.md, "Exchange"): RFC 7748's X25519(k, u)
// for a key k dealt as an edwards25519 scalar s, so that t holders'
// partials s_i*Q combine to the shared secret.
//
// The Montgomery curve of X25519 and edwards25519 are birationally
// equivalent (u = (1+y)/(1-y), y = (u-1)/(u+1)), a group isomorphism, and
// X25519's output depends on u alone, so for a peer's u whose point P is
// on the curve (either sign of x) X25519(k, u) = u(k*P). RFC 7748 clamps
// k: 8 divides it and 2^254 <= k < 2^255, so k = 8m with m < 2^252 < l.
// Q = 8*P is in the prime-order subgroup (the group has order 8l), so
//
//	k*P = m*(8*P) = m*Q = s*Q   with s = m = clamp(k)/8 (= clamp(k)*8^-1 mod l)
//
// and the key's X25519 public key X25519(k, 9) = u(k*B) = u(s*8*B) =
// u(8*S) for S = s*B. A key drawn as a random s has the same property
// with the (unclamped) scalar 8s: the peer's X25519(b, u(8*S)) =
// u(b*8*s*B) = u(s*Q_b) for its public u(b*B). Holders answer s_i*Q for
// the Q each computes from u itself (X25519PeerPoint), never a point the
// caller chose.

// X25519Size is the size of an X25519 key, u coordinate or shared secret.
const X25519Size = 32

// Errors of the X25519 mapping.
var (
	// ErrX25519Twist: u is on the curve's quadratic twist, or is -1 (no
	// Edwards point). RFC 7748 computes an output for such u; an honest
	// peer's public key, X25519(b, 9), is never one.
	ErrX25519Twist = errors.New("shamir: the X25519 public key is not on curve25519 (a twist point or u = -1): no honest peer has it")
	// ErrX25519LowOrder: u's point has small order (u = 0, 1, and the
	// other points of order 2, 4 or 8): the shared secret would be all
	// zeros (RFC 7748 section 6.1's check).
	ErrX25519LowOrder = errors.New("shamir: the X25519 public key is a low-order point: the shared secret would be all zeros")
)

var feOne = new(field.Element).One()

// X25519PeerPoint maps a peer's X25519 public key u (32 bytes, RFC 7748:
// the top bit ignored, non-canonical values reduced) to Q = 8*P, P the
// edwards25519 point with y = (u-1)/(u+1) and either sign of x: the
// point a holder multiplies by its share. It refuses u on the twist,
// u = -1 (ErrX25519Twist) and low-order points (ErrX25519LowOrder).
func X25519PeerPoint(u []byte) ([]byte, error) {
	Q, err := x25519PeerPoint(u)
	if err != nil {
		return nil, err
	}
	return Q.Bytes(), nil
}

// x25519PeerPoint is X25519PeerPoint's point, not encoded.
func x25519PeerPoint(u []byte) (*edwards25519.Point, error) {
	if len(u) != X25519Size {
		return nil, fmt.Errorf("%w: an X25519 public key is %d bytes, not %d", ErrInvalidPoint, X25519Size, len(u))
	}
	fu, err := new(field.Element).SetBytes(u) // masks bit 255, reduces mod p
	if err != nil {
		return nil, err
	}
	den := new(field.Element).Add(fu, feOne)
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, ErrX25519Twist
	}
	y := new(field.Element).Subtract(fu, feOne)
	y.Multiply(y, den.Invert(den))
	// x^2 = (y^2-1)/(d*y^2+1) is a square exactly when u is on the
	// curve, not on the twist: SetBytes decodes it or fails (x's sign
	// bit 0; X25519 does not depend on it).
	P, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		return nil, ErrX25519Twist
	}
	Q := new(edwards25519.Point).MultByCofactor(P)
	if Q.Equal(identityPoint) == 1 {
		return nil, ErrX25519LowOrder
	}
	return Q, nil
}

// X25519Output is the shared secret u(K) of K = s*Q (the combination of
// verified partials), refusing an all-zero result (RFC 7748 section 6.1).
func X25519Output(K []byte) ([]byte, error) {
	p, err := new(edwards25519.Point).SetBytes(K)
	if err != nil || len(K) != PointSize {
		return nil, fmt.Errorf("%w: the combined point", ErrInvalidPoint)
	}
	u := p.BytesMontgomery()
	if isZero(u) {
		return nil, ErrX25519LowOrder
	}
	return u, nil
}

// X25519PublicKey is the X25519 public key u(8*S) of the transit key
// version whose public key (edwards25519, Commits[0]) is public: what a
// peer exchanges with.
func X25519PublicKey(public []byte) ([]byte, error) {
	S, err := decodePoint(public)
	if err != nil {
		return nil, err
	}
	return new(edwards25519.Point).MultByCofactor(S).BytesMontgomery(), nil
}

// X25519Scalar is the edwards25519 scalar s = clamp(k)/8 of an RFC 7748
// private key k (32 bytes, clamped here): canonical and non-zero, the
// scalar to deal so that the quorum's exchange is X25519(k, u). The
// caller erases k and the result.
func X25519Scalar(k []byte) ([]byte, error) {
	if len(k) != X25519Size {
		return nil, fmt.Errorf("%w: an X25519 private key is %d bytes, not %d", ErrInvalidScalar, X25519Size, len(k))
	}
	c := make([]byte, X25519Size)
	copy(c, k)
	c[0] &= 248
	c[31] &= 127
	c[31] |= 64
	// c = 8m (little-endian): m = c >> 3, with 2^251 <= m < 2^252 < l.
	out := make([]byte, X25519Size)
	for i := range out {
		out[i] = c[i] >> 3
		if i+1 < len(c) {
			out[i] |= c[i+1] << 5
		}
	}
	clear(c)
	return out, nil
}

func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}
