package shamir

// Resharing a P-256 (Tang) sharing, as the cluster key's is reshared
// (deal.go): each of t old holders i deals its share s_i as the constant
// term of a random polynomial f_i of degree t'-1 over the scalars mod n,
// with Feldman commitments C_ik = a_ik*G on P-256 (C_i0 = S_i, the
// holder's public share, so anyone can check that it dealt its own share)
// and f_i(j) encrypted to each new member j's edwards25519 encryption key,
// exactly as deals encrypt sub-shares. Member j's new share is
// sum_i lambda_i f_i(j) (Lagrange at 0 over the dealers), a share of the
// same secret s; the new public shares follow from the commitments alone.

import (
	"fmt"
	"io"

	"filippo.io/bigmod"
	"filippo.io/nistec"
)

// P256Deal is one old holder's resharing of its P-256 share: Feldman
// commitments on P-256 (len(Commits) == t', 65-byte points, Commits[0] the
// dealer's public share) and one encrypted sub-share per recipient
// (EncryptedShareSize bytes, as in Deal). Everything in it is public.
type P256Deal struct {
	Dealer  uint32
	Commits [][]byte
	Shares  []EncryptedShare
}

// NewP256ReshareDeal deals sh t-of-len(recipients): a random polynomial f
// of degree t-1 with f(0) = sh's scalar, f(j) encrypted to recipient j
// with context bound to every ciphertext. The polynomial is overwritten
// before it returns.
func NewP256ReshareDeal(rand io.Reader, sh *P256Share, t int, recipients []Recipient, context []byte) (*P256Deal, error) {
	if sh == nil || sh.Index == 0 {
		return nil, fmt.Errorf("%w: no P-256 share or index 0", ErrInvalidIndex)
	}
	if t < 1 || t > len(recipients) {
		return nil, fmt.Errorf("%w: t=%d with %d recipients", ErrBadThreshold, t, len(recipients))
	}
	idx := make([]uint32, len(recipients))
	for i, r := range recipients {
		idx[i] = r.Index
	}
	if err := checkIndexes(idx); err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	s, err := decodeP256SecretScalar(sh.Scalar)
	if err != nil {
		return nil, fmt.Errorf("P-256 share %d: %w", sh.Index, err)
	}
	coeffs := make([]*bigmod.Nat, t)
	coeffs[0] = s
	defer func() {
		for _, c := range coeffs {
			wipeNat(c)
		}
	}()
	for j := 1; j < t; j++ {
		if coeffs[j], err = randomP256Scalar(rand); err != nil {
			return nil, err
		}
	}
	d := &P256Deal{Dealer: sh.Index, Commits: make([][]byte, t), Shares: make([]EncryptedShare, len(recipients))}
	for j, c := range coeffs {
		cb := c.Bytes(p256Order)
		P, err := nistec.NewP256Point().ScalarBaseMult(cb)
		clear(cb)
		if err != nil {
			return nil, fmt.Errorf("shamir: P-256 base multiplication: %w", err)
		}
		if d.Commits[j], err = p256PointBytes(P, "commitment"); err != nil {
			return nil, fmt.Errorf("%w; deal again", err)
		}
	}
	for i, r := range recipients {
		pub, err := decodePoint(r.EncPub)
		if err != nil {
			return nil, fmt.Errorf("recipient %d encryption key: %w", r.Index, err)
		}
		xi := p256NatFromUint32(r.Index)
		acc := bigmod.NewNat().ExpandFor(p256Order)
		for j := t - 1; j >= 0; j-- {
			acc.Mul(xi, p256Order)
			acc.Add(coeffs[j], p256Order)
		}
		sub := acc.Bytes(p256Order)
		wipeNat(acc)
		ct, err := encryptSubshare(rand, pub, sub, dealAD(context, d.Dealer, r.Index, d.Commits))
		clear(sub)
		if err != nil {
			return nil, err
		}
		d.Shares[i] = EncryptedShare{Index: r.Index, Ciphertext: ct}
	}
	return d, nil
}

// VerifyP256ReshareDeal runs the public checks on a P-256 resharing deal:
// a non-zero dealer, t commitments that are valid P-256 points, the first
// equal to publicShare (the dealer's S_i), and exactly one well-formed
// encrypted sub-share for each recipient.
func VerifyP256ReshareDeal(d *P256Deal, publicShare []byte, t int, recipients []uint32) error {
	if d == nil {
		return fmt.Errorf("%w: nil P-256 deal", ErrBadDeal)
	}
	if d.Dealer == 0 {
		return fmt.Errorf("P-256 deal: dealer %w: 0", ErrInvalidIndex)
	}
	if t < 1 || t > len(recipients) {
		return fmt.Errorf("P-256 deal from %d: %w: t=%d with %d recipients", d.Dealer, ErrBadThreshold, t, len(recipients))
	}
	if len(d.Commits) != t {
		return fmt.Errorf("P-256 deal from %d: %w: %d commitments, want t=%d", d.Dealer, ErrBadDeal, len(d.Commits), t)
	}
	for k, c := range d.Commits {
		if _, err := decodeP256Point(c); err != nil {
			return fmt.Errorf("P-256 deal from %d: commitment %d: %w", d.Dealer, k, err)
		}
	}
	if !equalBytes(d.Commits[0], publicShare) {
		return fmt.Errorf("P-256 deal from %d: %w: Commits[0] is not the dealer's public share", d.Dealer, ErrBadDeal)
	}
	if err := checkIndexes(recipients); err != nil {
		return fmt.Errorf("P-256 deal from %d: recipients: %w", d.Dealer, err)
	}
	return checkEncryptedShares(d.Dealer, d.Shares, recipients)
}

// p256Eval returns sum_k commits[k]*x^k: f(x)*G for the committed f.
func p256Eval(commits [][]byte, x uint32) (*nistec.P256Point, error) {
	acc := nistec.NewP256Point()
	xk := p256NatFromUint32(1)
	xn := p256NatFromUint32(x)
	term := nistec.NewP256Point()
	for k, cb := range commits {
		C, err := decodeP256Point(cb)
		if err != nil {
			return nil, fmt.Errorf("commitment %d: %w", k, err)
		}
		if _, err := term.ScalarMult(C, xk.Bytes(p256Order)); err != nil {
			return nil, fmt.Errorf("shamir: P-256 multiplication: %w", err)
		}
		acc.Add(acc, term)
		xk.Mul(xn, p256Order)
	}
	return acc, nil
}

// P256PublicShareAt returns f(index)*G for the polynomial committed to by
// commits (CombineP256Reshare's): the public share of the new holder index.
func P256PublicShareAt(commits [][]byte, index uint32) ([]byte, error) {
	if index == 0 {
		return nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if len(commits) == 0 {
		return nil, fmt.Errorf("%w: no commitments", ErrBadDeal)
	}
	P, err := p256Eval(commits, index)
	if err != nil {
		return nil, err
	}
	return p256PointBytes(P, "public share")
}

// p256CheckSubshare checks that an opened sub-share of d to recipient is a
// canonical scalar on the dealer's committed polynomial.
func p256CheckSubshare(d *P256Deal, recipient uint32, sub []byte) error {
	v, err := decodeP256Scalar(sub)
	if err != nil {
		return fmt.Errorf("P-256 deal from %d: sub-share for %d: %w", d.Dealer, recipient, ErrBadShare)
	}
	defer wipeNat(v)
	want, err := p256Eval(d.Commits, recipient)
	if err != nil {
		return fmt.Errorf("P-256 deal from %d: %w", d.Dealer, err)
	}
	got, err := nistec.NewP256Point().ScalarBaseMult(sub)
	if err != nil {
		return fmt.Errorf("shamir: P-256 base multiplication: %w", err)
	}
	if !equalBytes(got.Bytes(), want.Bytes()) {
		return fmt.Errorf("P-256 deal from %d: sub-share for %d: %w", d.Dealer, recipient, ErrBadShare)
	}
	return nil
}

// OpenP256Deal decrypts the sub-share of d addressed to myIndex and checks
// it against the deal's commitments (Feldman on P-256). It returns the
// 32-byte sub-share. A ciphertext that does not open gives ErrDecrypt, a
// value off the dealer's polynomial ErrBadShare: the member complains.
func OpenP256Deal(d *P256Deal, myIndex uint32, encPriv, context []byte) ([]byte, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil P-256 deal", ErrBadDeal)
	}
	if len(d.Commits) == 0 {
		return nil, fmt.Errorf("P-256 deal from %d: %w: no commitments", d.Dealer, ErrBadDeal)
	}
	ct, err := subshareCiphertext(d.Dealer, d.Shares, myIndex)
	if err != nil {
		return nil, err
	}
	sub, err := openSubshare(encPriv, ct, dealAD(context, d.Dealer, myIndex, d.Commits))
	if err != nil {
		return nil, fmt.Errorf("P-256 deal from %d to %d: %w", d.Dealer, myIndex, err)
	}
	if err := p256CheckSubshare(d, myIndex, sub); err != nil {
		clear(sub)
		return nil, err
	}
	return sub, nil
}

// CombineP256Reshare finishes a P-256 resharing from the deals of a set of
// old holders with distinct indexes, at least the old threshold of them
// (each passed VerifyP256ReshareDeal): the new commitments are
// sum lambda_i * Commits_i, lambda_i the Lagrange coefficients at 0 over
// the dealers, so their constant term is the unchanged public key. With
// mine == nil it returns only the commitments; otherwise mine holds one
// opened sub-share per dealer and the new share sum lambda_i * sub_i of
// myIndex is returned, checked against the commitments.
func CombineP256Reshare(deals []*P256Deal, mine map[uint32][]byte, myIndex uint32) (*P256Share, [][]byte, error) {
	if len(deals) == 0 {
		return nil, nil, fmt.Errorf("%w: no P-256 deals", ErrBadDeal)
	}
	t := len(deals[0].Commits)
	dealers := make([]uint32, len(deals))
	for i, d := range deals {
		if d == nil || t == 0 || len(d.Commits) != t {
			return nil, nil, fmt.Errorf("%w: P-256 deal %d: commitments of different lengths", ErrBadDeal, i)
		}
		dealers[i] = d.Dealer
	}
	lambdas, err := p256Lagrange(dealers, 0)
	if err != nil {
		return nil, nil, err
	}
	commits := make([][]byte, t)
	term := nistec.NewP256Point()
	for k := range t {
		acc := nistec.NewP256Point()
		for i, d := range deals {
			C, err := decodeP256Point(d.Commits[k])
			if err != nil {
				return nil, nil, fmt.Errorf("P-256 deal from %d: commitment %d: %w", d.Dealer, k, err)
			}
			if _, err := term.ScalarMult(C, lambdas[i]); err != nil {
				return nil, nil, fmt.Errorf("shamir: P-256 multiplication: %w", err)
			}
			acc.Add(acc, term)
		}
		if commits[k], err = p256PointBytes(acc, "combined commitment"); err != nil {
			return nil, nil, err
		}
	}
	if mine == nil {
		return nil, commits, nil
	}
	if myIndex == 0 {
		return nil, nil, fmt.Errorf("%w: 0", ErrInvalidIndex)
	}
	if len(mine) != len(deals) {
		return nil, nil, fmt.Errorf("%w: %d sub-shares for %d P-256 deals", ErrBadShare, len(mine), len(deals))
	}
	acc := bigmod.NewNat().ExpandFor(p256Order)
	defer wipeNat(acc)
	for i, d := range deals {
		b, ok := mine[d.Dealer]
		if !ok {
			return nil, nil, fmt.Errorf("%w: no sub-share from dealer %d", ErrBadShare, d.Dealer)
		}
		v, err := decodeP256Scalar(b)
		if err != nil {
			return nil, nil, fmt.Errorf("sub-share from dealer %d: %w", d.Dealer, err)
		}
		l, err := decodeP256Scalar(lambdas[i])
		if err != nil {
			wipeNat(v)
			return nil, nil, err
		}
		v.Mul(l, p256Order)
		acc.Add(v, p256Order)
		wipeNat(v)
	}
	sh := &P256Share{Index: myIndex, Scalar: acc.Bytes(p256Order)}
	want, err := P256PublicShareAt(commits, myIndex)
	if err != nil {
		sh.Erase()
		return nil, nil, err
	}
	if err := CheckP256Share(sh, want); err != nil {
		sh.Erase()
		return nil, nil, fmt.Errorf("combined P-256 share: %w", err)
	}
	return sh, commits, nil
}

// NewP256DealComplaint makes recipient's complaint against the P-256 deal
// d, as NewDealComplaint does for a Deal: the Diffie-Hellman point of its
// sub-share's ciphertext with a proof, which VerifyP256DealComplaint
// checks.
func NewP256DealComplaint(rand io.Reader, d *P256Deal, recipient uint32, encPriv, context []byte) (*DealComplaint, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil P-256 deal", ErrBadDeal)
	}
	return newComplaint(rand, d.Dealer, d.Shares, recipient, encPriv, context)
}

// VerifyP256DealComplaint checks recipient's complaint against the P-256
// deal d (which passed its public checks), as VerifyDealComplaint does:
// nil when the complaint holds (the sub-share does not decrypt, is not a
// canonical scalar or does not match the P-256 commitments), an error
// wrapping ErrBadProof or ErrFalseComplaint otherwise. It is deterministic.
func VerifyP256DealComplaint(d *P256Deal, encPub []byte, c *DealComplaint, context []byte) error {
	if d == nil || c == nil {
		return fmt.Errorf("%w: nil P-256 deal or complaint", ErrBadDeal)
	}
	if len(d.Commits) == 0 {
		return fmt.Errorf("P-256 deal from %d: %w: no commitments", d.Dealer, ErrBadDeal)
	}
	sub, err := complainedSubshare(d.Dealer, d.Shares, d.Commits, encPub, c, context)
	if err != nil || sub == nil {
		return err
	}
	defer clear(sub)
	if p256CheckSubshare(d, c.Recipient, sub) != nil {
		return nil
	}
	return fmt.Errorf("complaint of %d against %d: %w", c.Recipient, d.Dealer, ErrFalseComplaint)
}
