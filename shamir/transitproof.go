package shamir

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/vocab"
)

// The encryptor's proof of a transit ciphertext (docs/transit.md, "Why
// decrypt is not derive"): a Schnorr proof of knowledge of r with
// E = r*G, bound to the ciphertext's binding (key ID, version, context),
// as in signed ElGamal (Schnorr and Jakobsson; Shoup and Gennaro's TDH1
// is the same idea with a proof provable in the random oracle model
// alone). A holder answers s_i*E only for a point with a valid proof,
// which whoever made it could make only knowing r, and so s*E = r*P:
// an encryptor's point for that binding (the answer decrypts its
// ciphertext) or one the caller made up (the answer tells it what it
// knew). A point nobody knows the discrete log of (a derivation's
// HashToPoint) has no proof, so a decryption cannot stand in for a
// derivation.
//
//	prove:   k random, R = k*G, c = H(binding, E, R), z = k + c*r
//	verify:  8*(z*G - c*E - R) == identity
//	proof:   R || z (64 bytes; R canonical, z canonical)
//
// The check is cofactored, so that a batch (a random linear combination
// of the equations, one multi-scalar multiplication) accepts exactly what
// the item-by-item checks accept. E itself must be in the prime-order
// subgroup (checked here, as ComputePartial checks it), so the proof
// shows knowledge of r with E = r*G.

// TransitProofSize is the size of a transit ciphertext's proof.
const TransitProofSize = PointSize + ScalarSize

// ErrBadTransitProof is a transit ciphertext's proof that does not verify
// for its point and binding, or is not a proof's encoding.
var ErrBadTransitProof = errors.New("shamir: the ciphertext's proof does not verify")

// transitProve proves knowledge of r, E = r*G, for binding.
func transitProve(rand io.Reader, r *edwards25519.Scalar, E, binding []byte) ([]byte, error) {
	k, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(k)
	R := new(edwards25519.Point).ScalarBaseMult(k).Bytes()
	c := transitProofChallenge(binding, E, R)
	z := edwards25519.NewScalar().MultiplyAdd(c, r, k)
	return append(R, z.Bytes()...), nil
}

// transitProofChallenge is SHA-512(label, len(binding), binding, E, R)
// reduced modulo l.
func transitProofChallenge(binding, E, R []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write([]byte(vocab.LabelTransitProof + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(binding))))
	h.Write(binding)
	h.Write(E)
	h.Write(R)
	c, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic("shamir: SHA-512 output is not 64 bytes")
	}
	return c
}

// ValidateTransitProof checks a proof's encoding alone: 64 bytes, R a
// canonical point of order above 8, z a canonical scalar. It is what a
// parser checks; VerifyTransitProof checks the proof itself.
func ValidateTransitProof(proof []byte) error {
	_, _, err := decodeTransitProof(proof)
	return err
}

func decodeTransitProof(proof []byte) (*edwards25519.Point, *edwards25519.Scalar, error) {
	if len(proof) != TransitProofSize {
		return nil, nil, fmt.Errorf("%w: a proof is %d bytes, not %d", ErrBadTransitProof, TransitProofSize, len(proof))
	}
	R, err := decodePointNoSubgroup(proof[:PointSize])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: its commitment: %w", ErrBadTransitProof, err)
	}
	z, err := decodeScalar(proof[PointSize:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: its response: %w", ErrBadTransitProof, err)
	}
	return R, z, nil
}

// TransitProofItem is one ciphertext's point E, its proof and its binding.
type TransitProofItem struct {
	Binding []byte
	E       []byte
	Proof   []byte
}

// transitProofTerms are an item's decoded points and scalars.
type transitProofTerms struct {
	E, R *edwards25519.Point
	c, z *edwards25519.Scalar
}

func (it *TransitProofItem) decode() (*transitProofTerms, error) {
	E, err := decodeCiphertextPoint(it.E)
	if err != nil {
		return nil, fmt.Errorf("the ciphertext's point: %w", err)
	}
	R, z, err := decodeTransitProof(it.Proof)
	if err != nil {
		return nil, err
	}
	return &transitProofTerms{E: E, R: R, z: z, c: transitProofChallenge(it.Binding, it.E, it.Proof[:PointSize])}, nil
}

// check is the item's own equation: 8*(z*G - c*E - R) == identity.
func (t *transitProofTerms) check() error {
	p := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(new(edwards25519.Scalar).Negate(t.c), t.E, t.z)
	p.Subtract(p, t.R)
	if p.MultByCofactor(p).Equal(identityPoint) != 1 {
		return ErrBadTransitProof
	}
	return nil
}

// VerifyTransitProof checks one ciphertext's proof for its point and
// binding.
func VerifyTransitProof(binding, E, proof []byte) error {
	it := TransitProofItem{Binding: binding, E: E, Proof: proof}
	t, err := it.decode()
	if err != nil {
		return err
	}
	return t.check()
}

// VerifyTransitProofs checks items' proofs with one multi-scalar
// multiplication: with random 128-bit a_i from rand,
//
//	8*(sum a_i*R_i + sum (a_i*c_i)*E_i - (sum a_i*z_i)*G) == identity
//
// holds for every valid batch, and for a batch with an invalid item with
// probability at most 2^-128 over the a_i. If it does not hold, each item
// is checked alone. It returns nil when every proof verifies, else one
// error per item (nil for the good ones).
func VerifyTransitProofs(rand io.Reader, items []TransitProofItem) []error {
	errs := make([]error, len(items))
	terms := make([]*transitProofTerms, len(items))
	bad := false
	for i := range items {
		if terms[i], errs[i] = items[i].decode(); errs[i] != nil {
			bad = true
		}
	}
	if len(items) == 1 && !bad {
		if errs[0] = terms[0].check(); errs[0] == nil {
			return nil
		}
		return errs
	}
	if !bad {
		ok, err := batchCheck(rand, terms)
		if err == nil && ok {
			return nil
		}
	}
	// Some item is bad: each one alone names it.
	for i, t := range terms {
		if t != nil {
			errs[i] = t.check()
		}
	}
	return errs
}

// batchCheck is the random linear combination of terms' equations,
// arranged so that the multi-scalar multiplication takes the short a_i
// as they are (a negated a_i would be a full-length scalar):
// sum a_i*R_i + sum (a_i*c_i)*E_i against (sum a_i*z_i)*G, by the
// cofactor.
func batchCheck(rand io.Reader, terms []*transitProofTerms) (bool, error) {
	if rand == nil {
		return false, errors.New("shamir: nil randomness source")
	}
	coeffs := make([]byte, 16*len(terms))
	if _, err := io.ReadFull(rand, coeffs); err != nil {
		return false, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	scalars := make([]*edwards25519.Scalar, 0, 2*len(terms))
	points := make([]*edwards25519.Point, 0, 2*len(terms))
	sumZ := edwards25519.NewScalar()
	var buf [ScalarSize]byte
	for i, t := range terms {
		copy(buf[:16], coeffs[16*i:])
		a, err := edwards25519.NewScalar().SetCanonicalBytes(buf[:])
		if err != nil {
			return false, err
		}
		sumZ.MultiplyAdd(a, t.z, sumZ)
		scalars = append(scalars, a, new(edwards25519.Scalar).Multiply(a, t.c))
		points = append(points, t.R, t.E)
	}
	p := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	p.Subtract(p, new(edwards25519.Point).ScalarBaseMult(sumZ))
	return p.MultByCofactor(p).Equal(identityPoint) == 1, nil
}
