package shamir

import (
	"fmt"
	"io"
	"sync"

	"filippo.io/edwards25519"
)

// Prover makes the partials of one share, as ComputePartial does, for a
// holder that answers release after release with the same share: the
// share is decoded, and its public share s_i*G computed, once. The value
// s_i*R of a ciphertext is the caller's to keep (Value computes it, and
// Partial takes it), since the same R comes back with every release of
// its key: the caller decides when a value is forgotten (when the key
// changes). A Prover is safe for concurrent use; Erase overwrites the
// share, after which every call fails.
type Prover struct {
	mu    sync.RWMutex
	index uint32
	s     *edwards25519.Scalar // nil once erased
	pub   []byte               // s*G
}

// NewProver decodes sh for making partials with it. sh itself is not
// kept: the caller erases it when it likes.
func NewProver(sh *Share) (*Prover, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil share", ErrInvalidScalar)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	return &Prover{index: sh.Index, s: s, pub: new(edwards25519.Point).ScalarBaseMult(s).Bytes()}, nil
}

// Index is the share's index.
func (p *Prover) Index() uint32 { return p.index }

// Erase overwrites the share.
func (p *Prover) Erase() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	wipeScalar(p.s)
	p.s = nil
}

// Value returns s_i*R for a ciphertext point R (fully checked, as
// ComputePartial checks it). It is as secret as a partial: t of them
// rebuild r*X, which opens the ciphertext.
func (p *Prover) Value(R []byte) ([]byte, error) {
	Rp, err := decodeCiphertextPoint(R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext R: %w", err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, fmt.Errorf("%w: the share was erased", ErrInvalidScalar)
	}
	return new(edwards25519.Point).ScalarMult(p.s, Rp).Bytes(), nil
}

// Partial is ComputePartial's partial for R and context, with the value
// V = s_i*R that Value returned for R (a wrong V gets a proof that fails,
// never another value's proof). Its proof also carries its commitments
// (Partial.Commits), for a verifier that checks several at once.
func (p *Prover) Partial(rand io.Reader, R, V []byte, context []byte) (*Partial, error) {
	Rp, err := decodeCiphertextPoint(R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext R: %w", err)
	}
	if len(V) != PointSize {
		return nil, fmt.Errorf("%w: value of %d bytes", ErrInvalidPoint, len(V))
	}
	return p.partial(rand, Rp, R, V, context)
}

// Compute is Value and Partial at once, for an R whose value the caller
// does not keep (a transit item's point): R is decoded and checked once.
func (p *Prover) Compute(rand io.Reader, R []byte, context []byte) (*Partial, error) {
	Rp, err := decodeCiphertextPoint(R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext R: %w", err)
	}
	p.mu.RLock()
	if p.s == nil {
		p.mu.RUnlock()
		return nil, fmt.Errorf("%w: the share was erased", ErrInvalidScalar)
	}
	V := new(edwards25519.Point).ScalarMult(p.s, Rp).Bytes()
	p.mu.RUnlock()
	return p.partial(rand, Rp, R, V, context)
}

func (p *Prover) partial(rand io.Reader, Rp *edwards25519.Point, R, V, context []byte) (*Partial, error) {
	w, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(w)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, fmt.Errorf("%w: the share was erased", ErrInvalidScalar)
	}
	enc := encodePoints(
		new(edwards25519.Point).ScalarBaseMult(w),
		new(edwards25519.Point).ScalarMult(w, Rp))
	A1, A2 := enc[0], enc[1]
	c := dleqChallenge(R, p.pub, V, A1, A2, p.index, context)
	z := edwards25519.NewScalar().Multiply(c, p.s)
	z.Subtract(w, z) // z = w - c*s
	return &Partial{Index: p.index, Value: append([]byte(nil), V...), Challenge: c.Bytes(), Response: z.Bytes(),
		Commits: append(A1, A2...)}, nil
}

// VerifyBatch checks the proofs of ps at once, each as VerifyProof checks
// it (the values' subgroup check is left to Open), when every partial
// carries its commitments (Partial.Commits): it recomputes each challenge
// from the commitments, then checks the 2n equations A1 = z*G + c*S_i and
// A2 = z*R + c*V of the n proofs as one random linear combination, with
// 128-bit weights from rand, multiplied by the cofactor: one
// multi-scalar multiplication instead of 2n. A false proof passes with
// probability about 2^-128. Multiplying by the cofactor drops the
// small-order components of the commitments and the values, so what a
// batch shows is what VerifyProof shows: the prime-order part of each
// value is s_i*R.
//
// ok is false when a partial lacks commitments, carries bad ones or a bad
// proof: the caller then checks each with VerifyProof, which decides and
// names the partials at fault (a partial whose proof is good but whose
// commitments are not passes there).
func (v *Verifier) VerifyBatch(rand io.Reader, ps []*Partial) (verified []*VerifiedPartial, ok bool) {
	all, ok := VerifyBatches(rand, []*Verifier{v}, [][]*Partial{ps})
	if !ok {
		return nil, false
	}
	return all[0], true
}

// VerifyBatches is VerifyBatch for the partials of several verifiers
// (several ciphertext points and contexts: a batch of transit items):
// ps[k] are the partials of vs[k], and every proof of every verifier is
// checked in one multi-scalar multiplication, each weighted by its own
// random pair. verified[k] are vs[k]'s, as VerifyBatch returns them; it
// decides each as VerifyProof would, and false tells nothing of which
// failed: check them one by one to name it.
func VerifyBatches(rand io.Reader, vs []*Verifier, ps [][]*Partial) (verified [][]*VerifiedPartial, ok bool) {
	total := 0
	for k := range ps {
		if len(ps[k]) == 0 {
			return nil, false
		}
		total += len(ps[k])
	}
	if len(vs) == 0 || len(vs) != len(ps) || rand == nil {
		return nil, false
	}
	weights := make([]byte, 32*total)
	if _, err := io.ReadFull(rand, weights); err != nil {
		return nil, false
	}
	gCoef := edwards25519.NewScalar()
	scalars := make([]*edwards25519.Scalar, 0, 1+len(vs)+4*total)
	points := make([]*edwards25519.Point, 0, 1+len(vs)+4*total)
	verified = make([][]*VerifiedPartial, len(vs))
	w := 0
	for k, v := range vs {
		if v == nil {
			return nil, false
		}
		rCoef := edwards25519.NewScalar()
		verified[k] = make([]*VerifiedPartial, len(ps[k]))
		for i, p := range ps[k] {
			if p == nil || p.Index == 0 || len(p.Commits) != 2*PointSize {
				return nil, false
			}
			c, err1 := decodeScalar(p.Challenge)
			z, err2 := decodeScalar(p.Response)
			V, err3 := decodePointNoSubgroup(p.Value)
			A1, err4 := decodePointNoSubgroup(p.Commits[:PointSize])
			A2, err5 := decodePointNoSubgroup(p.Commits[PointSize:])
			if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
				return nil, false
			}
			S, Sb := v.publicShare(p.Index)
			want := dleqChallenge(v.r, Sb, p.Value, p.Commits[:PointSize], p.Commits[PointSize:], p.Index, v.context)
			if want.Equal(c) != 1 {
				return nil, false
			}
			rho, sigma := weight(weights[32*w:32*w+16]), weight(weights[32*w+16:32*w+32])
			w++
			gCoef.MultiplyAdd(rho, z, gCoef)
			rCoef.MultiplyAdd(sigma, z, rCoef)
			scalars = append(scalars,
				edwards25519.NewScalar().Multiply(rho, c), edwards25519.NewScalar().Multiply(sigma, c),
				edwards25519.NewScalar().Negate(rho), edwards25519.NewScalar().Negate(sigma))
			points = append(points, S, V, A1, A2)
			verified[k][i] = &VerifiedPartial{index: p.Index, value: V, by: v, subgroupLater: true}
		}
		scalars = append(scalars, rCoef)
		points = append(points, v.rp)
	}
	scalars = append(scalars, gCoef)
	points = append(points, edwards25519.NewGeneratorPoint())
	sum := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	if sum.MultByCofactor(sum).Equal(identityPoint) != 1 {
		return nil, false
	}
	return verified, true
}

// weight is a 128-bit scalar from the 16 bytes b, never zero.
func weight(b []byte) *edwards25519.Scalar {
	var buf [ScalarSize]byte
	copy(buf[:16], b)
	buf[0] |= 1
	s, err := edwards25519.NewScalar().SetCanonicalBytes(buf[:])
	if err != nil {
		panic("shamir: a 128-bit integer is not a canonical scalar")
	}
	return s
}
