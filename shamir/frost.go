package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

// FROST(Ed25519, SHA-512), RFC 9591: two-round threshold Schnorr
// signatures that crypto/ed25519 verifies. The signing key x is shared
// t-of-n like the cluster secret (a Share is s_i = f(i), the PublicPoly's
// Commits[0] = x*G is the Ed25519 public key), so the same DKG, dealing
// and resharing make and move FROST keys.
//
// Round one (FROSTCommit): a signer draws a hiding and a binding nonce,
// each H3(32 random bytes || its share), and publishes their commitments.
// Round two (FROSTRound.Sign): given the message and the commitments of
// the t signers, it computes its signature share
// z_i = d_i + e_i*rho_i + lambda_i*s_i*c. The aggregator checks every
// share against the signer's public share (VerifyShare) and adds them
// (Aggregate). FROST is not robust: one bad share spoils the signature,
// so the aggregator names that signer and starts over with another set.
//
// Nonces are the whole of FROST's safety: a nonce pair used for two
// different rounds gives away the share (two equations, one unknown).
// FROSTRound.Sign erases the nonces it is given, whatever happens; the
// caller must make sure a pair is handed to Sign at most once (in
// keyquorum, a holder takes it out of its pool before it signs).

// frostContext is the ciphersuite's contextString (RFC 9591, 6.1).
const frostContext = "FROST-ED25519-SHA512-v1"

// SignatureSize is the size of an Ed25519 signature, R || z.
const SignatureSize = ed25519.SignatureSize

// Errors of FROST signing.
var (
	// ErrBadSignatureShare: a signature share that does not verify
	// against its signer's public share and commitment.
	ErrBadSignatureShare = errors.New("shamir: bad signature share")
	// ErrBadCommitments: a commitment list that is empty, unsorted, has
	// a duplicate or invalid index or point, or lacks the signer.
	ErrBadCommitments = errors.New("shamir: bad nonce commitments")
	// ErrNoncesSpent: nonces that were used (and erased) already.
	ErrNoncesSpent = errors.New("shamir: nonces already used")
)

// NonceCommitment is a signer's public round-one output: D = d*G and
// E = e*G for its hiding nonce d and binding nonce e.
type NonceCommitment struct {
	Index   uint32 `json:"index"`
	Hiding  []byte `json:"hiding"`
	Binding []byte `json:"binding"`
}

// SigningNonces are a signer's secret round-one output. Use them in one
// FROSTRound.Sign, which erases them.
type SigningNonces struct {
	hiding, binding *edwards25519.Scalar
	commitment      NonceCommitment
}

// Commitment returns the public commitment to the nonces.
func (n *SigningNonces) Commitment() NonceCommitment {
	c := n.commitment
	c.Hiding = slices.Clone(c.Hiding)
	c.Binding = slices.Clone(c.Binding)
	return c
}

// Erase overwrites the nonces; Sign refuses them afterwards.
func (n *SigningNonces) Erase() {
	if n == nil {
		return
	}
	wipeScalar(n.hiding)
	wipeScalar(n.binding)
	n.hiding, n.binding = nil, nil
}

func frostHash(tag string, parts ...[]byte) *edwards25519.Scalar {
	h := sha512.New()
	if tag != "" {
		h.Write([]byte(frostContext))
		h.Write([]byte(tag))
	}
	for _, p := range parts {
		h.Write(p)
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic("shamir: SHA-512 output is not 64 bytes")
	}
	return s
}

// frostDigest is H4 and H5: a 64-byte hash, not reduced.
func frostDigest(tag string, msg []byte) []byte {
	h := sha512.New()
	h.Write([]byte(frostContext))
	h.Write([]byte(tag))
	h.Write(msg)
	return h.Sum(nil)
}

// FROSTCommit is round one for the holder of sh: fresh nonces and their
// commitment.
func FROSTCommit(rand io.Reader, sh *Share) (*SigningNonces, error) {
	if rand == nil {
		return nil, errors.New("shamir: nil randomness source")
	}
	var r [64]byte
	defer clear(r[:])
	if _, err := io.ReadFull(rand, r[:]); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	return frostCommitWith(sh, r[:32], r[32:])
}

// frostCommitWith is FROSTCommit with the nonces' randomness given (the
// RFC's test vectors fix it).
func frostCommitWith(sh *Share, hidingRand, bindingRand []byte) (*SigningNonces, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil share", ErrBadShare)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	wipeScalar(s)
	d := frostHash("nonce", hidingRand, sh.Value)
	e := frostHash("nonce", bindingRand, sh.Value)
	if d.Equal(zeroScalar) == 1 || e.Equal(zeroScalar) == 1 {
		return nil, errors.New("shamir: degenerate nonce")
	}
	return &SigningNonces{hiding: d, binding: e, commitment: NonceCommitment{
		Index:   sh.Index,
		Hiding:  new(edwards25519.Point).ScalarBaseMult(d).Bytes(),
		Binding: new(edwards25519.Point).ScalarBaseMult(e).Bytes(),
	}}, nil
}

// FROSTRound is what every participant of one signing round computes from
// the public inputs: the group public key, the message and the signers'
// commitments. It holds no secret.
type FROSTRound struct {
	publicKey   []byte
	msg         []byte
	commitments []NonceCommitment
	index       map[uint32]int // index -> position in commitments
	rho         []*edwards25519.Scalar
	lambda      []*edwards25519.Scalar
	hiding      []*edwards25519.Point
	binding     []*edwards25519.Point
	r           []byte // the group commitment R, encoded
	c           *edwards25519.Scalar
}

// NewFROSTRound checks the commitments (sorted by index, distinct indexes,
// every point valid and in the prime-order subgroup) and computes the
// binding factors, the group commitment and the challenge.
func NewFROSTRound(publicKey, msg []byte, commitments []NonceCommitment) (*FROSTRound, error) {
	pk, err := decodePoint(publicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if len(commitments) == 0 {
		return nil, fmt.Errorf("%w: none", ErrBadCommitments)
	}
	r := &FROSTRound{
		publicKey:   pk.Bytes(),
		msg:         slices.Clone(msg),
		commitments: make([]NonceCommitment, len(commitments)),
		index:       make(map[uint32]int, len(commitments)),
	}
	xs := make([]uint32, len(commitments))
	for i, c := range commitments {
		if c.Index == 0 {
			return nil, fmt.Errorf("%w: index 0", ErrBadCommitments)
		}
		if i > 0 && c.Index <= commitments[i-1].Index {
			return nil, fmt.Errorf("%w: indexes not strictly increasing at %d", ErrBadCommitments, c.Index)
		}
		d, err := decodePoint(c.Hiding)
		if err != nil {
			return nil, fmt.Errorf("%w: hiding commitment of %d: %w", ErrBadCommitments, c.Index, err)
		}
		e, err := decodePoint(c.Binding)
		if err != nil {
			return nil, fmt.Errorf("%w: binding commitment of %d: %w", ErrBadCommitments, c.Index, err)
		}
		r.hiding = append(r.hiding, d)
		r.binding = append(r.binding, e)
		r.commitments[i] = NonceCommitment{Index: c.Index, Hiding: slices.Clone(c.Hiding), Binding: slices.Clone(c.Binding)}
		r.index[c.Index] = i
		xs[i] = c.Index
	}
	// Binding factors: rho_i = H1(PK || H4(msg) || H5(commitments) || i).
	prefix := r.bindingFactorPrefix()
	R := edwards25519.NewIdentityPoint()
	for i, x := range xs {
		rho := frostHash("rho", prefix, scalarFromUint32(x).Bytes())
		r.rho = append(r.rho, rho)
		term := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(rho, r.binding[i], zeroScalar)
		R.Add(R, term.Add(term, r.hiding[i]))
	}
	if R.Equal(identityPoint) == 1 {
		return nil, fmt.Errorf("%w: the group commitment is the identity", ErrBadCommitments)
	}
	r.r = R.Bytes()
	// The challenge is Ed25519's: H2 = SHA-512(R || PK || msg), no prefix.
	r.c = frostHash("", r.r, r.publicKey, msg)
	if r.lambda, err = lagrangeAtZero(xs); err != nil {
		return nil, err
	}
	return r, nil
}

// Signers returns the indexes of the round's signers, in order.
func (r *FROSTRound) Signers() []uint32 {
	xs := make([]uint32, len(r.commitments))
	for i, c := range r.commitments {
		xs[i] = c.Index
	}
	return xs
}

// Sign is round two for the holder of sh with the nonces it committed to:
// its signature share z_i. It erases the nonces whether it succeeds or
// not, and refuses nonces whose commitment is not the one the round lists
// for sh's index.
func (r *FROSTRound) Sign(sh *Share, nonces *SigningNonces) ([]byte, error) {
	if nonces == nil || nonces.hiding == nil {
		return nil, ErrNoncesSpent
	}
	defer nonces.Erase()
	if sh == nil {
		return nil, fmt.Errorf("%w: nil share", ErrBadShare)
	}
	i, ok := r.index[sh.Index]
	if !ok {
		return nil, fmt.Errorf("%w: signer %d is not in the list", ErrBadCommitments, sh.Index)
	}
	c := r.commitments[i]
	if nonces.commitment.Index != sh.Index ||
		subtle.ConstantTimeCompare(c.Hiding, nonces.commitment.Hiding) != 1 ||
		subtle.ConstantTimeCompare(c.Binding, nonces.commitment.Binding) != 1 {
		return nil, fmt.Errorf("%w: the list's commitment of %d is not the one its nonces made", ErrBadCommitments, sh.Index)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	defer wipeScalar(s)
	// z = d + e*rho + lambda*s*c
	z := edwards25519.NewScalar().Multiply(r.lambda[i], r.c)
	z.Multiply(z, s)
	z.Add(z, nonces.hiding)
	z.MultiplyAdd(nonces.binding, r.rho[i], z)
	out := z.Bytes()
	wipeScalar(z)
	return out, nil
}

// VerifyShare checks signer index's share z against its public share
// Y_i = s_i*G: z*G == D_i + rho_i*E_i + (c*lambda_i)*Y_i.
func (r *FROSTRound) VerifyShare(index uint32, publicShare, z []byte) error {
	i, ok := r.index[index]
	if !ok {
		return fmt.Errorf("%w: %d is not a signer of the round", ErrBadSignatureShare, index)
	}
	zs, err := decodeScalar(z)
	if err != nil {
		return fmt.Errorf("%w: share of %d: %w", ErrBadSignatureShare, index, err)
	}
	y, err := decodePoint(publicShare)
	if err != nil {
		return fmt.Errorf("public share of %d: %w", index, err)
	}
	k := edwards25519.NewScalar().Multiply(r.c, r.lambda[i])
	// rhs - z*G, computed as (c*lambda)*Y + (-z)*G, plus D + rho*E.
	negZ := edwards25519.NewScalar().Negate(zs)
	p := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, y, negZ)
	p.Add(p, r.hiding[i])
	q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(r.rho[i], r.binding[i], zeroScalar)
	p.Add(p, q)
	if p.Equal(identityPoint) != 1 {
		return fmt.Errorf("%w: from %d", ErrBadSignatureShare, index)
	}
	return nil
}

// Aggregate adds the signature shares of every signer of the round into
// an Ed25519 signature R || z and checks it with crypto/ed25519. It does
// not check the shares one by one: when it fails, VerifyShare names the
// culprits.
func (r *FROSTRound) Aggregate(shares map[uint32][]byte) ([]byte, error) {
	z := edwards25519.NewScalar()
	for _, c := range r.commitments {
		b, ok := shares[c.Index]
		if !ok {
			return nil, fmt.Errorf("%w: no share from %d", ErrNotEnoughPartials, c.Index)
		}
		s, err := decodeScalar(b)
		if err != nil {
			return nil, fmt.Errorf("%w: share of %d: %w", ErrBadSignatureShare, c.Index, err)
		}
		z.Add(z, s)
	}
	if len(shares) != len(r.commitments) {
		return nil, fmt.Errorf("%w: %d shares for %d signers", ErrBadSignatureShare, len(shares), len(r.commitments))
	}
	sig := slices.Concat(r.r, z.Bytes())
	if !ed25519.Verify(ed25519.PublicKey(r.publicKey), r.msg, sig) {
		return nil, fmt.Errorf("%w: the aggregate signature does not verify", ErrBadSignatureShare)
	}
	return sig, nil
}

// Ed25519Scalar returns the signing scalar of an Ed25519 private key (RFC
// 8032 5.1.5: the clamped first half of SHA-512(seed), reduced mod l), the
// secret a client deals to import the key: FROST signatures under its
// shares verify with the key's public key.
func Ed25519Scalar(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: an Ed25519 private key is %d bytes, not %d", ErrInvalidScalar, ed25519.PrivateKeySize, len(priv))
	}
	h := sha512.Sum512(priv.Seed())
	defer clear(h[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	defer wipeScalar(s)
	if subtle.ConstantTimeCompare(new(edwards25519.Point).ScalarBaseMult(s).Bytes(), priv.Public().(ed25519.PublicKey)) != 1 {
		return nil, fmt.Errorf("%w: the private key does not match its public half", ErrInvalidScalar)
	}
	return s.Bytes(), nil
}

// bindingFactorPrefix is PK || H4(msg) || H5(encoded commitment list),
// the part of every signer's rho_input (RFC 9591, 4.4) they share.
func (r *FROSTRound) bindingFactorPrefix() []byte {
	var enc bytes.Buffer
	for _, c := range r.commitments {
		enc.Write(scalarFromUint32(c.Index).Bytes())
		enc.Write(c.Hiding)
		enc.Write(c.Binding)
	}
	return slices.Concat(r.publicKey, frostDigest("msg", r.msg), frostDigest("com", enc.Bytes()))
}

// bindingFactorInput is rho_input of signer i (the test vectors list it).
func (r *FROSTRound) bindingFactorInput(i int) []byte {
	return slices.Concat(r.bindingFactorPrefix(), scalarFromUint32(r.commitments[i].Index).Bytes())
}

// DealKey shares secret (a canonical non-zero scalar, such as
// Ed25519Scalar's) t-of-n at indexes, as a client dealing a key it
// imports: a random polynomial f of degree t-1 with f(0) = secret, its
// Feldman commitments and the share f(i) of every index. The dealer erases
// the secret and the shares once they are sealed (Share.Erase).
func DealKey(rand io.Reader, secret []byte, t int, indexes []uint32) (*PublicPoly, []*Share, error) {
	if t < 1 || t > len(indexes) {
		return nil, nil, fmt.Errorf("%w: t=%d with %d holders", ErrBadThreshold, t, len(indexes))
	}
	if err := checkIndexes(indexes); err != nil {
		return nil, nil, err
	}
	a0, err := decodeSecretScalar(secret)
	if err != nil {
		return nil, nil, fmt.Errorf("secret: %w", err)
	}
	coeffs := []*edwards25519.Scalar{a0}
	defer func() {
		for _, c := range coeffs {
			wipeScalar(c)
		}
	}()
	for len(coeffs) < t {
		c, err := randomScalar(rand)
		if err != nil {
			return nil, nil, err
		}
		coeffs = append(coeffs, c)
	}
	poly := &PublicPoly{}
	for _, c := range coeffs {
		poly.Commits = append(poly.Commits, new(edwards25519.Point).ScalarBaseMult(c).Bytes())
	}
	shares := make([]*Share, len(indexes))
	for i, x := range indexes {
		v := edwards25519.NewScalar()
		for j := len(coeffs) - 1; j >= 0; j-- {
			v.MultiplyAdd(v, scalarFromUint32(x), coeffs[j])
		}
		shares[i] = &Share{Index: x, Value: v.Bytes()}
		wipeScalar(v)
	}
	return poly, shares, nil
}

// SealedShareSize is the size of a share sealed by SealShare.
const SealedShareSize = PointSize + ScalarSize + chacha20poly1305.Overhead

func shareAD(index uint32, context []byte) []byte {
	ad := append([]byte(vocab.LabelShareAD+"\x00"), scalarFromUint32(index).Bytes()[:4]...)
	return append(ad, context...)
}

// SealShare encrypts an edwards25519 share to a node's encryption public
// key as deals encrypt sub-shares, with associated data binding a label,
// the share's index and context (the cluster and the key).
func SealShare(rand io.Reader, encPub []byte, sh *Share, context []byte) ([]byte, error) {
	if sh == nil || sh.Index == 0 {
		return nil, fmt.Errorf("%w: no share or index 0", ErrInvalidIndex)
	}
	if _, err := decodeSecretScalar(sh.Value); err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	pub, err := decodePoint(encPub)
	if err != nil {
		return nil, fmt.Errorf("encryption public key: %w", err)
	}
	return encryptSubshare(rand, pub, sh.Value, shareAD(sh.Index, context))
}

// OpenShare decrypts a share sealed by SealShare and checks it against
// poly: a wrong key, index, context or a tampered ciphertext gives
// ErrDecrypt, a share off the polynomial ErrBadShare.
func OpenShare(encPriv, sealed []byte, index uint32, context []byte, poly *PublicPoly) (*Share, error) {
	if index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if len(sealed) != SealedShareSize {
		return nil, fmt.Errorf("%w: a sealed share is %d bytes, not %d", ErrDecrypt, SealedShareSize, len(sealed))
	}
	v, err := openSubshare(encPriv, sealed, shareAD(index, context))
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", index, err)
	}
	sh := &Share{Index: index, Value: v}
	if err := poly.VerifyShare(sh); err != nil {
		sh.Erase()
		return nil, err
	}
	return sh, nil
}
