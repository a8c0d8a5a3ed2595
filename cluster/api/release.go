package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// SealedRelease is a blind release: what the coordinating node relays for
// a release request that carries an ephemeral key (an operator's or a
// machine's). Every share holder sealed its partial, with its DLEQ proof,
// to that key; the node relays them with the key's ciphertext and the
// epoch's public polynomial, and never holds what opens them. The client
// opens it with Open.
type SealedRelease = vocab.UnlockReply

// SealedPartial is a holder's partial (the JSON of a shamir.Partial)
// sealed to the request's ephemeral key with shamir.Seal, under
// fsm.PartialSealInfo. Node names the holder, for the client's errors.
type SealedPartial = vocab.SealedPartial

// OpenRelease checks a blind release r and decrypts it: the release must be of key
// name in cluster clusterID, and its public polynomial's constant term
// must be pin, the cluster public key the client pinned. A polynomial the
// node forged with that constant term gets no valid proof (fsm/checkpoint.go
// argues it), so t partials whose proofs verify come from t holders of the
// pinned key. Every partial must open with ephPriv and carry a valid proof
// for the request whose signed payload is payload. A partial that fails is
// named in the error, by share index and node, whether or not t others
// passed: a holder or the coordinator lied. The error never carries key
// material.
func OpenRelease(r *SealedRelease, clusterID, name string, pin, payload, ephPriv []byte) ([]byte, error) {
	if r.Key != name {
		return nil, fmt.Errorf("the release is of key %q, not %q", r.Key, name)
	}
	if r.ClusterID != clusterID {
		return nil, fmt.Errorf("the release is from cluster %q, not the pinned %q", r.ClusterID, clusterID)
	}
	poly := &shamir.PublicPoly{Commits: r.Poly}
	if err := poly.Validate(); err != nil {
		return nil, fmt.Errorf("public polynomial: %w", err)
	}
	t := poly.Threshold()
	if r.Threshold != t {
		return nil, fmt.Errorf("threshold %d does not match the polynomial's %d", r.Threshold, t)
	}
	if len(pin) == 0 || subtle.ConstantTimeCompare(poly.Commits[0], pin) != 1 {
		return nil, errors.New("the node sent a public polynomial that is not for the pinned cluster public key: refusing its release")
	}
	rctx := fsm.ReleaseContext(r.ClusterID, name, r.Version, r.Epoch, payload)
	var good []*shamir.Partial
	var rejected []string
	seen := map[uint32]bool{}
	for i := range r.Partials {
		sp := &r.Partials[i]
		p, err := openPartial(sp, ephPriv, rctx)
		if err == nil && seen[p.Index] {
			err = errors.New("a second partial for the same share")
		}
		if err == nil {
			err = shamir.VerifyPartial(poly, r.R, p, rctx)
		}
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("partial of share %d (node %q): %v", sp.Index, sp.Node, err))
			continue
		}
		seen[p.Index] = true
		good = append(good, p)
	}
	if len(rejected) > 0 {
		return nil, fmt.Errorf("rejected %d of %d partials: %s", len(rejected), len(r.Partials), strings.Join(rejected, "; "))
	}
	if len(good) < t {
		return nil, fmt.Errorf("%d partials, %d needed", len(good), t)
	}
	secret, err := shamir.Open(poly, &shamir.Ciphertext{R: r.R, Sealed: r.Sealed}, fsm.SealInfo(r.ClusterID, name), good[:t], rctx)
	if err != nil {
		return nil, fmt.Errorf("opening the secret with verified partials: %w", err)
	}
	return secret, nil
}

// openPartial opens one holder's sealed partial.
func openPartial(sp *SealedPartial, ephPriv, rctx []byte) (*shamir.Partial, error) {
	if sp.Index == 0 {
		return nil, errors.New("share index 0")
	}
	pt, err := shamir.OpenWithKey(ephPriv, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(rctx, sp.Index))
	if err != nil {
		return nil, fmt.Errorf("does not open with the request's ephemeral key: %w", err)
	}
	defer clear(pt)
	var p shamir.Partial
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("is not a partial: %v", err)
	}
	if p.Index != sp.Index {
		return nil, fmt.Errorf("says it is of share %d", p.Index)
	}
	return &p, nil
}
