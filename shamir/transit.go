package shamir

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

// Transit encryption: hybrid encryption under an edwards25519 public key
// P = s*G whose scalar s is shared t-of-n (a transit key's version).
//
//	encrypt (anyone with P):  r random, E = r*G, K = r*P, a proof that
//	                          the encryptor knows r (transitproof.go)
//	decrypt (t holders):      each checks E's proof, returns s_i*E with
//	                          a DLEQ proof
//	                          (ComputePartial); the caller checks them and
//	                          combines K = s*E (CombinePoints)
//	both:                     key = HKDF-SHA256(K, salt E || P,
//	                          "keyquorum/transit/key/v1\x00" || info),
//	                          AEAD (AES-256-GCM or ChaCha20-Poly1305) with a
//	                          random 12-byte nonce and the caller's
//	                          additional data
//
// info and aad are the caller's: cluster/api binds the key's ID, the
// version and the derived context into both. The sealed bytes are the
// nonce followed by the AEAD output.

// Transit payload ciphers, by Vault transit's names.
const (
	CipherAES256GCM = "aes256-gcm96"
	CipherChaCha20  = "chacha20-poly1305"
)

// TransitCiphers are the payload ciphers a transit key may use.
var TransitCiphers = []string{CipherAES256GCM, CipherChaCha20}

const transitNonceSize = 12

// TransitOverhead is what TransitSeal adds to a plaintext besides E.
const TransitOverhead = transitNonceSize + 16

// TransitSeal encrypts plaintext to the public key publicKey: it returns
// E, the proof that its maker knows r with E = r*G bound to info
// (transitproof.go: what a holder checks before it answers s_i*E) and the
// sealed bytes.
func TransitSeal(rand io.Reader, publicKey []byte, cipherName string, info, aad, plaintext []byte) (eph, proof, sealed []byte, err error) {
	P, err := decodePoint(publicKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("transit public key: %w", err)
	}
	r, err := randomScalar(rand)
	if err != nil {
		return nil, nil, nil, err
	}
	defer wipeScalar(r)
	E := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	K := new(edwards25519.Point).ScalarMult(r, P).Bytes()
	defer clear(K)
	aead, err := transitAEAD(cipherName, K, E, publicKey, info)
	if err != nil {
		return nil, nil, nil, err
	}
	if proof, err = transitProve(rand, r, E, info); err != nil {
		return nil, nil, nil, err
	}
	nonce := make([]byte, transitNonceSize, transitNonceSize+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, nil, nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	return E, proof, aead.Seal(nonce, nonce, plaintext, aad), nil
}

// TransitOpen decrypts sealed bytes with the shared point K = s*E (from
// verified partials, CombinePoints, or s*E computed whole in a test). A
// wrong key, version, info, additional data or tampered bytes give
// ErrDecrypt.
func TransitOpen(K, eph, publicKey []byte, cipherName string, info, aad, sealed []byte) ([]byte, error) {
	if len(sealed) < TransitOverhead {
		return nil, fmt.Errorf("%w: sealed data too short", ErrDecrypt)
	}
	aead, err := transitAEAD(cipherName, K, eph, publicKey, info)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, sealed[:transitNonceSize], sealed[transitNonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

// TransitSharedPoint is s*E for a whole scalar s: what t partials combine
// to, for tests and for checking a threshold result against the whole key.
func TransitSharedPoint(secret, eph []byte) ([]byte, error) {
	s, err := decodeSecretScalar(secret)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(s)
	E, err := decodeCiphertextPoint(eph)
	if err != nil {
		return nil, err
	}
	return new(edwards25519.Point).ScalarMult(s, E).Bytes(), nil
}

// TransitKeyDerive is the AEAD key of a transit ciphertext: HKDF-SHA256
// of the shared point K, salted with E and the public key, for info.
func TransitKeyDerive(K, eph, publicKey, info []byte) ([]byte, error) {
	salt := make([]byte, 0, 2*PointSize)
	salt = append(append(salt, eph...), publicKey...)
	label := append([]byte(vocab.LabelTransitKey+"\x00"), info...)
	return hkdf.Key(sha256.New, K, salt, string(label), 32)
}

func transitAEAD(cipherName string, K, eph, publicKey, info []byte) (cipher.AEAD, error) {
	if len(K) != PointSize || len(eph) != PointSize || len(publicKey) != PointSize {
		return nil, fmt.Errorf("%w: transit points are %d bytes", ErrInvalidPoint, PointSize)
	}
	key, err := TransitKeyDerive(K, eph, publicKey, info)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return NewTransitAEAD(cipherName, key)
}

// NewTransitAEAD is the payload cipher cipherName with a 32-byte key.
func NewTransitAEAD(cipherName string, key []byte) (cipher.AEAD, error) {
	switch cipherName {
	case CipherAES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case CipherChaCha20:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("unknown transit cipher %q (known: %s, %s)", cipherName, CipherAES256GCM, CipherChaCha20)
}

// TransitBinding is info and additional data for one transit ciphertext:
// the key's ID, the version and the derived context, each length-prefixed
// after label.
func TransitBinding(label, keyID string, version uint64, context []byte) []byte {
	out := append([]byte(label), 0)
	var buf [8]byte
	for _, part := range [][]byte{[]byte(keyID), context} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(part)))
		out = append(append(out, buf[:]...), part...)
	}
	binary.BigEndian.PutUint64(buf[:], version)
	return append(out, buf[:]...)
}

// RandomSecret is a fresh uniformly random non-zero scalar, canonical:
// a transit version's key, which DealKey then shares.
func RandomSecret(rand io.Reader) ([]byte, error) {
	s, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(s)
	return s.Bytes(), nil
}

// Transit derivation: a threshold PRF of a transit key version's scalar s.
//
//	X   = HashToPoint(binding of key ID, version, context)   (anyone)
//	s*X                                                      (t holders'
//	                                                          partials, each
//	                                                          with a DLEQ proof;
//	                                                          the caller combines)
//	out = HKDF-SHA256 or -SHA512(s*X, salt X || P,
//	      "keyquorum/transit/derive/v1\x00" || binding, length)
//
// s*X is a PRF of the context under s (X's discrete log is unknown), so
// the output is a key only t holders together make, for the caller alone.

// Transit derivation hashes, by Vault transit's names.
const (
	DeriveSHA256 = "sha2-256"
	DeriveSHA512 = "sha2-512"
)

// TransitDerivePoint is the point X a derivation for binding (the key's
// ID, the version and the context: TransitBinding with the derive label)
// multiplies by the version's scalar.
func TransitDerivePoint(binding []byte) ([]byte, error) {
	return HashToPoint(vocab.LabelTransitDerive, binding)
}

// TransitDeriveOutput is the derived key of length bytes: HKDF with the
// hash named hashName of K = s*X, salted with X and the version's public
// key, for binding.
func TransitDeriveOutput(hashName string, K, X, publicKey, binding []byte, length int) ([]byte, error) {
	if len(K) != PointSize || len(X) != PointSize || len(publicKey) != PointSize {
		return nil, fmt.Errorf("%w: transit points are %d bytes", ErrInvalidPoint, PointSize)
	}
	salt := append(append(make([]byte, 0, 2*PointSize), X...), publicKey...)
	info := string(append([]byte(vocab.LabelTransitDerive+"\x00"), binding...))
	switch hashName {
	case DeriveSHA256, "":
		return hkdf.Key(sha256.New, K, salt, info, length)
	case DeriveSHA512:
		return hkdf.Key(sha512.New, K, salt, info, length)
	}
	return nil, fmt.Errorf("unknown derivation hash %q (known: %s, %s)", hashName, DeriveSHA256, DeriveSHA512)
}
