package api

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Signature is a signature made by quorum (docs/signing.md): the key and
// version it was made with, its public key (for Ed25519, the 32 raw
// bytes), the signature, the share indexes of the holders that signed,
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
// assembled (ed25519), are checked with crypto/ed25519. Other types are
// refused until their scheme is added here (threshold RSA plugs in as a
// case of this switch, with its padding among the request's options).
func VerifySignature(k *fsm.Key, msg, sig []byte) error {
	switch k.Type {
	case fsm.KeyTypeFROST, fsm.KeyTypeEd25519:
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return fmt.Errorf("key %q: public key: %w", k.Name, err)
		}
		ed, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("key %q holds a %T, not an Ed25519 public key", k.Name, pub)
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(ed, msg, sig) {
			return fmt.Errorf("key %q: %w", k.Name, ErrBadSignature)
		}
		return nil
	}
	return fmt.Errorf("key %q is a %s key: verification is built for ed25519 and %s keys", k.Name, k.Type, fsm.KeyTypeFROST)
}
