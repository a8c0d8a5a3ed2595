package shamir

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

const (
	kemLabel  = vocab.LabelKEM + "\x00"
	dleqLabel = vocab.LabelDLEQ
)

// Ciphertext is a threshold ElGamal KEM ciphertext: R = r*G and
// Sealed = nonce || ChaCha20-Poly1305(k, plaintext), where
// k = HKDF-SHA256(secret = r*X, salt = R, info = "keyquorum/kem/v1\x00" || info).
type Ciphertext struct {
	R      []byte
	Sealed []byte
}

// Seal encrypts plaintext to the cluster public key X (PublicPoly.PublicKey).
// info (key id, version, ...) is bound into the key derivation and must be
// given again to Open.
func Seal(rand io.Reader, publicKey []byte, info []byte, plaintext []byte) (*Ciphertext, error) {
	X, err := decodePoint(publicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	r, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(r)
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	K := new(edwards25519.Point).ScalarMult(r, X)
	key, err := kemKey(K, R, info)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	sealed := make([]byte, chacha20poly1305.NonceSize, chacha20poly1305.NonceSize+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(rand, sealed); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}
	sealed = aead.Seal(sealed, sealed[:chacha20poly1305.NonceSize], plaintext, nil)
	return &Ciphertext{R: R, Sealed: sealed}, nil
}

func kemKey(K *edwards25519.Point, R, info []byte) ([]byte, error) {
	secret := K.Bytes()
	defer clear(secret)
	return hkdf.Key(sha256.New, secret, R, kemLabel+string(info), chacha20poly1305.KeySize)
}

// openWithPoint decrypts with the combined point K = r*X.
func openWithPoint(K *edwards25519.Point, ct *Ciphertext, info []byte) ([]byte, error) {
	if K.Equal(identityPoint) == 1 {
		return nil, fmt.Errorf("%w: combined point is the identity", ErrDecrypt)
	}
	if len(ct.Sealed) < chacha20poly1305.NonceSize+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: sealed data too short", ErrDecrypt)
	}
	key, err := kemKey(K, ct.R, info)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, ct.Sealed[:chacha20poly1305.NonceSize], ct.Sealed[chacha20poly1305.NonceSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

// Partial is one share holder's partial decryption: Value = s_i*R, with a
// Chaum-Pedersen (DLEQ) proof (Challenge c, Response z) that
// log_G(S_i) == log_R(Value), S_i = s_i*G being the holder's public share.
//
// Commits, when a Prover made the partial, is the proof's commitments
// A1 = w*G and A2 = w*R (64 bytes), the points the challenge hashes: with
// them a verifier checks the proofs of several partials at once
// (Verifier.VerifyBatch). ComputePartial leaves it empty, and Verify and
// VerifyProof ignore it: they recompute A1 and A2 from the challenge and
// the response.
type Partial struct {
	Index     uint32
	Value     []byte
	Challenge []byte
	Response  []byte
	Commits   []byte `json:",omitempty"`
}

// ComputePartial computes share.Value*R and proves it correct. R must be a
// valid prime-order point (checked before the secret multiplication).
// context (request id, key id, ...) is bound into the proof and must be
// given again to VerifyPartial and Open.
func ComputePartial(rand io.Reader, sh *Share, R []byte, context []byte) (*Partial, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil share", ErrInvalidScalar)
	}
	if sh.Index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	Rp, err := decodeCiphertextPoint(R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext R: %w", err)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	defer wipeScalar(s)
	w, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(w)

	enc := encodePoints(
		new(edwards25519.Point).ScalarMult(s, Rp),
		new(edwards25519.Point).ScalarBaseMult(s),
		new(edwards25519.Point).ScalarBaseMult(w),
		new(edwards25519.Point).ScalarMult(w, Rp))
	V, S, A1, A2 := enc[0], enc[1], enc[2], enc[3]
	c := dleqChallenge(R, S, V, A1, A2, sh.Index, context)
	z := edwards25519.NewScalar().Multiply(c, s)
	z.Subtract(w, z) // z = w - c*s
	return &Partial{Index: sh.Index, Value: V, Challenge: c.Bytes(), Response: z.Bytes()}, nil
}

var basePointBytes = edwards25519.NewGeneratorPoint().Bytes()

// dleqChallenge is the Fiat-Shamir challenge:
// SHA-512(label, G, R, S_i, V, A1, A2, index, context) reduced mod l.
func dleqChallenge(R, S, V, A1, A2 []byte, index uint32, context []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write([]byte(dleqLabel))
	h.Write(basePointBytes)
	h.Write(R)
	h.Write(S)
	h.Write(V)
	h.Write(A1)
	h.Write(A2)
	var buf [12]byte
	binary.BigEndian.PutUint32(buf[:4], index)
	binary.BigEndian.PutUint64(buf[4:], uint64(len(context)))
	h.Write(buf[:])
	h.Write(context)
	c, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic("shamir: SHA-512 output is not 64 bytes")
	}
	return c
}

// VerifyPartial checks a partial against the holder's public share
// poly.PublicShare(p.Index): Value must be a valid prime-order point and the
// DLEQ proof must verify with the challenge recomputed here (A1 = z*G +
// c*S_i, A2 = z*R + c*Value, c == H(...)).
func VerifyPartial(poly *PublicPoly, R []byte, p *Partial, context []byte) error {
	v, err := NewVerifier(poly, R, context)
	if err != nil {
		return err
	}
	_, err = v.Verify(p)
	return err
}

// Verifier checks the partials of one ciphertext point R, for one context,
// against one public polynomial, the way VerifyPartial does, and opens with
// the partials it verified (Verifier.Open). It decodes R (fully checked)
// and the polynomial's commitments (the cheap checks only, as the other
// hot-path functions do: Validate a polynomial from elsewhere first) once
// for all the partials. It is safe for concurrent use: a combiner may
// verify its partials in parallel.
type Verifier struct {
	commits []*edwards25519.Point
	rp      *edwards25519.Point
	r       []byte
	context []byte
	// key is the polynomial's commitments, the key of its public shares
	// in publicShares.
	key string
}

// publicShares remembers the public shares S_i = f(i)*G that verifiers
// evaluated, with their encodings, by polynomial and index: a client
// verifies partials of the same polynomial release after release. They
// are public values computed from the commitments, so a stale entry can
// only be one of another polynomial, which its key tells apart.
const publicSharesSize = 256

type publicShareKey struct {
	commits string
	index   uint32
}

type publicShare struct {
	point *edwards25519.Point
	enc   []byte
	mont  []byte // u(S), S's X25519 public key
}

var publicShares = struct {
	sync.Mutex
	m map[publicShareKey]publicShare
}{m: map[publicShareKey]publicShare{}}

// publicShare returns S_index and its encoding.
func (v *Verifier) publicShare(index uint32) (*edwards25519.Point, []byte) {
	ps := v.publicShareFull(index)
	return ps.point, ps.enc
}

// publicShareFull returns S_index, its encoding and its X25519 u
// coordinate (OpenShareSeals).
func (v *Verifier) publicShareFull(index uint32) publicShare {
	k := publicShareKey{v.key, index}
	publicShares.Lock()
	ps, ok := publicShares.m[k]
	publicShares.Unlock()
	if ok {
		return ps
	}
	S := evalCommits(v.commits, index)
	ps = publicShare{point: S, enc: S.Bytes(), mont: S.BytesMontgomery()}
	publicShares.Lock()
	if len(publicShares.m) >= publicSharesSize {
		clear(publicShares.m)
	}
	publicShares.m[k] = ps
	publicShares.Unlock()
	return ps
}

// NewVerifier prepares the checks of partials of R for context against poly.
func NewVerifier(poly *PublicPoly, R []byte, context []byte) (*Verifier, error) {
	t := poly.Threshold()
	if t == 0 {
		return nil, fmt.Errorf("%w: public polynomial has no commitments", ErrBadThreshold)
	}
	Rp, err := decodeCiphertextPoint(R)
	if err != nil {
		return nil, fmt.Errorf("ciphertext R: %w", err)
	}
	var key []byte
	for _, b := range poly.Commits {
		key = append(key, b...)
	}
	commits, err := decodeCommits(string(key), poly.Commits)
	if err != nil {
		return nil, err
	}
	return &Verifier{commits: commits, rp: Rp, r: slices.Clone(R), context: slices.Clone(context), key: string(key)}, nil
}

// decodedCommits remembers the commitments NewVerifier decoded, by their
// encodings (key): a client checks release after release against the
// same polynomial, and each decoding costs a field square root. The
// points are public and never modified once decoded.
var decodedCommits = struct {
	sync.Mutex
	m map[string][]*edwards25519.Point
}{m: map[string][]*edwards25519.Point{}}

// decodeCommits decodes the commitments enc, whose concatenation is key,
// with the cheap checks, or returns those it decoded before.
func decodeCommits(key string, enc [][]byte) ([]*edwards25519.Point, error) {
	decodedCommits.Lock()
	commits, ok := decodedCommits.m[key]
	decodedCommits.Unlock()
	if ok && len(commits) == len(enc) {
		return commits, nil
	}
	commits = make([]*edwards25519.Point, len(enc))
	for j, b := range enc {
		var err error
		if commits[j], err = decodePointNoSubgroup(b); err != nil {
			return nil, fmt.Errorf("commitment %d: %w", j, err)
		}
	}
	decodedCommits.Lock()
	if len(decodedCommits.m) >= publicSharesSize {
		clear(decodedCommits.m)
	}
	decodedCommits.m[key] = commits
	decodedCommits.Unlock()
	return commits, nil
}

// VerifiedPartial is a partial a Verifier accepted: only Verifier.Verify
// and Verifier.VerifyProof make one, and only that Verifier's Open takes
// it.
type VerifiedPartial struct {
	index uint32
	value *edwards25519.Point
	by    *Verifier
	// subgroupLater: VerifyProof left the value's subgroup check to Open.
	subgroupLater bool
}

// Index is the share index of the partial.
func (vp *VerifiedPartial) Index() uint32 { return vp.index }

// Verify checks p as VerifyPartial does.
func (v *Verifier) Verify(p *Partial) (*VerifiedPartial, error) {
	return v.verify(p, true)
}

// VerifyProof checks p as Verify does, but leaves the check that its value
// is in the prime-order subgroup, the costliest of the point checks, to
// Open, which makes it once for all the partials it combines: the
// combined point is sum lambda_i*V_i, and the proof of each V_i = P_i +
// T_i (P_i of prime order, T_i of small order) shows P_i = s_i*R, so the
// combined point is r*X plus sum lambda_i*T_i, of small order. It is r*X,
// the point that opens, exactly when it has no small-order component; when
// it has one, Open checks each partial of VerifyProof's and names the ones
// at fault. A holder of a share can make such a proof verify (it chooses
// T_i and tries nonces until the challenge kills c*T_i), so a caller that
// would skip a bad partial and open with others (t of more) uses Verify;
// one that refuses the whole answer when any partial fails (OpenRelease)
// may use VerifyProof. What it gives up: a T_i that the combination kills
// (lambda_i*T_i the identity, as for share 1 of shares 1 and 3) goes
// unnamed, and the right secret opens.
func (v *Verifier) VerifyProof(p *Partial) (*VerifiedPartial, error) {
	return v.verify(p, false)
}

func (v *Verifier) verify(p *Partial, subgroup bool) (*VerifiedPartial, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil partial", ErrBadProof)
	}
	if p.Index == 0 {
		return nil, fmt.Errorf("partial: %w: 0", ErrInvalidIndex)
	}
	c, err := decodeScalar(p.Challenge)
	if err != nil {
		return nil, fmt.Errorf("partial from %d: %w: challenge: %w", p.Index, ErrBadProof, err)
	}
	z, err := decodeScalar(p.Response)
	if err != nil {
		return nil, fmt.Errorf("partial from %d: %w: response: %w", p.Index, ErrBadProof, err)
	}
	decode := decodePoint
	if !subgroup {
		decode = decodePointNoSubgroup
	}
	V, err := decode(p.Value)
	if err != nil {
		return nil, fmt.Errorf("partial from %d: value: %w", p.Index, err)
	}
	S, Sb := v.publicShare(p.Index)
	enc := encodePoints(
		new(edwards25519.Point).VarTimeDoubleScalarBaseMult(c, S, z),
		new(edwards25519.Point).VarTimeMultiScalarMult([]*edwards25519.Scalar{z, c}, []*edwards25519.Point{v.rp, V}))
	want := dleqChallenge(v.r, Sb, p.Value, enc[0], enc[1], p.Index, v.context)
	if subtle.ConstantTimeCompare(want.Bytes(), p.Challenge) != 1 {
		return nil, fmt.Errorf("partial from %d: %w", p.Index, ErrBadProof)
	}
	return &VerifiedPartial{index: p.Index, value: V, by: v, subgroupLater: !subgroup}, nil
}

// Open interpolates r*X from the first t (the polynomial's threshold)
// partials of verified and decrypts ct, whose R must be the Verifier's.
// Every partial must come from this Verifier, with distinct indexes. When
// any came from VerifyProof, the combined point must be in the
// prime-order subgroup; if it is not, the error names each partial of
// VerifyProof's whose value is not (ErrInvalidPoint).
func (v *Verifier) Open(ct *Ciphertext, info []byte, verified []*VerifiedPartial) ([]byte, error) {
	if ct == nil {
		return nil, fmt.Errorf("%w: nil ciphertext", ErrDecrypt)
	}
	if !bytes.Equal(ct.R, v.r) {
		return nil, fmt.Errorf("%w: the ciphertext is not the one the partials were verified for", ErrDecrypt)
	}
	K, err := v.combine(verified)
	if err != nil {
		return nil, err
	}
	return openWithPoint(K, ct, info)
}

// Combine interpolates the shared point s*R from the first t (the
// polynomial's threshold) partials of verified, with Open's checks: every
// partial from this Verifier, distinct indexes, and when any came from
// VerifyProof or a batch, the combined point in the prime-order subgroup
// (if not, the error names the partials whose value is not). It returns
// the point's encoding, which the caller erases.
func (v *Verifier) Combine(verified []*VerifiedPartial) ([]byte, error) {
	K, err := v.combine(verified)
	if err != nil {
		return nil, err
	}
	return K.Bytes(), nil
}

func (v *Verifier) combine(verified []*VerifiedPartial) (*edwards25519.Point, error) {
	t := len(v.commits)
	if len(verified) < t {
		return nil, fmt.Errorf("%w: %d valid, need %d", ErrNotEnoughPartials, len(verified), t)
	}
	idx := make([]uint32, t)
	pts := make([]*edwards25519.Point, t)
	for k, vp := range verified[:t] {
		if vp == nil || vp.by != v {
			return nil, fmt.Errorf("%w: a partial this verifier did not verify", ErrBadProof)
		}
		idx[k], pts[k] = vp.index, vp.value
	}
	K, err := combinePoints(idx, pts)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(verified[:t], func(vp *VerifiedPartial) bool { return vp.subgroupLater }) && !torsionFree(K) {
		return nil, smallOrderParts(verified[:t])
	}
	return K, nil
}

// smallOrderParts names the partials of VerifyProof's among verified
// whose value has a small-order component: one at least has, when their
// combination has.
func smallOrderParts(verified []*VerifiedPartial) error {
	var errs []error
	for _, vp := range verified {
		if vp.subgroupLater && !torsionFree(vp.value) {
			errs = append(errs, fmt.Errorf("partial from %d: value: %w: not in the prime-order subgroup", vp.index, ErrInvalidPoint))
		}
	}
	return errors.Join(errs...)
}

// Open verifies partials in order, skipping any that is nil, has index 0,
// repeats an index already accepted, has an invalid point or a bad proof,
// until it has t = poly.Threshold() valid ones; partials after that are not
// examined. It then interpolates r*X = sum lambda_i * Value_i in the exponent
// and decrypts. With fewer than t valid partials the error wraps
// ErrNotEnoughPartials joined with the reason each rejected partial was
// rejected (so errors.Is(err, ErrBadProof) also works).
func Open(poly *PublicPoly, ct *Ciphertext, info []byte, partials []*Partial, context []byte) ([]byte, error) {
	return open(poly, ct, info, nil, partials, context)
}

// OpenWithOwn is Open for a caller that is itself a share holder and
// computed own with its own share: own is taken without checking its
// proof (it gets the point checks only), which saves one proof
// verification per release. The others are checked as Open checks them.
func OpenWithOwn(poly *PublicPoly, ct *Ciphertext, info []byte, own *Partial, others []*Partial, context []byte) ([]byte, error) {
	if own == nil {
		return nil, fmt.Errorf("%w: own partial is nil", ErrNotEnoughPartials)
	}
	return open(poly, ct, info, own, others, context)
}

func open(poly *PublicPoly, ct *Ciphertext, info []byte, own *Partial, partials []*Partial, context []byte) ([]byte, error) {
	if ct == nil {
		return nil, fmt.Errorf("%w: nil ciphertext", ErrDecrypt)
	}
	v, err := NewVerifier(poly, ct.R, context)
	if err != nil {
		return nil, err
	}
	t := poly.Threshold()
	good := make([]*VerifiedPartial, 0, t)
	has := func(i uint32) bool {
		return slices.ContainsFunc(good, func(vp *VerifiedPartial) bool { return vp.index == i })
	}
	var rejected []error
	if own != nil {
		if own.Index == 0 {
			return nil, fmt.Errorf("own partial: %w: 0", ErrInvalidIndex)
		}
		// The caller computed own from a validated R, so it is in the
		// prime-order subgroup; the cheap checks suffice.
		V, err := decodePointNoSubgroup(own.Value)
		if err != nil {
			return nil, fmt.Errorf("own partial: %w", err)
		}
		good = append(good, &VerifiedPartial{index: own.Index, value: V, by: v})
	}
	for _, p := range partials {
		if len(good) == t {
			break
		}
		if p != nil && has(p.Index) {
			rejected = append(rejected, fmt.Errorf("partial from %d: %w", p.Index, ErrDuplicateIndex))
			continue
		}
		vp, err := v.Verify(p)
		if err != nil {
			rejected = append(rejected, err)
			continue
		}
		good = append(good, vp)
	}
	if len(good) < t {
		return nil, errors.Join(append([]error{fmt.Errorf("%w: %d valid, need %d", ErrNotEnoughPartials, len(good), t)}, rejected...)...)
	}
	return v.Open(ct, info, good)
}

// combinePoints returns sum lambda_i * pts[i], lambda_i the Lagrange
// coefficients at 0 over idx. The scalars are public, and the variable-time
// algorithms' running time depends only on them, not on the points. When
// every coefficient is a small integer or its negation (two neighbouring
// indexes: 2 and -1 for 1 and 2), a few additions replace the
// multi-scalar multiplication.
func combinePoints(idx []uint32, pts []*edwards25519.Point) (*edwards25519.Point, error) {
	lambdas, err := combineLambdas(idx)
	if err != nil {
		return nil, err
	}
	sum := edwards25519.NewIdentityPoint()
	for i, l := range lambdas {
		k, negative, ok := smallInt(l)
		if !ok {
			return new(edwards25519.Point).VarTimeMultiScalarMult(lambdas, pts), nil
		}
		term := mulSmall(pts[i], k)
		if negative {
			sum.Subtract(sum, term)
		} else {
			sum.Add(sum, term)
		}
	}
	return sum, nil
}

// CombinePoints Lagrange-combines already verified points s_i*P at x=0,
// giving x*P. It uses the t smallest indexes if more than t are given. The
// points get the cheap checks only (canonical, not small order); verify
// them (e.g. with VerifyPartial) before calling.
func CombinePoints(partials map[uint32][]byte, t int) ([]byte, error) {
	if t < 1 {
		return nil, fmt.Errorf("%w: t=%d", ErrBadThreshold, t)
	}
	if len(partials) < t {
		return nil, fmt.Errorf("%w: %d, need %d", ErrNotEnoughPartials, len(partials), t)
	}
	idx := make([]uint32, 0, len(partials))
	for i := range partials {
		if i == 0 {
			return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	idx = idx[:t]
	pts := make([]*edwards25519.Point, t)
	for k, i := range idx {
		p, err := decodePointNoSubgroup(partials[i])
		if err != nil {
			return nil, fmt.Errorf("point from %d: %w", i, err)
		}
		pts[k] = p
	}
	K, err := combinePoints(idx, pts)
	if err != nil {
		return nil, err
	}
	return K.Bytes(), nil
}

// combineLambdas is lagrangeAtZero(idx) for combinePoints, remembered by
// idx: a combiner combines the same few sets of share indexes again and
// again, and each set costs t scalar inversions. The coefficients are
// public, and combinePoints only reads them.
func combineLambdas(idx []uint32) ([]*edwards25519.Scalar, error) {
	key := make([]byte, 4*len(idx))
	for i, x := range idx {
		binary.BigEndian.PutUint32(key[4*i:], x)
	}
	lambdaCache.Lock()
	l, ok := lambdaCache.m[string(key)]
	lambdaCache.Unlock()
	if ok {
		return l, nil
	}
	l, err := lagrangeAtZero(idx)
	if err != nil {
		return nil, err
	}
	lambdaCache.Lock()
	if len(lambdaCache.m) >= publicSharesSize {
		clear(lambdaCache.m)
	}
	lambdaCache.m[string(key)] = l
	lambdaCache.Unlock()
	return l, nil
}

var lambdaCache = struct {
	sync.Mutex
	m map[string][]*edwards25519.Scalar
}{m: map[string][]*edwards25519.Scalar{}}
