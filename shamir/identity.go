package shamir

import (
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"

	"filippo.io/edwards25519"
)

// EncryptionKeyFromEd25519 returns the encryption private key (the format
// of GenerateEncryptionKey) whose public key is the Ed25519 public key of
// priv: the clamped scalar RFC 8032 derives from the seed. Data sealed to
// a node's long-lived Ed25519 identity with Seal opens with it. Using one
// key for signatures and for ElGamal encryption to it is sound for
// Ed25519's scalar (the hashed seed never signs directly), and keeps a
// node's Tang shares readable across its encryption-key rotations.
func EncryptionKeyFromEd25519(priv ed25519.PrivateKey) ([]byte, error) {
	h := sha512.Sum512(priv.Seed())
	defer clear(h[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	defer wipeScalar(s)
	return s.Bytes(), nil
}

// OpenWithKey opens a ciphertext of Seal with the whole private key of the
// public key it was sealed to (GenerateEncryptionKey's format). A client
// that receives partials sealed to its ephemeral key opens them with it.
func OpenWithKey(priv []byte, ct *Ciphertext, info []byte) ([]byte, error) {
	a, err := decodeSecretScalar(priv)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	defer wipeScalar(a)
	R, err := decodePoint(ct.R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext point: %w", err)
	}
	return openWithPoint(new(edwards25519.Point).ScalarMult(a, R), ct, info)
}
