package fsm

import (
	"crypto/rsa"
	"crypto/x509"
	"slices"
	"strings"
)

// Threshold RSA keys (Shoup's "Practical Threshold Signatures", Protocol
// 1, as cloudflare/circl's tss/rsa implements it for a key made
// elsewhere). The operator's client deals the private exponent into one
// share per share holder of the current epoch and seals each share to its
// holder's identity key; the key never exists whole in any node. A gateway
// node asks t holders for x^(2Δs_i) mod n (OpRSAShare) and combines the
// signature or the decryption, which it checks with the public exponent.
//
// Shoup's shares cannot be reshared to another set of holders without the
// dealer: when the members change, a key whose holders are no longer all
// members is marked as needing re-import (Reimport) and keeps working with
// the holders that remain, as long as t of them do. Re-importing is
// destroying the key (which erases the old deal from every disk,
// checkpoint.go) and importing it again.
const (
	KeyTypeRSAThreshold = "rsa-threshold"
	// OpRSAShare asks a holder of a threshold RSA key for its share of
	// x^d mod n. Only gateway nodes ask it.
	OpRSAShare = "rsa-share"
)

// Paddings of an rsa-threshold key's signature by OpSign, over the
// SHA-256 of the message (cluster/api.RSASignInput): PKCS #1 v1.5 (RFC
// 8017, 8.2), the default, or PSS (RFC 8017, 8.1) with MGF1-SHA-256 and a
// 32-byte salt.
const (
	PaddingPKCS1v15 = "pkcs1v15"
	PaddingPSS      = "pss"
)

// RSAPaddings are the paddings a request may name; empty is
// PaddingPKCS1v15.
var RSAPaddings = []string{"", PaddingPKCS1v15, PaddingPSS}

// Limits of a threshold RSA key.
const (
	minRSABits         = 2048
	maxRSASealedLen    = 2048
	maxRSAShareCommits = MaxNodes
)

// RSAThresholdKey is a threshold RSA key's deal.
type RSAThresholdKey struct {
	Threshold int        `json:"threshold"`
	Shares    []RSAShare `json:"shares"`
	// Reimport, when set, says why the key must be imported again: the
	// members it was dealt to changed. key show says it.
	Reimport string `json:"reimport,omitempty"`
}

// RSAShare is one holder's share of a threshold RSA key: circl's KeyShare
// encoding, sealed (shamir.Seal) to the holder's identity key.
type RSAShare struct {
	NodeID string `json:"node_id"`
	// Index is Shoup's player index, 1 to the number of shares, in node
	// ID order: the combiner's Lagrange coefficients need indices no
	// larger than the number of players.
	Index  uint32 `json:"index"`
	R      []byte `json:"r,omitempty"`
	Sealed []byte `json:"sealed,omitempty"`
}

// ShareOf is the share dealt to node, or nil.
func (k *RSAThresholdKey) ShareOf(node string) *RSAShare {
	if k == nil {
		return nil
	}
	for i := range k.Shares {
		if k.Shares[i].NodeID == node {
			return &k.Shares[i]
		}
	}
	return nil
}

// RSAPublicKey parses a threshold or assembled RSA key's public key.
func (k *Key) RSAPublicKey() (*rsa.PublicKey, bool) {
	pub, err := x509.ParsePKIXPublicKey(k.Public())
	if err != nil {
		return nil, false
	}
	rk, ok := pub.(*rsa.PublicKey)
	return rk, ok
}

// checkRSAThreshold checks a threshold RSA key's deal: an RSA public key
// of at least 2048 bits, one sealed share for every share holder of the
// current epoch, in node ID order, and the epoch's threshold.
func (s *State) checkRSAThreshold(c *CreateKey) *Error {
	rk := c.RSA
	if rk == nil {
		return errorf(CodeInvalid, "an rsa-threshold key needs its shares")
	}
	if len(c.R) != 0 || len(c.Sealed) != 0 || c.AssembleTTL != 0 {
		return errorf(CodeInvalid, "an rsa-threshold key has shares, not sealed material, and is never assembled")
	}
	if err := checkPublicKey(KeyTypeRSA, c.Public); err != nil {
		return err
	}
	if pub, _ := (&Key{KeyDetail: &KeyDetail{Public: c.Public}}).RSAPublicKey(); pub.N.BitLen() < minRSABits {
		return errorf(CodeInvalid, "an rsa-threshold key has at least %d bits, not %d", minRSABits, pub.N.BitLen())
	}
	if rk.Reimport != "" {
		return errorf(CodeInvalid, "a new rsa-threshold key does not need re-import")
	}
	holders := s.Holders()
	slices.SortFunc(holders, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	if rk.Threshold != s.Threshold || len(rk.Shares) != len(holders) || len(holders) > maxRSAShareCommits {
		return errorf(CodeConflict, "an rsa-threshold key must be dealt %d-of-%d to the current share holders; they changed since this deal was made", s.Threshold, len(holders))
	}
	for i, sh := range rk.Shares {
		if h := holders[i]; sh.NodeID != h.ID || sh.Index != uint32(i+1) {
			return errorf(CodeConflict, "rsa share %d is for node %q index %d, not holder %q index %d", i+1, sh.NodeID, sh.Index, h.ID, i+1)
		}
		if len(sh.R) != 32 || len(sh.Sealed) == 0 || len(sh.Sealed) > maxRSASealedLen {
			return errorf(CodeInvalid, "rsa share %d needs a 32-byte R and sealed material of 1 to %d bytes", i+1, maxRSASealedLen)
		}
	}
	return nil
}

// markRSAReimport marks every threshold RSA key dealt to a node that is
// no longer a share holder as needing re-import. It runs when a round
// makes the new epoch (completeRound), after the holders are updated.
func (t *transition) markRSAReimport() {
	s := t.s
	for name, k := range s.Keys { // each key's change is its own: the order does not matter
		if k.RSA() == nil || k.State == KeyDestroyed || k.RSA().Reimport != "" {
			continue
		}
		var gone []string
		for _, sh := range k.RSA().Shares {
			if n := s.Nodes[sh.NodeID]; n == nil || !n.Holder {
				gone = append(gone, sh.NodeID)
			}
		}
		if len(gone) == 0 && len(k.RSA().Shares) == len(s.Holders()) {
			continue
		}
		rk := *k.RSA()
		if len(gone) > 0 {
			rk.Reimport = "dealt to " + strings.Join(gone, ", ") + ", no longer share holders: destroy and import it again"
		} else {
			rk.Reimport = "the share holders changed since it was dealt: destroy and import it again so new members hold shares"
		}
		k = t.editKey(name)
		d := k.Detail()
		d.RSA = &rk
		k.SetDetail(d)
		k.UpdatedAt = t.now
		t.keyChanged(name)
	}
}
