package shamir

import (
	"crypto/aes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Key wrapping for moving a key between systems (docs/transit.md,
// "Export and wrapped import"): AES key wrap with padding (KWP, RFC 5649)
// and, on top of it, the RSA-AES key wrap that Vault transit's "bring
// your own key" import and BYOK export use (PKCS #11's
// CKM_RSA_AES_KEY_WRAP): RSA-OAEP with SHA-256 (MGF1 SHA-256, empty
// label) of an ephemeral AES-256 key, followed by KWP of the key
// material under that AES key.

// ErrUnwrap is any failure to unwrap: a wrong key, a tampered or
// malformed blob. It says no more, so that the failure tells an attacker
// nothing.
var ErrUnwrap = errors.New("shamir: the wrapped key does not unwrap")

// kwpIV is RFC 5649's alternative initial value's constant half.
var kwpIV = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// MaxKWPInput is the longest key material KWPWrap takes (far below
// RFC 5649's 2^32 bytes: a key, not a file).
const MaxKWPInput = 1 << 16

// KWPWrap wraps plaintext (1 to MaxKWPInput bytes) under kek (an AES key
// of 16, 24 or 32 bytes) as RFC 5649 section 4.1 does.
func KWPWrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > MaxKWPInput {
		return nil, fmt.Errorf("shamir: KWP wraps 1 to %d bytes, not %d", MaxKWPInput, len(plaintext))
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	padded := (len(plaintext) + 7) / 8 * 8
	out := make([]byte, 8+padded)
	copy(out, kwpIV[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(len(plaintext)))
	copy(out[8:], plaintext)
	if padded == 8 {
		// One block: AIV || P encrypted once (RFC 5649 section 4.1).
		b.Encrypt(out, out)
		return out, nil
	}
	// RFC 3394's wrapping process W with the alternative initial value.
	n := padded / 8
	var blk [16]byte
	defer clear(blk[:])
	copy(blk[:8], out[:8])
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(blk[8:], out[8*i:8*i+8])
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(out[8*i:], blk[8:])
		}
	}
	copy(out[:8], blk[:8])
	return out, nil
}

// KWPUnwrap unwraps what KWPWrap made, checking its integrity as RFC 5649
// section 4.2 does: the initial value, the length and the zero padding.
// Any failure is ErrUnwrap.
func KWPUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 16 || len(wrapped)%8 != 0 || len(wrapped) > MaxKWPInput+16 {
		return nil, ErrUnwrap
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	r := make([]byte, 8*n)
	var a [8]byte
	if n == 1 {
		var blk [16]byte
		b.Decrypt(blk[:], wrapped)
		copy(a[:], blk[:8])
		copy(r, blk[8:])
		clear(blk[:])
	} else {
		copy(r, wrapped[8:])
		var blk [16]byte
		copy(blk[:8], wrapped[:8])
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
				copy(blk[8:], r[8*(i-1):8*i])
				b.Decrypt(blk[:], blk[:])
				copy(r[8*(i-1):], blk[8:])
			}
		}
		copy(a[:], blk[:8])
		clear(blk[:])
	}
	// The checks run in constant time over the padding: which one failed
	// is not told.
	mli := min(int(binary.BigEndian.Uint32(a[4:])), 8*n+1)
	ok := subtle.ConstantTimeCompare(a[:4], kwpIV[:])
	ok &= subtle.ConstantTimeLessOrEq(8*(n-1)+1, mli) & subtle.ConstantTimeLessOrEq(mli, 8*n)
	var pad byte
	for i := range r {
		// Bytes past mli must be zero.
		pad |= r[i] & byte(subtle.ConstantTimeLessOrEq(mli+1, i+1)*0xff)
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(r)
		return nil, ErrUnwrap
	}
	out := make([]byte, mli)
	copy(out, r)
	clear(r)
	return out, nil
}

// MinWrappingKeyBits is the smallest RSA wrapping key WrapRSAAES takes.
const MinWrappingKeyBits = 2048

// wrapAESKeySize is the ephemeral AES key's size: AES-256.
const wrapAESKeySize = 32

// WrapRSAAES wraps material for the holder of pub in Vault's BYOK
// layout: RSA-OAEP (SHA-256, MGF1 SHA-256, empty label) of a fresh
// AES-256 key, followed by KWPWrap of material under that key. The AES
// key is erased here.
func WrapRSAAES(rand io.Reader, pub *rsa.PublicKey, material []byte) ([]byte, error) {
	if pub == nil || pub.N == nil || pub.N.BitLen() < MinWrappingKeyBits {
		return nil, fmt.Errorf("shamir: a wrapping key is an RSA key of at least %d bits", MinWrappingKeyBits)
	}
	aesKey := make([]byte, wrapAESKeySize)
	defer clear(aesKey)
	if _, err := io.ReadFull(rand, aesKey); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	head, err := rsa.EncryptOAEP(sha256.New(), rand, pub, aesKey, nil)
	if err != nil {
		return nil, err
	}
	body, err := KWPWrap(aesKey, material)
	if err != nil {
		return nil, err
	}
	return append(head, body...), nil
}

// UnwrapRSAAES opens what WrapRSAAES made, with the wrapping key's
// private half: the first priv.Size() bytes are the RSA-OAEP of a 32-byte
// AES key, the rest its KWP of the material. Any failure is ErrUnwrap.
// The caller erases the material.
func UnwrapRSAAES(priv *rsa.PrivateKey, blob []byte) ([]byte, error) {
	if priv == nil || priv.N == nil || priv.N.BitLen() < MinWrappingKeyBits {
		return nil, fmt.Errorf("shamir: a wrapping key is an RSA key of at least %d bits", MinWrappingKeyBits)
	}
	k := priv.Size()
	if len(blob) < k+16 {
		return nil, ErrUnwrap
	}
	aesKey, err := rsa.DecryptOAEP(sha256.New(), nil, priv, blob[:k], nil)
	if err != nil {
		return nil, ErrUnwrap
	}
	defer clear(aesKey)
	if len(aesKey) != wrapAESKeySize {
		return nil, ErrUnwrap
	}
	return KWPUnwrap(aesKey, blob[k:])
}
