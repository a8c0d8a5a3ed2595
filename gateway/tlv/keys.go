package tlv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"filippo.io/bigmod"
)

// Client is who asks: the leaf certificate the peer proved it holds (the
// first one it sent, verified against the server's client CAs), and its
// network address.
type Client struct {
	Cert *x509.Certificate
	Addr net.Addr
}

// Keys finds keys for clients.
type Keys interface {
	// Lookup returns the key named by ski (20 bytes) or digest (32 bytes),
	// for the client, when it may use it. Either id may be nil when the
	// request did not carry it; sni may be empty. The slices are valid only
	// during the call.
	//
	// It returns ErrKeyNotFound when neither id is known and ErrDenied when
	// the client may not use the key: the server answers both with
	// CodeKeyNotFound, so a client learns nothing of keys it may not use.
	// Any other error is answered with CodeInternalError.
	//
	// The signer of an RSA key must also implement crypto.Decrypter for
	// opcode 0x01, and be an *rsa.PrivateKey or implement RawDecrypter for
	// opcode 0x08. Lookup runs on the server's bounded worker pool: it
	// should answer from memory, since a slow Lookup holds a worker.
	Lookup(ctx context.Context, ski, digest []byte, sni string, client Client) (crypto.Signer, error)
}

// The errors Keys.Lookup returns to say why it has no key for a request.
var (
	ErrKeyNotFound = errors.New("keyless: no key with this SKI or digest")
	ErrDenied      = errors.New("keyless: the client may not use this key")
)

// RawDecrypter is implemented by RSA keys that can undo RSA without any
// padding (opcode 0x08), for signers that are not *rsa.PrivateKey (an HSM,
// a key assembled elsewhere). DecryptRaw returns c^d mod n as a big-endian
// byte string as long as the modulus; it fails if c is not below n.
type RawDecrypter interface {
	DecryptRaw(ciphertext []byte) ([]byte, error)
}

// SKI returns the subject key identifier of a public key: the SHA-1 of the
// subject public key bit string, which is the DER RSAPublicKey for RSA, the
// uncompressed point for ECDSA, and the 32 raw bytes for Ed25519.
func SKI(pub crypto.PublicKey) ([]byte, error) {
	var bits []byte
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("keyless: SKI of an empty RSA key")
		}
		bits = x509.MarshalPKCS1PublicKey(k)
	case *ecdsa.PublicKey:
		b, err := ecPoint(k)
		if err != nil {
			return nil, err
		}
		bits = b
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keyless: Ed25519 public key of %d bytes", len(k))
		}
		bits = k
	default:
		return nil, fmt.Errorf("keyless: SKI of an unsupported key type %T", pub)
	}
	sum := sha1.Sum(bits)
	return sum[:], nil
}

// Digest returns the key digest of the C keyless server: the SHA-256 of the
// uppercase hex string of the RSA modulus (its big-endian bytes, no leading
// zero byte), or for ECDSA of the compressed point. For Ed25519, which the C
// server does not have, it is the same over the 32 raw bytes.
func Digest(pub crypto.PublicKey) ([]byte, error) {
	var b []byte
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("keyless: digest of an empty RSA key")
		}
		b = k.N.Bytes()
	case *ecdsa.PublicKey:
		p, err := ecPoint(k)
		if err != nil {
			return nil, err
		}
		// Compress: 0x02 or 0x03 by the parity of y, then x.
		size := (len(p) - 1) / 2
		b = make([]byte, 1+size)
		b[0] = 2 | p[len(p)-1]&1
		copy(b[1:], p[1:1+size])
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keyless: Ed25519 public key of %d bytes", len(k))
		}
		b = k
	default:
		return nil, fmt.Errorf("keyless: digest of an unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(strings.ToUpper(hex.EncodeToString(b))))
	return sum[:], nil
}

// ecPoint is the uncompressed encoding of an ECDSA public key.
func ecPoint(k *ecdsa.PublicKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("keyless: empty ECDSA key")
	}
	b, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("keyless: ECDSA public key: %w", err)
	}
	return b, nil
}

// errRawDecrypt is what raw RSA decryption says about a bad input; it is
// answered with CodeCryptoFailed.
var errRawDecrypt = errors.New("keyless: ciphertext is not below the modulus")

// decryptRawRSA computes c^d mod n in constant time (filippo.io/bigmod),
// with the CRT when the key has two primes and their precomputed values,
// and checks the result against the public exponent, so that a fault does
// not leak a factor of n.
func decryptRawRSA(k *rsa.PrivateKey, c []byte) ([]byte, error) {
	n, err := bigmod.NewModulus(k.N.Bytes())
	if err != nil {
		return nil, err
	}
	cn, err := bigmod.NewNat().SetBytes(c, n)
	if err != nil {
		return nil, errRawDecrypt
	}
	var m *bigmod.Nat
	if len(k.Primes) == 2 && k.Precomputed.Dp != nil && k.Precomputed.Dq != nil && k.Precomputed.Qinv != nil {
		m, err = rawCRT(k, cn, n)
		if err != nil {
			return nil, err
		}
	} else {
		m = bigmod.NewNat().Exp(cn, k.D.Bytes(), n)
	}
	if k.E <= 0 {
		return nil, errors.New("keyless: RSA key with a bad public exponent")
	}
	check := bigmod.NewNat().ExpShortVarTime(m, uint(k.E), n)
	if check.Equal(cn) != 1 {
		return nil, errors.New("keyless: RSA raw decryption failed its check")
	}
	return m.Bytes(n), nil
}

// rawCRT is m = m2 + q * (qinv * (m1 - m2) mod p), with m1 = c^dp mod p
// and m2 = c^dq mod q.
func rawCRT(k *rsa.PrivateKey, c *bigmod.Nat, n *bigmod.Modulus) (*bigmod.Nat, error) {
	p, err := bigmod.NewModulus(k.Primes[0].Bytes())
	if err != nil {
		return nil, err
	}
	q, err := bigmod.NewModulus(k.Primes[1].Bytes())
	if err != nil {
		return nil, err
	}
	m1 := bigmod.NewNat().Mod(c, p)
	m1.Exp(m1, k.Precomputed.Dp.Bytes(), p)
	m2 := bigmod.NewNat().Mod(c, q)
	m2.Exp(m2, k.Precomputed.Dq.Bytes(), q)
	qinv, err := bigmod.NewNat().SetBytes(k.Precomputed.Qinv.Bytes(), p)
	if err != nil {
		return nil, err
	}
	h := bigmod.NewNat().Mod(m2, p)
	h = m1.Sub(h, p).Mul(qinv, p)
	hn := bigmod.NewNat().Mod(h, n)
	qn, err := bigmod.NewNat().SetBytes(k.Primes[1].Bytes(), n)
	if err != nil {
		return nil, err
	}
	m2n := bigmod.NewNat().Mod(m2, n)
	return hn.Mul(qn, n).Add(m2n, n), nil
}

// modulusSize is the byte length of an RSA modulus.
func modulusSize(k *rsa.PublicKey) int { return (k.N.BitLen() + 7) / 8 }
