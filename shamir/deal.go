package shamir

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/vocab"
)

const (
	dealKeyLabel = vocab.LabelDealKey
	dealADLabel  = vocab.LabelDealAD
	// EncryptedShareSize is the size of EncryptedShare.Ciphertext:
	// ephemeral point || sub-share (32) || Poly1305 tag (16).
	EncryptedShareSize = PointSize + ScalarSize + chacha20poly1305.Overhead
)

// GenerateEncryptionKey returns an edwards25519 key pair used to encrypt
// deals to a node: priv is a canonical non-zero scalar a, pub = a*G.
func GenerateEncryptionKey(rand io.Reader) (priv, pub []byte, err error) {
	a, err := randomScalar(rand)
	if err != nil {
		return nil, nil, err
	}
	defer wipeScalar(a)
	return a.Bytes(), new(edwards25519.Point).ScalarBaseMult(a).Bytes(), nil
}

// EncryptionPublicKey returns the public key of an encryption private key.
func EncryptionPublicKey(priv []byte) ([]byte, error) {
	a, err := decodeSecretScalar(priv)
	if err != nil {
		return nil, fmt.Errorf("encryption private key: %w", err)
	}
	defer wipeScalar(a)
	return new(edwards25519.Point).ScalarBaseMult(a).Bytes(), nil
}

// Recipient is a node that receives a sub-share: its 1-based index and its
// encryption public key.
type Recipient struct {
	Index  uint32
	EncPub []byte
}

// EncryptedShare is the sub-share f(Index) encrypted to recipient Index:
// E || ChaCha20-Poly1305(HKDF-SHA256(e*A), f(Index)), EncryptedShareSize bytes.
type EncryptedShare struct {
	Index      uint32
	Ciphertext []byte
}

// Deal is one dealer's contribution to a DKG or a reshare: Feldman
// commitments to its polynomial (len(Commits) == t) and one encrypted
// sub-share per recipient. Everything in it is public.
type Deal struct {
	Dealer  uint32
	Commits [][]byte
	Shares  []EncryptedShare
}

// NewFreshDeal creates a DKG contribution: a random polynomial of degree t-1
// with a random secret, and f(j) encrypted to every recipient j. context
// (epoch, cluster id, ...) is bound to every ciphertext.
func NewFreshDeal(rand io.Reader, dealer uint32, t int, recipients []Recipient, context []byte) (*Deal, error) {
	return newDeal(rand, dealer, nil, t, recipients, context)
}

// NewReshareDeal creates a reshare contribution: a random polynomial of
// degree t-1 (t is the new threshold) with f(0) = the dealer's current share
// value, so Commits[0] equals the dealer's old public share.
func NewReshareDeal(rand io.Reader, sh *Share, t int, recipients []Recipient, context []byte) (*Deal, error) {
	if sh == nil {
		return nil, fmt.Errorf("%w: nil share", ErrInvalidScalar)
	}
	s, err := decodeSecretScalar(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share %d: %w", sh.Index, err)
	}
	defer wipeScalar(s)
	return newDeal(rand, sh.Index, s, t, recipients, context)
}

func newDeal(rand io.Reader, dealer uint32, secret *edwards25519.Scalar, t int, recipients []Recipient, context []byte) (*Deal, error) {
	if dealer == 0 {
		return nil, fmt.Errorf("dealer: %w: 0", ErrInvalidIndex)
	}
	if t < 1 || t > len(recipients) {
		return nil, fmt.Errorf("%w: t=%d with %d recipients", ErrBadThreshold, t, len(recipients))
	}
	idx := make([]uint32, len(recipients))
	pubs := make([]*edwards25519.Point, len(recipients))
	for i, r := range recipients {
		idx[i] = r.Index
		p, err := decodePoint(r.EncPub)
		if err != nil {
			return nil, fmt.Errorf("recipient %d encryption key: %w", r.Index, err)
		}
		pubs[i] = p
	}
	if err := checkIndexes(idx); err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	kidx := make([]int, len(idx))
	for i, x := range idx {
		k, err := kyberIndex(x)
		if err != nil {
			return nil, err
		}
		kidx[i] = k
	}

	coeffs := make([]kyber.Scalar, t)
	defer func() {
		for _, c := range coeffs {
			if c != nil {
				c.Zero()
			}
		}
	}()
	for j := range coeffs {
		if j == 0 && secret != nil {
			coeffs[0] = toKyberScalar(secret)
			continue
		}
		a, err := randomScalar(rand)
		if err != nil {
			return nil, err
		}
		coeffs[j] = toKyberScalar(a)
		wipeScalar(a)
	}
	poly := share.CoefficientsToPriPoly(suite, coeffs)
	_, kcommits := poly.Commit(nil).Info()
	d := &Deal{Dealer: dealer, Commits: make([][]byte, t), Shares: make([]EncryptedShare, len(recipients))}
	for j, c := range kcommits {
		b, err := kyberPointBytes(c)
		if err != nil {
			return nil, fmt.Errorf("commitment %d: %w", j, err)
		}
		d.Commits[j] = b
	}
	for i := range recipients {
		ps := poly.Eval(kidx[i])
		sub, err := kyberScalarBytes(ps.V)
		ps.V.Zero()
		if err != nil {
			return nil, err
		}
		ct, err := encryptSubshare(rand, pubs[i], sub, dealAD(context, dealer, idx[i], d.Commits))
		clear(sub)
		if err != nil {
			return nil, err
		}
		d.Shares[i] = EncryptedShare{Index: idx[i], Ciphertext: ct}
	}
	return d, nil
}

// dealAD is the associated data of a sub-share ciphertext: a label, the
// caller's context, the dealer and recipient indexes and the commitments.
func dealAD(context []byte, dealer, recipient uint32, commits [][]byte) []byte {
	ad := make([]byte, 0, len(dealADLabel)+8+len(context)+12+len(commits)*PointSize)
	ad = append(ad, dealADLabel...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(context)))
	ad = append(ad, context...)
	ad = binary.BigEndian.AppendUint32(ad, dealer)
	ad = binary.BigEndian.AppendUint32(ad, recipient)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(commits)))
	for _, c := range commits {
		ad = append(ad, c...)
	}
	return ad
}

// dealKey derives the AEAD key from the DH result e*A = a*E.
func dealKey(shared *edwards25519.Point, ephemeral, recipientPub []byte) ([]byte, error) {
	secret := shared.Bytes()
	defer clear(secret)
	salt := make([]byte, 0, 2*PointSize)
	salt = append(append(salt, ephemeral...), recipientPub...)
	return hkdf.Key(sha256.New, secret, salt, dealKeyLabel, chacha20poly1305.KeySize)
}

// encryptSubshare encrypts a 32-byte sub-share to pub with a fresh ephemeral
// key; the AEAD key is used once, so the nonce is zero.
func encryptSubshare(rand io.Reader, pub *edwards25519.Point, sub, ad []byte) ([]byte, error) {
	e, err := randomScalar(rand)
	if err != nil {
		return nil, err
	}
	defer wipeScalar(e)
	E := new(edwards25519.Point).ScalarBaseMult(e).Bytes()
	shared := new(edwards25519.Point).ScalarMult(e, pub)
	key, err := dealKey(shared, E, pub.Bytes())
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	out := make([]byte, 0, EncryptedShareSize)
	out = append(out, E...)
	return aead.Seal(out, nonce[:], sub, ad), nil
}

// VerifyFreshDeal runs the public checks on a DKG deal: a non-zero dealer,
// len(Commits) == t, every commitment a valid prime-order point, and exactly
// one well-formed encrypted share for each recipient index.
func VerifyFreshDeal(d *Deal, t int, recipients []uint32) error {
	if d == nil {
		return fmt.Errorf("%w: nil deal", ErrBadDeal)
	}
	if d.Dealer == 0 {
		return fmt.Errorf("deal: dealer %w: 0", ErrInvalidIndex)
	}
	if t < 1 || t > len(recipients) {
		return fmt.Errorf("deal from %d: %w: t=%d with %d recipients", d.Dealer, ErrBadThreshold, t, len(recipients))
	}
	if err := checkIndexes(recipients); err != nil {
		return fmt.Errorf("deal from %d: recipients: %w", d.Dealer, err)
	}
	if len(d.Commits) != t {
		return fmt.Errorf("deal from %d: %w: %d commitments, want t=%d", d.Dealer, ErrBadDeal, len(d.Commits), t)
	}
	if _, err := decodePoints(d.Commits, "commitment"); err != nil {
		return fmt.Errorf("deal from %d: %w", d.Dealer, err)
	}
	return checkEncryptedShares(d.Dealer, d.Shares, recipients)
}

// checkEncryptedShares checks that a deal has exactly one well-formed
// encrypted sub-share for each recipient index and none for others.
func checkEncryptedShares(dealer uint32, shares []EncryptedShare, recipients []uint32) error {
	want := make(map[uint32]bool, len(recipients))
	for _, r := range recipients {
		want[r] = true
	}
	got := make(map[uint32]bool, len(shares))
	for _, s := range shares {
		switch {
		case !want[s.Index]:
			return fmt.Errorf("deal from %d: %w: share for non-recipient %d", dealer, ErrBadDeal, s.Index)
		case got[s.Index]:
			return fmt.Errorf("deal from %d: %w: two shares for recipient %d", dealer, ErrBadDeal, s.Index)
		case len(s.Ciphertext) != EncryptedShareSize:
			return fmt.Errorf("deal from %d: %w: share for %d is %d bytes, want %d", dealer, ErrBadDeal, s.Index, len(s.Ciphertext), EncryptedShareSize)
		}
		if _, err := decodePoint(s.Ciphertext[:PointSize]); err != nil {
			return fmt.Errorf("deal from %d: share for %d: ephemeral key: %w", dealer, s.Index, err)
		}
		got[s.Index] = true
	}
	if len(got) != len(want) {
		for _, r := range recipients {
			if !got[r] {
				return fmt.Errorf("deal from %d: %w: no share for recipient %d", dealer, ErrBadDeal, r)
			}
		}
	}
	return nil
}

// VerifyReshareDeal runs VerifyFreshDeal's checks and also that Commits[0]
// equals old.PublicShare(d.Dealer), i.e. the dealer reshared its own current
// share and nothing else.
func VerifyReshareDeal(d *Deal, old *PublicPoly, t int, recipients []uint32) error {
	if err := VerifyFreshDeal(d, t, recipients); err != nil {
		return err
	}
	want, err := old.PublicShare(d.Dealer)
	if err != nil {
		return fmt.Errorf("deal from %d: old public share: %w", d.Dealer, err)
	}
	if !equalBytes(want, d.Commits[0]) {
		return fmt.Errorf("deal from %d: %w: Commits[0] is not the dealer's public share", d.Dealer, ErrBadDeal)
	}
	return nil
}

func equalBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// OpenDeal decrypts the sub-share addressed to myIndex and checks it against
// the deal's commitments (Feldman): f(myIndex)*G == sum_j C_j*myIndex^j. It
// returns the 32-byte sub-share. A tampered ciphertext, context or
// commitment gives ErrDecrypt; a dealer that encrypted a wrong value gives
// ErrBadShare.
func OpenDeal(d *Deal, myIndex uint32, encPriv []byte, context []byte) ([]byte, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil deal", ErrBadDeal)
	}
	kidx, err := kyberIndex(myIndex)
	if err != nil {
		return nil, err
	}
	if len(d.Commits) == 0 {
		return nil, fmt.Errorf("deal from %d: %w: no commitments", d.Dealer, ErrBadDeal)
	}
	commits, err := decodePoints(d.Commits, "commitment")
	if err != nil {
		return nil, fmt.Errorf("deal from %d: %w", d.Dealer, err)
	}
	var ct []byte
	found := 0
	for _, s := range d.Shares {
		if s.Index == myIndex {
			ct = s.Ciphertext
			found++
		}
	}
	switch {
	case found == 0:
		return nil, fmt.Errorf("deal from %d: %w: no share for recipient %d", d.Dealer, ErrBadDeal, myIndex)
	case found > 1:
		return nil, fmt.Errorf("deal from %d: %w: two shares for recipient %d", d.Dealer, ErrBadDeal, myIndex)
	case len(ct) != EncryptedShareSize:
		return nil, fmt.Errorf("deal from %d: %w: share is %d bytes, want %d", d.Dealer, ErrBadDeal, len(ct), EncryptedShareSize)
	}
	sub, err := openSubshare(encPriv, ct, dealAD(context, d.Dealer, myIndex, d.Commits))
	if err != nil {
		return nil, fmt.Errorf("deal from %d to %d: %w", d.Dealer, myIndex, err)
	}
	s, err := decodeScalar(sub)
	if err != nil {
		clear(sub)
		return nil, fmt.Errorf("deal from %d: sub-share: %w", d.Dealer, ErrBadShare)
	}
	ks := toKyberScalar(s)
	wipeScalar(s)
	kc := make([]kyber.Point, len(commits))
	for i, c := range commits {
		kc[i] = toKyberPoint(c)
	}
	ok := share.NewPubPoly(suite, nil, kc).Check(&share.PriShare{I: kidx, V: ks})
	ks.Zero()
	if !ok {
		clear(sub)
		return nil, fmt.Errorf("deal from %d: sub-share for %d: %w", d.Dealer, myIndex, ErrBadShare)
	}
	return sub, nil
}

// CombineFresh finishes a DKG from the deals of the qualified dealers (the
// same set, for every node): the public polynomial is the sum of the
// commitments and the share is the sum of the opened sub-shares. With mine
// == nil it returns only the polynomial (share == nil); otherwise mine must
// hold exactly one sub-share per dealer, and the summed share is checked
// against the summed polynomial.
func CombineFresh(deals []*Deal, mine map[uint32][]byte, myIndex uint32) (*Share, *PublicPoly, error) {
	return combine(deals, mine, myIndex, false)
}

// CombineReshare finishes a reshare from the deals of a qualified set of old
// share holders with distinct indexes (VerifyReshareDeal passed for each):
// new poly = sum lambda_i * Commits_i and new share = sum lambda_i *
// subshare_i, with lambda_i the Lagrange coefficients at 0 over the dealer
// indexes. The set must contain at least the old threshold of dealers
// (normally exactly that many, chosen the same way by every node); with
// fewer the public key changes, so callers should check that the returned
// PublicKey equals the old one (SamePublicKey).
func CombineReshare(deals []*Deal, mine map[uint32][]byte, myIndex uint32) (*Share, *PublicPoly, error) {
	return combine(deals, mine, myIndex, true)
}

// SamePublicKey reports whether two polynomials share the same public key,
// as a reshare must preserve.
func SamePublicKey(a, b *PublicPoly) bool {
	pa, pb := a.PublicKey(), b.PublicKey()
	return pa != nil && equalBytes(pa, pb)
}

func combine(deals []*Deal, mine map[uint32][]byte, myIndex uint32, reshare bool) (*Share, *PublicPoly, error) {
	if len(deals) == 0 {
		return nil, nil, fmt.Errorf("%w: no deals", ErrBadDeal)
	}
	t := 0
	dealers := make([]uint32, len(deals))
	for i, d := range deals {
		if d == nil {
			return nil, nil, fmt.Errorf("%w: nil deal", ErrBadDeal)
		}
		if i == 0 {
			t = len(d.Commits)
		}
		if t == 0 || len(d.Commits) != t {
			return nil, nil, fmt.Errorf("deal from %d: %w: %d commitments, want %d", d.Dealer, ErrBadDeal, len(d.Commits), t)
		}
		dealers[i] = d.Dealer
	}
	if err := checkIndexes(dealers); err != nil {
		return nil, nil, fmt.Errorf("dealers: %w", err)
	}

	// Weights: 1 for a DKG, Lagrange coefficients at 0 for a reshare.
	var weights []kyber.Scalar
	if reshare {
		lambdas, err := lagrangeAtZero(dealers)
		if err != nil {
			return nil, nil, err
		}
		weights = make([]kyber.Scalar, len(lambdas))
		for i, l := range lambdas {
			weights[i] = toKyberScalar(l)
		}
	}

	sum := make([]kyber.Point, t)
	for k := range sum {
		sum[k] = suite.Point().Null()
	}
	for i, d := range deals {
		pts, err := decodePoints(d.Commits, "commitment")
		if err != nil {
			return nil, nil, fmt.Errorf("deal from %d: %w", d.Dealer, err)
		}
		for k, p := range pts {
			kp := toKyberPoint(p)
			if weights != nil {
				kp = suite.Point().Mul(weights[i], kp)
			}
			sum[k].Add(sum[k], kp)
		}
	}
	poly := &PublicPoly{Commits: make([][]byte, t)}
	for k, p := range sum {
		b, err := kyberPointBytes(p)
		if err != nil {
			return nil, nil, fmt.Errorf("combined commitment %d: %w", k, err)
		}
		poly.Commits[k] = b
	}
	if mine == nil {
		return nil, poly, nil
	}

	if myIndex == 0 {
		return nil, nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if len(mine) != len(deals) {
		return nil, nil, fmt.Errorf("%w: %d sub-shares for %d deals", ErrBadShare, len(mine), len(deals))
	}
	acc := suite.Scalar().Zero()
	defer acc.Zero()
	for i, d := range deals {
		b, ok := mine[d.Dealer]
		if !ok {
			return nil, nil, fmt.Errorf("%w: no sub-share from dealer %d", ErrBadShare, d.Dealer)
		}
		s, err := decodeScalar(b)
		if err != nil {
			return nil, nil, fmt.Errorf("sub-share from dealer %d: %w", d.Dealer, err)
		}
		ks := toKyberScalar(s)
		wipeScalar(s)
		if weights != nil {
			w := suite.Scalar().Mul(weights[i], ks)
			ks.Zero()
			ks = w
		}
		acc.Add(acc, ks)
		ks.Zero()
	}
	v, err := kyberScalarBytes(acc)
	if err != nil {
		return nil, nil, err
	}
	sh := &Share{Index: myIndex, Value: v}
	if err := poly.VerifyShare(sh); err != nil {
		sh.Erase()
		return nil, nil, fmt.Errorf("combined share: %w", err)
	}
	return sh, poly, nil
}

// openSubshare reverses encryptSubshare: ct = E || AEAD(k, value), with
// k = HKDF-SHA256(a*E, salt = E || a*G) as dealKey derives it.
func openSubshare(encPriv, ct, ad []byte) ([]byte, error) {
	if len(ct) < PointSize+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: ciphertext too short", ErrDecrypt)
	}
	E, err := decodePoint(ct[:PointSize])
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	a, err := decodeSecretScalar(encPriv)
	if err != nil {
		return nil, fmt.Errorf("encryption private key: %w", err)
	}
	defer wipeScalar(a)
	shared := new(edwards25519.Point).ScalarMult(a, E)
	myPub := new(edwards25519.Point).ScalarBaseMult(a).Bytes()
	key, err := dealKey(shared, ct[:PointSize], myPub)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	v, err := aead.Open(nil, nonce[:], ct[PointSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return v, nil
}
