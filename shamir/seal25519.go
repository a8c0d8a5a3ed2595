package shamir

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

const x25519Label = vocab.LabelX25519Seal + "\x00"

// X25519KeySize is the size of an X25519 public and private key.
const X25519KeySize = 32

// SealX25519 encrypts plaintext to the X25519 public key recipientPub, in
// the manner of HPKE's base mode: a fresh X25519 key e, shared =
// X25519(e, recipientPub), key = HKDF-SHA256(shared, no salt,
// "keyquorum/x25519-seal/v1\x00" || e_pub || recipientPub || info), and
// ChaCha20-Poly1305 with a zero nonce, the key being used once. The
// ciphertext is R = e_pub and Sealed = the AEAD output. info must be given
// again to OpenX25519. A recipient key of low order (whose shared secret is
// all zeros) is refused with ErrInvalidPoint.
//
// It is for one-time sealing to a requester's ephemeral key (a holder's
// partial for a blind release), where it costs a fraction of Seal's
// edwards25519 ElGamal; Seal remains the KEM of the cluster key.
func SealX25519(rand io.Reader, recipientPub, info, plaintext []byte) (*Ciphertext, error) {
	if len(recipientPub) != X25519KeySize {
		return nil, fmt.Errorf("%w: X25519 recipient key: not %d bytes", ErrInvalidPoint, X25519KeySize)
	}
	// The key comes from rand, as every randomized function here takes
	// its randomness (ecdh's GenerateKey would ignore it). The X25519
	// here is circl's (x25519DH): crypto/ecdh's NewPrivateKey would
	// compute e_pub with a second full ladder, and its ladder is slower.
	var e, ePub x25519.Key
	defer clear(e[:])
	if _, err := io.ReadFull(rand, e[:]); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	x25519.KeyGen(&ePub, &e) // a fixed-base ladder with a table
	shared, ok := x25519DH(&e, recipientPub)
	if !ok {
		return nil, fmt.Errorf("%w: X25519 recipient key is of low order", ErrInvalidPoint)
	}
	defer clear(shared[:])
	aead, err := x25519AEAD(shared[:], ePub[:], recipientPub, info)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	return &Ciphertext{R: ePub[:], Sealed: aead.Seal(nil, nonce[:], plaintext, nil)}, nil
}

// x25519DH is X25519(secret, pub) (RFC 7748: the scalar clamped, pub's
// top bit ignored), false when the result is all zeros (pub of low
// order), as crypto/ecdh's ECDH refuses it. It is circl's ladder, about
// 1.5 times as fast as crypto/ecdh's on amd64 (TestX25519MatchesCryptoECDH
// checks they agree).
func x25519DH(secret *x25519.Key, pub []byte) (shared x25519.Key, ok bool) {
	var p x25519.Key
	copy(p[:], pub)
	x25519.Shared(&shared, secret, &p) // its own low-order check too
	var zero x25519.Key
	return shared, subtle.ConstantTimeCompare(shared[:], zero[:]) == 0
}

// X25519Key is an X25519 key pair to receive SealX25519's ciphertexts
// with: a requester's ephemeral key. NewX25519Key makes it with circl's
// fixed-base ladder, which costs about half of what crypto/ecdh's
// GenerateKey does (a variable-base ladder, and a slower one).
type X25519Key struct {
	priv, pub x25519.Key
}

// NewX25519Key makes a key pair from 32 bytes of rand.
func NewX25519Key(rand io.Reader) (*X25519Key, error) {
	var k X25519Key
	if _, err := io.ReadFull(rand, k.priv[:]); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	x25519.KeyGen(&k.pub, &k.priv)
	return &k, nil
}

// PublicKey is the key's public key, what a sender seals to.
func (k *X25519Key) PublicKey() []byte { return bytes.Clone(k.pub[:]) }

// Erase overwrites the private key with zeros; the key opens nothing after.
func (k *X25519Key) Erase() { clear(k.priv[:]) }

// Open opens a ciphertext of SealX25519 sealed to k's public key, as
// OpenX25519 does.
func (k *X25519Key) Open(ct *Ciphertext, info []byte) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil X25519 key", ErrInvalidScalar)
	}
	return openX25519(&k.priv, k.pub[:], ct, info)
}

// OpenX25519 opens a ciphertext of SealX25519 with the private key of the
// public key it was sealed to, for the same info. A sender key of low
// order is refused with ErrInvalidPoint; a wrong key, info or a tampered
// ciphertext fails with ErrDecrypt.
func OpenX25519(priv *ecdh.PrivateKey, ct *Ciphertext, info []byte) ([]byte, error) {
	if priv == nil || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: not an X25519 private key", ErrInvalidScalar)
	}
	var k x25519.Key
	defer clear(k[:])
	b := priv.Bytes()
	copy(k[:], b)
	clear(b)
	return openX25519(&k, priv.PublicKey().Bytes(), ct, info)
}

func openX25519(k *x25519.Key, pub []byte, ct *Ciphertext, info []byte) ([]byte, error) {
	if ct == nil {
		return nil, fmt.Errorf("%w: nil ciphertext", ErrDecrypt)
	}
	if len(ct.R) != X25519KeySize {
		return nil, fmt.Errorf("%w: X25519 sender key: not %d bytes", ErrInvalidPoint, X25519KeySize)
	}
	if len(ct.Sealed) < chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: sealed data too short", ErrDecrypt)
	}
	shared, ok := x25519DH(k, ct.R)
	if !ok {
		return nil, fmt.Errorf("%w: X25519 sender key is of low order", ErrInvalidPoint)
	}
	defer clear(shared[:])
	aead, err := x25519AEAD(shared[:], ct.R, pub, info)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	pt, err := aead.Open(nil, nonce[:], ct.Sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

// x25519AEAD derives the one-time ChaCha20-Poly1305 of SealX25519.
func x25519AEAD(shared, ePub, recipientPub, info []byte) (cipher.AEAD, error) {
	kinfo := make([]byte, 0, len(x25519Label)+2*X25519KeySize+len(info))
	kinfo = append(append(append(append(kinfo, x25519Label...), ePub...), recipientPub...), info...)
	key, err := hkdf.Key(sha256.New, shared, nil, string(kinfo), chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return chacha20poly1305.New(key)
}
