package api

import (
	"crypto/ecdh"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Transit export (docs/transit.md, "Export and wrapped import"). The
// caller signs an export request (op export: the key, a version, an
// ephemeral X25519 key); each holder checks it itself and seals its share
// of the version (32 bytes, the little-endian scalar f(i)) to the
// ephemeral key under fsm.PartialSealInfo(TransitExportContext(...), i);
// the coordinator relays t of them in a TransitDecryptReply. The caller
// checks each share against the version's commitments (Feldman:
// s_i*B = sum_j C_j*i^j), names a bad one (BadAnswers) and asks again
// without it, interpolates the scalar, checks it against the version's
// public key (OpenTransitExport), wraps it to the operator's RSA wrapping
// key in Vault's BYOK layout (WrapTransitKey) and erases it.
//
// The key material that is wrapped is the version's scalar as `transit
// import --key-file` takes it: 32 bytes, a canonical little-endian
// edwards25519 scalar.

// TransitExportContext binds a holder's share sealed to an export's
// caller to the cluster, the key, the epoch the version was dealt in, the
// version and the signed request: a share cannot be moved to another
// request, key or version.
func TransitExportContext(clusterID, name string, epoch, version uint64, payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(vocab.LabelTransitExport + "\x00" + clusterID + "\x00" + name + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, epoch), version))
	h.Write(payload)
	return h.Sum(nil)
}

// OpenTransitExport checks an export reply for version of transit key k
// (its metadata; the caller pinned the version's public key) and the
// signed request with payload, and returns the version's scalar, which
// the caller erases. A holder whose answer does not open or whose share is
// off the version's commitments is named in a BadAnswers error and
// nothing is returned: the caller asks again without it.
func OpenTransitExport(r *TransitDecryptReply, clusterID string, k *fsm.Key, version uint64, payload []byte, ephPriv *ecdh.PrivateKey) ([]byte, error) {
	if r == nil || r.Key != k.Name || r.ClusterID != clusterID {
		return nil, fmt.Errorf("the reply is not for key %q of cluster %q", k.Name, clusterID)
	}
	if k.Transit() == nil {
		return nil, fmt.Errorf("key %q is not a %s key", k.Name, fsm.KeyTypeTransit)
	}
	tv := k.Transit().Version(version)
	if tv == nil || tv.Sharing == nil {
		return nil, &Error{Kind: KindNotFound, Message: fmt.Sprintf("key %q has no version %d", k.Name, version)}
	}
	poly := &shamir.PublicPoly{Commits: tv.Sharing.Commits}
	if err := validatePoly(poly); err != nil {
		return nil, fmt.Errorf("version %d's commitments: %w", version, err)
	}
	// The holders seal under the epoch the version was dealt in (they
	// refuse a version of another epoch), not the one the reply says.
	base := TransitExportContext(clusterID, k.Name, tv.Sharing.Epoch, version, payload)
	var shares []*shamir.Share
	defer func() {
		for _, sh := range shares {
			sh.Erase()
		}
	}()
	bad := BadAnswers{}
	seen := map[uint32]bool{}
	for _, sp := range r.Partials {
		why := ""
		switch {
		case sp.Index == 0:
			why = "share index 0"
		case seen[sp.Index]:
			why = "a second answer for the same share"
		}
		if why == "" {
			v, err := shamir.OpenX25519(ephPriv, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(base, sp.Index))
			switch {
			case err != nil:
				why = fmt.Sprintf("does not open with the request's ephemeral key: %v", err)
			default:
				sh := &shamir.Share{Index: sp.Index, Value: v}
				if err := poly.VerifyShare(sh); err != nil {
					sh.Erase()
					why = "the share is not on the version's commitments"
				} else {
					shares = append(shares, sh)
				}
			}
		}
		seen[sp.Index] = true
		if why != "" {
			bad[sp.Index] = fmt.Sprintf("answer of share %d (node %q): %s", sp.Index, sp.Node, why)
		}
	}
	if len(bad) > 0 {
		return nil, bad
	}
	if len(shares) < poly.Threshold() {
		return nil, &Error{Kind: KindNoQuorum, Message: fmt.Sprintf("%d shares, %d needed", len(shares), poly.Threshold())}
	}
	return shamir.CombineShares(poly, shares)
}

// ParseWrappingKey reads an RSA wrapping public key: PEM, a "PUBLIC KEY"
// (PKIX, as Vault's transit/wrapping_key gives it) or an "RSA PUBLIC
// KEY" (PKCS #1), of at least shamir.MinWrappingKeyBits.
func ParseWrappingKey(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("the wrapping key is not PEM")
	}
	var pub *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the wrapping key: %v", err)
		}
		var ok bool
		if pub, ok = k.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("the wrapping key is a %T, not an RSA key", k)
		}
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the wrapping key: %v", err)
		}
		pub = k
	default:
		return nil, fmt.Errorf("the wrapping key is a PEM %q, not a PUBLIC KEY", block.Type)
	}
	if pub.N.BitLen() < shamir.MinWrappingKeyBits {
		return nil, fmt.Errorf("the wrapping key has %d bits, fewer than %d", pub.N.BitLen(), shamir.MinWrappingKeyBits)
	}
	return pub, nil
}

// ParseWrappingPrivateKey reads the RSA wrapping key's private half: PEM,
// a "PRIVATE KEY" (PKCS #8) or an "RSA PRIVATE KEY" (PKCS #1).
func ParseWrappingPrivateKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("the wrapping private key is not PEM")
	}
	defer clear(block.Bytes)
	var priv *rsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the wrapping private key is not a PKCS #8 key")
		}
		var ok bool
		if priv, ok = k.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("the wrapping private key is a %T, not an RSA key", k)
		}
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the wrapping private key is not a PKCS #1 key")
		}
		priv = k
	default:
		return nil, fmt.Errorf("the wrapping private key is a PEM %q, not a PRIVATE KEY", block.Type)
	}
	if priv.N.BitLen() < shamir.MinWrappingKeyBits {
		return nil, fmt.Errorf("the wrapping key has %d bits, fewer than %d", priv.N.BitLen(), shamir.MinWrappingKeyBits)
	}
	return priv, nil
}

// WrapTransitKey wraps a transit version's scalar for the holder of pub
// in Vault's BYOK layout (shamir.WrapRSAAES), base64 (standard, padded):
// what `keyctl transit export` prints.
func WrapTransitKey(rand io.Reader, pub *rsa.PublicKey, scalar []byte) (string, error) {
	blob, err := shamir.WrapRSAAES(rand, pub, scalar)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(blob), nil
}

// MaxWrappedKey bounds a wrapped key's text: a 16384-bit RSA head and a
// 32-byte key's KWP, in base64, with room to spare.
const MaxWrappedKey = 8192

// UnwrapTransitKey opens a wrapped key (base64 of Vault's BYOK layout,
// white space around it ignored) with the wrapping key's private half and
// returns the key material, which the caller erases: for a transit key, a
// 32-byte scalar (checked when it is dealt). Whatever fails to unwrap is
// one error that says no more.
func UnwrapTransitKey(priv *rsa.PrivateKey, wrapped string) ([]byte, error) {
	wrapped = strings.TrimSpace(wrapped)
	if len(wrapped) > MaxWrappedKey {
		return nil, fmt.Errorf("a wrapped key is at most %d characters", MaxWrappedKey)
	}
	blob, err := base64.StdEncoding.DecodeString(wrapped)
	if err != nil {
		return nil, errors.New("the wrapped key is not base64")
	}
	m, err := shamir.UnwrapRSAAES(priv, blob)
	if err != nil {
		return nil, err
	}
	if len(m) != shamir.ScalarSize {
		clear(m)
		return nil, fmt.Errorf("the wrapped key unwraps to %d bytes, not a %d-byte transit key", len(m), shamir.ScalarSize)
	}
	return m, nil
}
