package fsm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"slices"
)

// FROST keys: Ed25519 keys that sign by quorum (RFC 9591's
// FROST(Ed25519, SHA-512), shamir/frost.go). The client deals the key's
// scalar t-of-n to the share holders of the current epoch, each share
// sealed to its holder's identity key; the state keeps the Feldman
// commitments of the sharing (Commits[0] is the Ed25519 public key) and
// the sealed shares. No node ever holds the whole key: a signature is t
// holders' signature shares added up (cluster/frost.go).
//
// A FROST key follows the epoch it was dealt in. Resharing rounds reshare
// it to the new holders with the same public key (frostreshare.go), which
// moves it to the new epoch. A key a round could not reshare is left in
// its epoch: it needs to be imported again, and every holder refuses to
// sign with it (FROSTStale), so the share of a node that left is never
// asked again.

// KeyTypeFROST is an Ed25519 key held as FROST shares.
const KeyTypeFROST = "ed25519-frost"

// OpSign makes a signature with a key by quorum.
const OpSign = "sign"

// MaxSignMessage is the largest message a signing request carries.
const MaxSignMessage = 64 << 10

// sealedFROSTShareLen is shamir.SealedShareSize (fsm imports no shamir).
const sealedFROSTShareLen = 32 + 32 + 16

// FROSTKey is a FROST key's sharing.
type FROSTKey struct {
	Threshold int          `json:"threshold"`
	Epoch     uint64       `json:"epoch"`   // the cluster epoch whose holders it was dealt to
	Commits   [][]byte     `json:"commits"` // Feldman commitments; Commits[0] is the public key
	Shares    []FROSTShare `json:"shares"`
	// NeedsReimport is set only in what a read shows (State.KeyView),
	// never in the state: the key was dealt before the members changed.
	NeedsReimport bool `json:"needs_reimport,omitempty"`
}

// KeyView is the key's metadata as reads show it: Metadata, and for a
// FROST key whether it needs to be imported again.
func (s *State) KeyView(k *Key) *Key {
	m := k.Metadata()
	if m.Frost() != nil {
		m.Frost().NeedsReimport = s.FROSTStale(k)
	}
	if m.Transit() != nil {
		for i := range m.Transit().Versions {
			if sh := m.Transit().Versions[i].Sharing; sh != nil {
				sh.NeedsReimport = sh.Epoch != s.Epoch
			}
		}
	}
	return m
}

// FROSTShare is one node's share of a FROST key: sealed to its identity
// key (shamir.SealShare, context api.FROSTShareContext) as created, or,
// with Sealed empty, in the node's share store once a round reshared it.
type FROSTShare struct {
	NodeID string `json:"node_id"`
	Index  uint32 `json:"index"`
	Sealed []byte `json:"sealed,omitempty"`
}

// FROSTStale reports whether a FROST key was dealt to the holders of an
// earlier epoch: it must be imported again before it signs.
func (s *State) FROSTStale(k *Key) bool {
	return k.Frost() != nil && k.Frost().Epoch != s.Epoch
}

// checkFROST checks a FROST key's deal: the epoch's threshold and one
// share for every share holder of the current epoch at its index, and
// the public key (PKIX DER) the sharing's constant commitment.
func (s *State) checkFROST(public []byte, fk *FROSTKey) *Error {
	if fk == nil {
		return errorf(CodeInvalid, "an %s key needs its shares", KeyTypeFROST)
	}
	if len(public) == 0 || len(public) > maxPublicKeyLen {
		return errorf(CodeInvalid, "an %s key needs its public key, PKIX DER", KeyTypeFROST)
	}
	pub, err := x509.ParsePKIXPublicKey(public)
	if err != nil {
		return errorf(CodeInvalid, "public key: %v", err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return errorf(CodeInvalid, "the public key is a %T, not an Ed25519 key", pub)
	}
	if err := s.checkSharing(KeyTypeFROST, fk); err != nil {
		return err
	}
	if !bytes.Equal(fk.Commits[0], edPub) {
		return errorf(CodeInvalid, "the sharing's constant commitment is not the public key")
	}
	return nil
}

// checkSharing checks a scalar's sharing a client dealt (an ed25519-frost
// key, a transit key's version): the epoch's threshold, as many
// commitments, and one sealed share for every share holder of the
// current epoch at its index.
func (s *State) checkSharing(keyType string, fk *FROSTKey) *Error {
	if fk == nil {
		return errorf(CodeInvalid, "a %s key needs its shares", keyType)
	}
	if fk.NeedsReimport {
		return errorf(CodeInvalid, "needs_reimport is what a read shows, not part of a deal")
	}
	holders := s.Holders()
	if fk.Epoch != s.Epoch || fk.Threshold != s.Threshold || len(fk.Shares) != len(holders) || len(fk.Commits) != fk.Threshold {
		return errorf(CodeConflict, "an %s key must be dealt %d-of-%d to the share holders of epoch %d, with %d commitments; they changed since this deal was made",
			keyType, s.Threshold, len(holders), s.Epoch, s.Threshold)
	}
	for i, c := range fk.Commits {
		if len(c) != pointLen {
			return errorf(CodeInvalid, "commitment %d is not a %d-byte point", i, pointLen)
		}
	}
	for i, sh := range fk.Shares {
		h := holders[i] // both in node ID order
		if sh.NodeID != h.ID || sh.Index != h.Index {
			return errorf(CodeConflict, "%s share %d is for node %q index %d, not holder %q index %d", keyType, i+1, sh.NodeID, sh.Index, h.ID, h.Index)
		}
		if len(sh.Sealed) != sealedFROSTShareLen {
			return errorf(CodeInvalid, "%s share %d needs %d sealed bytes", keyType, i+1, sealedFROSTShareLen)
		}
	}
	return nil
}

// authorizeSign checks what a signing request must be (the key's type
// answers OpSign: checkOp): a message of 1 to MaxSignMessage bytes, no
// ephemeral key (a signature is public) and no input (holders pad the
// message themselves), a padding only for an rsa-threshold key, and a
// FROST key dealt in the current epoch.
func (s *State) authorizeSign(req *ReleaseRequest, k *Key) *Error {
	switch {
	case len(req.Message) == 0 || len(req.Message) > MaxSignMessage:
		return errorf(CodeInvalid, "a signing request carries a message of 1 to %d bytes", MaxSignMessage)
	case len(req.Ephemeral) != 0:
		return errorf(CodeInvalid, "a signing request carries no ephemeral key: the signature is public")
	case len(req.Input) != 0:
		return errorf(CodeInvalid, "a signing request carries the message, not an input: each holder pads it itself")
	case k.Type == KeyTypeRSAThreshold && !slices.Contains(RSAPaddings, req.Padding):
		return errorf(CodeInvalid, "an %s key signs with padding %s or %s, not %q", KeyTypeRSAThreshold, PaddingPKCS1v15, PaddingPSS, req.Padding)
	case k.Type != KeyTypeRSAThreshold && req.Padding != "":
		return errorf(CodeInvalid, "a %s key takes no padding", k.Type)
	case s.FROSTStale(k):
		return errorf(CodeConflict, "key %q was dealt to the share holders of epoch %d and the members changed since (epoch %d) without a round resharing it: import it again", k.Name, k.Frost().Epoch, s.Epoch)
	}
	return nil
}
