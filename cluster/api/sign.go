package api

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
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

// NewFROSTKey deals an Ed25519 private key t-of-n to the share holders st
// lists (a status t members confirmed: Confirm), each share sealed to its
// holder's identity key, and returns the create_key command of an
// ed25519-frost key named name. The key's scalar and shares are erased
// before it returns; the cluster never sees them whole.
func NewFROSTKey(rand io.Reader, name string, priv ed25519.PrivateKey, st *Status) (*fsm.CreateKey, error) {
	var holders []MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	slices.SortFunc(holders, func(a, b MemberStatus) int { return strings.Compare(a.ID, b.ID) })
	indexes := make([]uint32, len(holders))
	for i, h := range holders {
		indexes[i] = h.Index
	}
	secret, err := shamir.Ed25519Scalar(priv)
	if err != nil {
		return nil, err
	}
	poly, shares, err := shamir.DealKey(rand, secret, st.Threshold, indexes)
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
	fk := &fsm.FROSTKey{Threshold: st.Threshold, Epoch: st.Epoch, Commits: poly.Commits}
	for i, h := range holders {
		sealed, err := shamir.SealShare(rand, h.SignKey, shares[i], FROSTShareContext(st.ClusterID, name, st.Epoch))
		if err != nil {
			return nil, fmt.Errorf("sealing the share of node %s: %w", h.ID, err)
		}
		fk.Shares = append(fk.Shares, fsm.FROSTShare{NodeID: h.ID, Index: h.Index, Sealed: sealed})
	}
	return &fsm.CreateKey{Name: name, Type: fsm.KeyTypeFROST, Public: der, Frost: fk}, nil
}
