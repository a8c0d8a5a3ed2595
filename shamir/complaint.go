package shamir

import (
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	"golang.org/x/crypto/chacha20poly1305"
)

const complaintLabel = "keyquorum/complaint/v1\x00"

// ErrFalseComplaint is a complaint against a deal whose sub-share opens and
// matches the dealer's commitments.
var ErrFalseComplaint = errors.New("shamir: the complaint is false: the sub-share is good")

// DealComplaint is a recipient's public proof that a dealer's sub-share to
// it is bad. Only the recipient can decrypt its sub-share, so it reveals
// the Diffie-Hellman point of that one ciphertext, Shared = a*E (a its
// encryption key, E the ciphertext's ephemeral key), with a DLEQ proof
// that log_G(A) == log_E(Shared). Anyone can then derive the AEAD key,
// decrypt that one sub-share and check it against the commitments
// (VerifyDealComplaint). It reveals nothing of a beyond this one point:
// the recipient's other sub-shares stay sealed.
type DealComplaint struct {
	Dealer    uint32 `json:"dealer"`
	Recipient uint32 `json:"recipient"`
	Shared    []byte `json:"shared"`
	Challenge []byte `json:"challenge"`
	Response  []byte `json:"response"`
}

// complaintContext binds a complaint's proof to the deal's context and to
// the dealer.
func complaintContext(context []byte, dealer uint32) []byte {
	out := append([]byte(complaintLabel), context...)
	return append(out, byte(dealer>>24), byte(dealer>>16), byte(dealer>>8), byte(dealer))
}

func subshareCiphertext(dealer uint32, shares []EncryptedShare, recipient uint32) ([]byte, error) {
	var ct []byte
	found := 0
	for _, s := range shares {
		if s.Index == recipient {
			ct, found = s.Ciphertext, found+1
		}
	}
	switch {
	case found != 1:
		return nil, fmt.Errorf("deal from %d: %w: %d shares for recipient %d", dealer, ErrBadDeal, found, recipient)
	case len(ct) != EncryptedShareSize:
		return nil, fmt.Errorf("deal from %d: %w: share for %d is %d bytes, want %d", dealer, ErrBadDeal, recipient, len(ct), EncryptedShareSize)
	}
	return ct, nil
}

// NewDealComplaint makes recipient's complaint against deal d, with the
// encryption private key the deal was encrypted to. It does not check that
// the sub-share is bad (OpenDeal does): a false complaint is refused by
// VerifyDealComplaint, and reveals to everyone the sub-share the
// recipient already had.
func NewDealComplaint(rand io.Reader, d *Deal, recipient uint32, encPriv, context []byte) (*DealComplaint, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil deal", ErrBadDeal)
	}
	return newComplaint(rand, d.Dealer, d.Shares, recipient, encPriv, context)
}

func newComplaint(rand io.Reader, dealer uint32, shares []EncryptedShare, recipient uint32, encPriv, context []byte) (*DealComplaint, error) {
	ct, err := subshareCiphertext(dealer, shares, recipient)
	if err != nil {
		return nil, err
	}
	p, err := ComputePartial(rand, &Share{Index: recipient, Value: encPriv}, ct[:PointSize], complaintContext(context, dealer))
	if err != nil {
		return nil, fmt.Errorf("complaint against %d: %w", dealer, err)
	}
	return &DealComplaint{Dealer: dealer, Recipient: recipient, Shared: p.Value, Challenge: p.Challenge, Response: p.Response}, nil
}

// VerifyDealComplaint checks recipient's complaint against deal d, the
// deal having passed its public checks: the proof must show that Shared
// is the Diffie-Hellman point of the sub-share's ciphertext under encPub,
// the key the round encrypted to the recipient. It returns nil when the
// complaint holds: the sub-share does not decrypt under that point, is not
// a canonical scalar, or does not match the commitments. It returns an
// error wrapping ErrBadProof for a bad proof and ErrFalseComplaint when
// the sub-share is good. It is deterministic.
func VerifyDealComplaint(d *Deal, encPub []byte, c *DealComplaint, context []byte) error {
	if d == nil || c == nil {
		return fmt.Errorf("%w: nil deal or complaint", ErrBadDeal)
	}
	commits, err := decodePoints(d.Commits, "commitment")
	if err != nil || len(commits) == 0 {
		return fmt.Errorf("deal from %d: %w: commitments", d.Dealer, ErrBadDeal)
	}
	sub, err := complainedSubshare(d.Dealer, d.Shares, d.Commits, encPub, c, context)
	if err != nil || sub == nil {
		return err
	}
	defer clear(sub)
	s, err := decodeScalar(sub)
	if err != nil {
		return nil // not a canonical scalar
	}
	kidx, err := kyberIndex(c.Recipient)
	if err != nil {
		return err
	}
	ks := toKyberScalar(s)
	wipeScalar(s)
	defer ks.Zero()
	kc := make([]kyber.Point, len(commits))
	for i, cp := range commits {
		kc[i] = toKyberPoint(cp)
	}
	if share.NewPubPoly(suite, nil, kc).Check(&share.PriShare{I: kidx, V: ks}) {
		return fmt.Errorf("complaint of %d against %d: %w", c.Recipient, d.Dealer, ErrFalseComplaint)
	}
	return nil
}

// complainedSubshare checks a complaint's proof that Shared is the
// Diffie-Hellman point of the recipient's sub-share ciphertext under
// encPub, and decrypts the sub-share with it. It returns nil and no error
// when the ciphertext does not open: the complaint holds.
func complainedSubshare(dealer uint32, shares []EncryptedShare, commits [][]byte, encPub []byte, c *DealComplaint, context []byte) ([]byte, error) {
	if c.Dealer != dealer {
		return nil, fmt.Errorf("complaint names dealer %d, the deal is from %d", c.Dealer, dealer)
	}
	ct, err := subshareCiphertext(dealer, shares, c.Recipient)
	if err != nil {
		return nil, err
	}
	A, err := decodePoint(encPub)
	if err != nil {
		return nil, fmt.Errorf("recipient %d encryption key: %w", c.Recipient, err)
	}
	p := &Partial{Index: c.Recipient, Value: c.Shared, Challenge: c.Challenge, Response: c.Response}
	keyPoly := &PublicPoly{Commits: [][]byte{A.Bytes()}} // t = 1: every public share is A
	shared, err := verifyPartialE(keyPoly, ct[:PointSize], p, complaintContext(context, dealer))
	if err != nil {
		return nil, fmt.Errorf("complaint of %d against %d: %w", c.Recipient, dealer, err)
	}
	key, err := dealKey(shared, ct[:PointSize], encPub)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	sub, err := aead.Open(nil, nonce[:], ct[PointSize:], dealAD(context, dealer, c.Recipient, commits))
	if err != nil {
		return nil, nil // the dealer encrypted something that does not open
	}
	return sub, nil
}

// verifyPartialE is VerifyPartial returning the partial's value.
func verifyPartialE(poly *PublicPoly, R []byte, p *Partial, context []byte) (*edwards25519.Point, error) {
	if _, err := decodePoint(R); err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	v, err := NewVerifier(poly, R, context)
	if err != nil {
		return nil, err
	}
	vp, err := v.Verify(p)
	if err != nil {
		return nil, err
	}
	return vp.value, nil
}
