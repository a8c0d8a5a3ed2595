package tlv

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"io"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// quorumRSA is an rsa-threshold key as the server sees it: every
// signature and decryption is x^d mod n computed by a quorum of the key's
// share holders (cluster.LegacyService.ThresholdRSA), which checks the
// result with the public key. No private value is ever in this node's
// memory. One is made per request, with the request's context and the
// client's description for the holders' logs.
type quorumRSA struct {
	ctx    context.Context
	svc    cluster.LegacyService
	name   string
	client string
	pub    *rsa.PublicKey
}

var (
	_ crypto.Decrypter = (*quorumRSA)(nil)
	_ RawDecrypter     = (*quorumRSA)(nil)
)

func (q *quorumRSA) Public() crypto.PublicKey { return q.pub }

// Sign pads the digest here (PKCS #1 v1.5, or PSS with a salt drawn here
// when opts is *rsa.PSSOptions) and has the quorum raise it to d.
func (q *quorumRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var padder tssrsa.Padder = tssrsa.PKCS1v15Padder{}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		padder = &tssrsa.PSSPadder{Rand: rand, Opts: pss}
	}
	em, err := padder.Pad(q.pub, opts.HashFunc(), digest)
	if err != nil {
		return nil, err
	}
	return q.power(em)
}

// Decrypt is PKCS #1 v1.5 decryption: the quorum gives the padded block,
// and the padding is checked and removed here (pkcs1v15Unpad).
func (q *quorumRSA) Decrypt(_ io.Reader, ciphertext []byte, _ crypto.DecrypterOpts) ([]byte, error) {
	em, err := q.power(ciphertext)
	if err != nil {
		return nil, err
	}
	defer clear(em)
	return pkcs1v15Unpad(em)
}

// DecryptRaw is c^d mod n.
func (q *quorumRSA) DecryptRaw(ciphertext []byte) ([]byte, error) { return q.power(ciphertext) }

// power asks the quorum. An input the cluster refuses (not below the
// modulus) is a crypto failure, like a bad ciphertext; any other failure
// (no quorum, the key revoked meanwhile) is an internal error.
func (q *quorumRSA) power(x []byte) ([]byte, error) {
	out, err := q.svc.ThresholdRSA(q.ctx, fsm.GatewayTLV, q.name, x, q.client)
	switch {
	case err == nil:
		return out, nil
	case cluster.KindOf(err) == cluster.KindInvalid:
		return nil, &Error{Code: CodeCryptoFailed, Reason: errRawDecrypt.Error()}
	case cluster.KindOf(err) == cluster.KindDenied || cluster.KindOf(err) == cluster.KindNotFound:
		return nil, &Error{Code: CodeKeyNotFound, Reason: err.Error()}
	}
	return nil, &Error{Code: CodeInternalError, Reason: err.Error()}
}

// errBadPadding answers a PKCS #1 v1.5 block that is not one: a crypto
// failure, as from any keyless server (a padding oracle for whoever may
// use the key; see the package doc).
var errBadPadding = &Error{Code: CodeCryptoFailed, Reason: "decryption error"}

// pkcs1v15Unpad removes PKCS #1 v1.5 encryption padding (RFC 8017,
// 7.2.2): 0x00 0x02, at least eight nonzero bytes, 0x00, the message. It
// looks at every byte whatever it finds, so its time does not depend on
// where the padding is wrong.
func pkcs1v15Unpad(em []byte) ([]byte, error) {
	if len(em) < 11 {
		return nil, errBadPadding
	}
	good := subtle.ConstantTimeByteEq(em[0], 0) & subtle.ConstantTimeByteEq(em[1], 2)
	found, at := 0, 0 // found: the separator was seen; at: its index
	for i := 2; i < len(em); i++ {
		zero := subtle.ConstantTimeByteEq(em[i], 0)
		at = subtle.ConstantTimeSelect(zero&^found&1, i, at)
		found |= zero
	}
	good &= found & subtle.ConstantTimeLessOrEq(2+8, at)
	if good != 1 {
		return nil, errBadPadding
	}
	return append([]byte(nil), em[at+1:]...), nil
}
