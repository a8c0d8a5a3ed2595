package api

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Proofs of possession (issue 9, hole 3). t members agreeing on a status
// is not enough on its own: one node that lists itself as the only
// holder, with threshold 1, agrees with itself. So a client that confirms
// a view also challenges its holders: each answers a fresh nonce with a
// partial s_i·H on a point H hashed from the cluster, its epoch, the
// holder's node ID and the nonce, with a DLEQ proof that the partial's
// discrete log is that of its public share Poly(i)·G (shamir.ComputePartial).
// Each proof is a proof of knowledge of s_i, so t valid proofs at
// distinct indexes against one polynomial whose constant term is X mean
// their makers know t evaluations of that polynomial, hence X's secret
// (the argument of fsm/checkpoint.go): a lone liar claiming t=1 would have
// to know the cluster secret itself. H differs for every holder, so the
// answers never combine into anything but the proofs they are.

// PossessionPath is where a node answers a challenge (POST, an
// operator's call).
const PossessionPath = "/v1/cluster/possession"

// PossessionNonceSize is the size of a challenge's nonce.
const PossessionNonceSize = 32

// PossessionRequest is a client's challenge: a fresh random nonce.
type PossessionRequest struct {
	Nonce []byte `json:"nonce"`
}

// Possession is a holder's answer to a challenge: its partial with a DLEQ
// proof, for its share of epoch Epoch, against the epoch's public
// polynomial Poly (Poly[0] is the cluster key).
type Possession struct {
	ClusterID string      `json:"cluster_id"`
	Node      string      `json:"node"`
	Epoch     uint64      `json:"epoch"`
	Poly      [][]byte    `json:"poly"`
	Partial   fsm.Partial `json:"partial"`
}

// PossessionMessage is what a proof of possession is for: H is
// shamir.HashToPoint(vocab.LabelPossession, msg), and msg is the proof's
// context.
func PossessionMessage(clusterID string, epoch uint64, nodeID string, nonce []byte) []byte {
	b := []byte(vocab.LabelPossession + "\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(clusterID)))
	b = append(b, clusterID...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(nodeID)))
	b = append(b, nodeID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(nonce)))
	return append(b, nonce...)
}

// ProvePossession is holder nodeID's answer to the challenge nonce, with
// its share sh of epoch epoch, whose public polynomial is poly.
func ProvePossession(rand io.Reader, sh *shamir.Share, clusterID string, epoch uint64, nodeID string, poly [][]byte, nonce []byte) (*Possession, error) {
	if len(nonce) != PossessionNonceSize {
		return nil, fmt.Errorf("a challenge's nonce is %d bytes, not %d", len(nonce), PossessionNonceSize)
	}
	msg := PossessionMessage(clusterID, epoch, nodeID, nonce)
	H, err := shamir.HashToPoint(vocab.LabelPossession, msg)
	if err != nil {
		return nil, err
	}
	p, err := shamir.ComputePartial(rand, sh, H, msg)
	if err != nil {
		return nil, err
	}
	out := &Possession{ClusterID: clusterID, Node: nodeID, Epoch: epoch,
		Partial: fsm.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}}
	for _, c := range poly {
		out.Poly = append(out.Poly, append([]byte(nil), c...))
	}
	return out, nil
}

// PossessionCheck counts the holders of a view that proved their shares:
// Add checks each answer, Proven is how many distinct share indexes
// proved against one polynomial of the view's threshold whose constant
// term is the view's key. Once Proven reaches the threshold, the holders
// of the view hold t shares of PublicKey. Not safe for concurrent use.
type PossessionCheck struct {
	ClusterID string
	Epoch     uint64
	Threshold int
	// PublicKey is the view's cluster key: the pin, when there is one.
	PublicKey []byte
	proven    map[string]map[uint32]bool // by polynomial
}

// Add checks holder node's answer p to the challenge nonce, node being at
// share index in the view. The error says what is wrong, without key
// bytes.
func (c *PossessionCheck) Add(p *Possession, node string, index uint32, nonce []byte) error {
	switch {
	case p == nil:
		return errors.New("no proof of possession")
	case c.Threshold < 1 || len(c.PublicKey) == 0:
		return errors.New("no view to check the proof against")
	case p.ClusterID != c.ClusterID:
		return fmt.Errorf("proves a share of cluster %q, not %q", p.ClusterID, c.ClusterID)
	case p.Node != node:
		return fmt.Errorf("proves a share as node %q", p.Node)
	case p.Epoch != c.Epoch:
		return fmt.Errorf("proves a share of key epoch %d, not %d", p.Epoch, c.Epoch)
	case p.Partial.Index != index:
		return fmt.Errorf("proves share %d, where the view lists it at %d", p.Partial.Index, index)
	}
	poly := &shamir.PublicPoly{Commits: p.Poly}
	if err := poly.Validate(); err != nil {
		return fmt.Errorf("proves against a bad polynomial: %w", err)
	}
	if poly.Threshold() != c.Threshold {
		return fmt.Errorf("proves against a polynomial of threshold %d, not %d", poly.Threshold(), c.Threshold)
	}
	if subtle.ConstantTimeCompare(poly.Commits[0], c.PublicKey) != 1 {
		return errors.New("proves against a polynomial that is not for the cluster key")
	}
	msg := PossessionMessage(c.ClusterID, c.Epoch, node, nonce)
	H, err := shamir.HashToPoint(vocab.LabelPossession, msg)
	if err != nil {
		return err
	}
	part := &shamir.Partial{Index: p.Partial.Index, Value: p.Partial.Value, Challenge: p.Partial.Challenge, Response: p.Partial.Response}
	if err := shamir.VerifyPartial(poly, H, part, msg); err != nil {
		return fmt.Errorf("its proof of possession fails: %w", err)
	}
	key := polyKey(p.Poly)
	if c.proven == nil {
		c.proven = map[string]map[uint32]bool{}
	}
	if c.proven[key] == nil {
		c.proven[key] = map[uint32]bool{}
	}
	c.proven[key][index] = true
	return nil
}

// Proven is the most distinct share indexes proven against one
// polynomial.
func (c *PossessionCheck) Proven() int {
	most := 0
	for _, idx := range c.proven {
		most = max(most, len(idx))
	}
	return most
}

func polyKey(poly [][]byte) string {
	var b strings.Builder
	for _, c := range poly {
		b.Write(c)
	}
	return b.String()
}
