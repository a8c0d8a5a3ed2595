package shamir

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"fmt"
	"slices"

	"filippo.io/edwards25519"
)

// Share is one node's private share of the cluster secret at one epoch:
// Value = f(Index), a 32-byte canonical scalar. Index is the 1-based
// x-coordinate.
type Share struct {
	Index uint32
	Value []byte
}

// Erase overwrites the share value with zeros and drops it. Call it when a
// reshare has completed and the share is no longer needed.
func (s *Share) Erase() {
	if s == nil {
		return
	}
	clear(s.Value)
	s.Value = nil
}

// PublicPoly holds the Feldman commitments C_j = a_j*G to the coefficients
// of the sharing polynomial f(x) = a_0 + a_1 x + ... + a_{t-1} x^{t-1}.
// Commits[0] = x*G is the cluster public key.
//
// The hot-path methods (PublicShare, VerifyShare, VerifyPartial, Open) only
// perform the cheap point checks on the commitments; a polynomial received
// from elsewhere should be checked once with Validate. Polynomials returned
// by CombineFresh and CombineReshare are valid.
type PublicPoly struct {
	Commits [][]byte
}

// Threshold returns t, the number of shares needed: len(Commits).
func (p *PublicPoly) Threshold() int {
	if p == nil {
		return 0
	}
	return len(p.Commits)
}

// PublicKey returns a copy of Commits[0], the cluster public key, or nil for
// an empty polynomial.
func (p *PublicPoly) PublicKey() []byte {
	if p.Threshold() == 0 {
		return nil
	}
	return slices.Clone(p.Commits[0])
}

// Validate checks that the polynomial has at least one commitment and that
// every commitment is a valid prime-order point (not the identity, not of
// small order, canonical).
func (p *PublicPoly) Validate() error {
	if p.Threshold() == 0 {
		return fmt.Errorf("%w: public polynomial has no commitments", ErrBadThreshold)
	}
	_, err := decodePoints(p.Commits, "commitment")
	return err
}

// Equal reports whether both polynomials have byte-identical commitments.
func (p *PublicPoly) Equal(q *PublicPoly) bool {
	if p.Threshold() != q.Threshold() {
		return false
	}
	for i := range p.Commits {
		if !bytes.Equal(p.Commits[i], q.Commits[i]) {
			return false
		}
	}
	return true
}

// PublicShare returns f(index)*G, the public key of the share at index.
func (p *PublicPoly) PublicShare(index uint32) ([]byte, error) {
	s, err := p.publicSharePoint(index)
	if err != nil {
		return nil, err
	}
	return s.Bytes(), nil
}

// publicSharePoint evaluates sum_j C_j * index^j by Horner's rule with short
// (32-bit) multiplications.
func (p *PublicPoly) publicSharePoint(index uint32) (*edwards25519.Point, error) {
	if index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	t := p.Threshold()
	if t == 0 {
		return nil, fmt.Errorf("%w: public polynomial has no commitments", ErrBadThreshold)
	}
	commits := make([]*edwards25519.Point, t)
	for j, b := range p.Commits {
		c, err := decodePointNoSubgroup(b)
		if err != nil {
			return nil, fmt.Errorf("commitment %d: %w", j, err)
		}
		commits[j] = c
	}
	return evalCommits(commits, index), nil
}

// evalCommits is publicSharePoint on decoded commitments (at least one),
// index not 0.
func evalCommits(commits []*edwards25519.Point, index uint32) *edwards25519.Point {
	acc := new(edwards25519.Point).Set(commits[len(commits)-1])
	for j := len(commits) - 2; j >= 0; j-- {
		acc = mulSmall(acc, index)
		acc.Add(acc, commits[j])
	}
	return acc
}

// VerifyShare checks a private share against the polynomial:
// Value*G == f(Index)*G.
func (p *PublicPoly) VerifyShare(s *Share) error {
	if s == nil {
		return fmt.Errorf("%w: nil share", ErrBadShare)
	}
	want, err := p.publicSharePoint(s.Index)
	if err != nil {
		return err
	}
	v, err := decodeSecretScalar(s.Value)
	if err != nil {
		return fmt.Errorf("share %d: %w", s.Index, err)
	}
	got := new(edwards25519.Point).ScalarBaseMult(v)
	wipeScalar(v)
	if subtle.ConstantTimeCompare(got.Bytes(), want.Bytes()) != 1 {
		return fmt.Errorf("share %d: %w", s.Index, ErrBadShare)
	}
	return nil
}

// CombineShares interpolates the secret f(0) from t of shares (the t
// smallest indexes), each checked against poly first (VerifyShare: a
// share off the polynomial is ErrBadShare, naming its index), and checks
// the result against poly's public key. It is how a caller that asked for
// a key's shares (a wrapped export, docs/transit.md) rebuilds the scalar;
// the caller erases it.
func CombineShares(poly *PublicPoly, shares []*Share) ([]byte, error) {
	t := poly.Threshold()
	if t < 1 {
		return nil, fmt.Errorf("%w: no commitments", ErrBadThreshold)
	}
	for _, sh := range shares {
		if err := poly.VerifyShare(sh); err != nil {
			return nil, err
		}
	}
	if len(shares) < t {
		return nil, fmt.Errorf("%w: %d shares, need %d", ErrNotEnoughPartials, len(shares), t)
	}
	shares = slices.SortedFunc(slices.Values(shares), func(a, b *Share) int { return cmp.Compare(a.Index, b.Index) })[:t]
	xs := make([]uint32, t)
	for i, sh := range shares {
		xs[i] = sh.Index
	}
	lambdas, err := lagrangeAtZero(xs)
	if err != nil {
		return nil, err
	}
	sum := edwards25519.NewScalar()
	defer wipeScalar(sum)
	for i, sh := range shares {
		v, err := decodeSecretScalar(sh.Value)
		if err != nil {
			return nil, err
		}
		sum.MultiplyAdd(lambdas[i], v, sum)
		wipeScalar(v)
	}
	if subtle.ConstantTimeCompare(new(edwards25519.Point).ScalarBaseMult(sum).Bytes(), poly.PublicKey()) != 1 {
		return nil, fmt.Errorf("%w: the shares do not combine to the public key", ErrBadShare)
	}
	return sum.Bytes(), nil
}
