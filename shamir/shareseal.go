package shamir

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

// The share seal of a blind release in share mode (docs/coordinator.md,
// "Share mode"): holder i seals its value V_i = s_i*R to the client's
// ephemeral X25519 key E with a key only it and the client can compute,
// the X25519 shared secret of its public share Y_i = s_i*G and E:
//
//	holder:  u((s_i/8) * 8*P_E) = u(s_i * E)    (P_E: E's edwards25519 point, either sign)
//	client:  X25519(e, u(Y_i)) = u(clamp(e) * s_i*G) = u(s_i * E)    since E = clamp(e)*G
//
// The holder multiplies 8*P_E (X25519PeerPoint, in the prime-order
// subgroup) by s_i/8, so that a requester's E with a small-order part
// learns nothing of s_i modulo 8; for an honest E (in the subgroup) it is
// s_i*E. The seal's key is HKDF-SHA256 of that secret, bound to E, Y_i,
// i, the hash of the key's ciphertext the holder answered for
// (CiphertextHash) and the caller's info (the release's context): the
// coordinator, which knows E and Y_i only, can neither make nor open a
// seal (CDH), and a seal opens only for the ciphertext the holder had.

const shareSealLabel = vocab.LabelShareSeal + "\x00"

// ShareSealSize is the size of a sealed value: a point and the AEAD's tag.
const ShareSealSize = PointSize + chacha20poly1305.Overhead

// inv8 is 8^-1 modulo the group order.
var inv8 = edwards25519.NewScalar().Invert(scalarFromUint32(8))

// CiphertextHash is SHA-256 of ct's R and Sealed, each prefixed with its
// length (4 bytes, big-endian): what a share seal binds of the key's
// ciphertext.
func CiphertextHash(ct *Ciphertext) []byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(ct.R)))
	h.Write(n[:])
	h.Write(ct.R)
	binary.BigEndian.PutUint32(n[:], uint32(len(ct.Sealed)))
	h.Write(n[:])
	h.Write(ct.Sealed)
	return h.Sum(nil)
}

// SealToEphemeral seals this holder's value V (s_i*R, as Value returns
// it for the ciphertext whose CiphertextHash is ctHash) to the X25519
// public key eph of a client, under info, with no proof: the seal's key
// is derived from s_i*E (see above), and only the holder of the share and
// of eph's private key can compute it. The seal is ChaCha20-Poly1305
// with a zero nonce: the key is used once, eph being fresh per request.
// An eph of low order or off the curve is refused (ErrInvalidPoint,
// ErrX25519LowOrder, ErrX25519Twist).
func (p *Prover) SealToEphemeral(eph, ctHash, info, V []byte) ([]byte, error) {
	if len(V) != PointSize {
		return nil, fmt.Errorf("%w: value of %d bytes", ErrInvalidPoint, len(V))
	}
	if len(ctHash) != sha256.Size {
		return nil, fmt.Errorf("shamir: a ciphertext hash of %d bytes, not %d", len(ctHash), sha256.Size)
	}
	Q, err := x25519PeerPoint(eph)
	if err != nil {
		return nil, err
	}
	shared, err := p.sharedWith(Q)
	if err != nil {
		return nil, err
	}
	defer clear(shared)
	if isZero(shared) {
		return nil, fmt.Errorf("%w: the X25519 key is of low order", ErrInvalidPoint)
	}
	aead, err := shareSealAEAD(shared, eph, p.pub, p.index, ctHash, info)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Seal(nil, nonce[:], V, nil), nil
}

// sharedWith is the holder's side of the share seal's secret with the
// point Q = 8*P_E (x25519PeerPoint): u((s_i/8) * Q), which is u(s_i * E)
// for an E in the prime-order subgroup.
func (p *Prover) sharedWith(Q *edwards25519.Point) ([]byte, error) {
	p.mu.RLock()
	if p.s == nil {
		p.mu.RUnlock()
		return nil, fmt.Errorf("%w: the share was erased", ErrInvalidScalar)
	}
	s8 := edwards25519.NewScalar().Multiply(p.s, inv8)
	p.mu.RUnlock()
	defer wipeScalar(s8)
	return new(edwards25519.Point).ScalarMult(s8, Q).BytesMontgomery(), nil
}

// OpenShareSeal opens the seal of the holder of share index, whose public
// share is Y (edwards25519, s_i*G), made by SealToEphemeral to k's public
// key for the ciphertext hash ctHash and info, and returns the value it
// carries (32 bytes, not decoded). A seal made for another key, index,
// public share, ciphertext or info fails with ErrDecrypt.
func (k *X25519Key) OpenShareSeal(Y []byte, index uint32, ctHash, info, sealed []byte) ([]byte, error) {
	Yp, err := decodePoint(Y)
	if err != nil {
		return nil, fmt.Errorf("public share: %w", err)
	}
	return k.openShareSeal(Y, Yp.BytesMontgomery(), index, ctHash, info, sealed)
}

// openShareSeal is OpenShareSeal with Y's X25519 u coordinate uY.
func (k *X25519Key) openShareSeal(Y, uY []byte, index uint32, ctHash, info, sealed []byte) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil X25519 key", ErrInvalidScalar)
	}
	if len(sealed) != ShareSealSize {
		return nil, fmt.Errorf("%w: a share seal of %d bytes, not %d", ErrDecrypt, len(sealed), ShareSealSize)
	}
	shared, ok := x25519DH(&k.priv, uY)
	if !ok {
		return nil, fmt.Errorf("%w: the public share is of low order", ErrInvalidPoint)
	}
	defer clear(shared[:])
	aead, err := shareSealAEAD(shared[:], k.pub[:], Y, index, ctHash, info)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	V, err := aead.Open(nil, nonce[:], sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the share seal does not open", ErrDecrypt)
	}
	return V, nil
}

// shareSealAEAD derives the one-time ChaCha20-Poly1305 of a share seal:
// HKDF-SHA256(shared, no salt, "keyquorum/share-seal/v1\x00" || E || Y ||
// index (4 bytes, big-endian) || ctHash || info).
func shareSealAEAD(shared, E, Y []byte, index uint32, ctHash, info []byte) (cipher.AEAD, error) {
	kinfo := make([]byte, 0, len(shareSealLabel)+X25519KeySize+PointSize+4+len(ctHash)+len(info))
	kinfo = append(append(append(kinfo, shareSealLabel...), E...), Y...)
	kinfo = binary.BigEndian.AppendUint32(kinfo, index)
	kinfo = append(append(kinfo, ctHash...), info...)
	key, err := hkdf.Key(sha256.New, shared, nil, string(kinfo), chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return chacha20poly1305.New(key)
}

// ShareSeal is one holder's value sealed with SealToEphemeral, as a
// client received it: the share index it claims and the seal.
type ShareSeal struct {
	Index  uint32
	Sealed []byte
}

// ShareSealError says which seal of OpenShareSeals failed, and why: it
// did not open (ErrDecrypt) or its value is not a point (ErrInvalidPoint).
type ShareSealError struct {
	Index uint32
	Err   error
}

// Error names the seal and the reason.
func (e *ShareSealError) Error() string {
	return fmt.Sprintf("the seal of share %d: %v", e.Index, e.Err)
}

// Unwrap is the reason.
func (e *ShareSealError) Unwrap() error { return e.Err }

// OpenShareSeals opens seals (exactly the polynomial's threshold t of
// them, distinct indexes) with k, each with its public share Y_i from v's
// polynomial, the CiphertextHash of ct (whose R must be v's) and
// info(index); it combines their values (canonical points; no subgroup
// check, no proof) and decrypts ct with kemInfo. The AEAD tag of ct
// decides whether the combination is right: a wrong value, or one with a
// small-order part, gives another point and the tag fails (ErrDecrypt).
// A seal that does not open or carries no point fails with a
// *ShareSealError. Neither error names a liar for sure: a proof does
// (VerifyProof), in a release made again with proofs.
func (v *Verifier) OpenShareSeals(k *X25519Key, ct *Ciphertext, kemInfo []byte, info func(index uint32) []byte, seals []ShareSeal) ([]byte, error) {
	t := len(v.commits)
	if len(seals) != t {
		return nil, fmt.Errorf("%w: %d seals, need %d", ErrNotEnoughPartials, len(seals), t)
	}
	if ct == nil || string(ct.R) != string(v.r) {
		return nil, fmt.Errorf("%w: the ciphertext is not the verifier's", ErrDecrypt)
	}
	ctHash := CiphertextHash(ct)
	idx := make([]uint32, t)
	pts := make([]*edwards25519.Point, t)
	for i, s := range seals {
		if s.Index == 0 {
			return nil, &ShareSealError{Index: 0, Err: ErrInvalidIndex}
		}
		ps := v.publicShareFull(s.Index)
		V, err := k.openShareSeal(ps.enc, ps.mont, s.Index, ctHash, info(s.Index), s.Sealed)
		if err != nil {
			return nil, &ShareSealError{Index: s.Index, Err: err}
		}
		pts[i], err = decodePointNoSubgroup(V)
		clear(V)
		if err != nil {
			return nil, &ShareSealError{Index: s.Index, Err: err}
		}
		idx[i] = s.Index
	}
	K, err := combinePoints(idx, pts)
	if err != nil {
		return nil, err
	}
	return openWithPoint(K, ct, kemInfo)
}
