package api

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Signature is a signature made by quorum, or with an assembled ECDSA key
// by the node a quorum released it to (docs/signing.md): the key and
// version it was made with, its public key (for Ed25519, the 32 raw
// bytes; otherwise PKIX DER), the signature, the share indexes of the holders that signed,
// and the holders whose answers were left out and why (a holder that
// sent a bad share is named there and in the coordinator's log).
type Signature struct {
	Key       string            `json:"key"`
	Version   uint64            `json:"version"`
	Type      string            `json:"type"`
	PublicKey []byte            `json:"public_key"`
	Signature []byte            `json:"signature"`
	Signers   []uint32          `json:"signers"`
	Failed    map[string]string `json:"failed,omitempty"`
}

// FROSTShareContext binds a FROST key's share sealed to a node to the
// cluster, the key's name and the epoch it was dealt in. keyctl seals with
// it; holders open with it.
func FROSTShareContext(clusterID, name string, epoch uint64) []byte {
	b := []byte(vocab.LabelFROSTShare + "\x00" + clusterID + "\x00" + name + "\x00")
	return binary.BigEndian.AppendUint64(b, epoch)
}

// NewFROSTKey deals an Ed25519 private key threshold-of-n to the share
// holders of epoch (as t members confirmed them: client.Confirm), each
// share sealed to its holder's identity key, and returns the create_key
// command of an ed25519-frost key named name. The key's scalar and shares
// are erased before it returns; the cluster never sees them whole.
func NewFROSTKey(rand io.Reader, name string, priv ed25519.PrivateKey, clusterID string, epoch uint64, threshold int, holders []MemberStatus) (*fsm.CreateKey, error) {
	holders = slices.Clone(holders)
	slices.SortFunc(holders, func(a, b MemberStatus) int { return strings.Compare(a.ID, b.ID) })
	indexes := make([]uint32, len(holders))
	for i, h := range holders {
		indexes[i] = h.Index
	}
	secret, err := shamir.Ed25519Scalar(priv)
	if err != nil {
		return nil, err
	}
	poly, shares, err := shamir.DealKey(rand, secret, threshold, indexes)
	clear(secret)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, sh := range shares {
			sh.Erase()
		}
	}()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	fk := &fsm.FROSTKey{Threshold: threshold, Epoch: epoch, Commits: poly.Commits}
	for i, h := range holders {
		sealed, err := shamir.SealShare(rand, h.SignKey, shares[i], FROSTShareContext(clusterID, name, epoch))
		if err != nil {
			return nil, fmt.Errorf("sealing the share of node %s: %w", h.ID, err)
		}
		fk.Shares = append(fk.Shares, fsm.FROSTShare{NodeID: h.ID, Index: h.Index, Sealed: sealed})
	}
	return &fsm.CreateKey{Name: name, Type: fsm.KeyTypeFROST, Public: der, Frost: fk}, nil
}

// VerifyRequest is the REST body of POST /v1/verify (POST /v1/sign takes
// the operator's signed request, op sign, as an fsm.Signed).
type VerifyRequest struct {
	Key       string `json:"key"`
	Message   []byte `json:"message"`
	Signature []byte `json:"signature"`
	// Padding is an RSA signature's (fsm.PaddingPKCS1v15, also when
	// empty, or fsm.PaddingPSS); other keys take none.
	Padding string `json:"padding,omitempty"`
}

// VerifyReply says whether a signature verifies, and if not why.
type VerifyReply struct {
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

// ErrBadSignature is a signature that does not verify.
var ErrBadSignature = errors.New("the signature does not verify")

// VerifySignature checks sig over msg with key k's public key. It
// dispatches on the key type: Ed25519 keys, by quorum (ed25519-frost) or
// assembled (ed25519), are checked with crypto/ed25519; RSA keys, by
// quorum (rsa-threshold) or assembled (rsa), with crypto/rsa over the
// message's SHA-256, padded as padding says (fsm.PaddingPKCS1v15, also
// when empty, or fsm.PaddingPSS with any salt length); ECDSA keys
// (assembled) with crypto/ecdsa over the message's SHA-256, an ASN.1 DER
// signature.
func VerifySignature(k *fsm.Key, msg, sig []byte, padding string) error {
	pub, err := x509.ParsePKIXPublicKey(k.Public())
	if err != nil {
		return fmt.Errorf("key %q: public key: %w", k.Name, err)
	}
	if err := verify(k.Type, pub, msg, sig, padding); err != nil {
		return fmt.Errorf("key %q: %w", k.Name, err)
	}
	return nil
}

// Check checks the signature over msg under the public key it names, as
// a client does with a node's answer; that key is the node's word, so
// compare it with one you trust (or use VerifySignature with the key's
// metadata).
func (s *Signature) Check(msg []byte, padding string) error {
	var pub any = ed25519.PublicKey(s.PublicKey)
	if s.Type == fsm.KeyTypeRSAThreshold || s.Type == fsm.KeyTypeECDSA {
		var err error
		if pub, err = x509.ParsePKIXPublicKey(s.PublicKey); err != nil {
			return fmt.Errorf("key %q: public key: %w", s.Key, err)
		}
	}
	if err := verify(s.Type, pub, msg, s.Signature, padding); err != nil {
		return fmt.Errorf("key %q: %w", s.Key, err)
	}
	return nil
}

func verify(keyType string, pub any, msg, sig []byte, padding string) error {
	switch keyType {
	case fsm.KeyTypeFROST, fsm.KeyTypeEd25519:
		ed, ok := pub.(ed25519.PublicKey)
		if !ok || len(ed) != ed25519.PublicKeySize {
			return fmt.Errorf("the key holds a %T, not an Ed25519 public key", pub)
		}
		if padding != "" {
			return fmt.Errorf("an Ed25519 signature takes no padding, not %q", padding)
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(ed, msg, sig) {
			return ErrBadSignature
		}
		return nil
	case fsm.KeyTypeRSAThreshold, fsm.KeyTypeRSA:
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("the key holds a %T, not an RSA public key", pub)
		}
		digest := sha256.Sum256(msg)
		var err error
		switch padding {
		case "", fsm.PaddingPKCS1v15:
			err = rsa.VerifyPKCS1v15(rk, crypto.SHA256, digest[:], sig)
		case fsm.PaddingPSS:
			err = rsa.VerifyPSS(rk, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		default:
			return fmt.Errorf("unknown RSA padding %q (known: %s, %s)", padding, fsm.PaddingPKCS1v15, fsm.PaddingPSS)
		}
		if err != nil {
			return ErrBadSignature
		}
		return nil
	case fsm.KeyTypeECDSA:
		ek, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("the key holds a %T, not an ECDSA public key", pub)
		}
		if padding != "" {
			return fmt.Errorf("an ECDSA signature takes no padding, not %q", padding)
		}
		digest := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(ek, digest[:], sig) {
			return ErrBadSignature
		}
		return nil
	}
	return fmt.Errorf("a %s key does not sign: verification is built for ed25519, %s, rsa, %s and ecdsa keys", keyType, fsm.KeyTypeFROST, fsm.KeyTypeRSAThreshold)
}

// RSASignInput is the number a threshold RSA key's holders raise to their
// shares to sign msg by op sign: the SHA-256 of msg, padded as the
// request asks (fsm.RSAPaddings). PSS's salt is the SHA-256 of the
// request's nonce (32 bytes, the hash's length), so the coordinator and
// every holder make the same block from the signed request alone, and no
// holder raises a number of anyone's choosing: it pads the message
// itself. A salt the requester chose costs PSS nothing (its security does
// not rest on the salt being secret or random).
func RSASignInput(pub *rsa.PublicKey, padding string, msg, nonce []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	switch padding {
	case "", fsm.PaddingPKCS1v15:
		return tssrsa.PKCS1v15Padder{}.Pad(pub, crypto.SHA256, digest[:])
	case fsm.PaddingPSS:
		salt := sha256.Sum256(nonce)
		p := &tssrsa.PSSPadder{Rand: bytes.NewReader(salt[:]), Opts: &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}}
		return p.Pad(pub, crypto.SHA256, digest[:])
	}
	return nil, fmt.Errorf("unknown RSA padding %q (known: %s, %s)", padding, fsm.PaddingPKCS1v15, fsm.PaddingPSS)
}
