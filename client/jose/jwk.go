// Package jose is the part of JOSE that Tang speaks: JSON Web Keys
// (RFC 7517, RFC 7518 section 6.2) for P-256 public keys only, with their
// RFC 7638 thumbprints, and Tang's advertisement, a JWS signed with ES256.
// The operator's client makes advertisements with it (client.CreateTang)
// and the Tang gateway (gateway/tang) serves and checks them and answers
// recoveries in its JWKs.
package jose

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
)

// JWK member values used by Tang.
const (
	jwkKtyEC      = "EC"
	jwkCrvP256    = "P-256"
	JWKAlgECMR    = "ECMR"      // the McCallum-Relyea exchange of Tang
	JWKAlgES256   = "ES256"     // ECDSA P-256 SHA-256 (RFC 7518 3.4)
	JWKOpDerive   = "deriveKey" // key_ops of a Tang exchange key
	JWKOpVerify   = "verify"    // key_ops of a Tang signing key
	p256CoordSize = 32
	p256PointSize = 1 + 2*p256CoordSize
	MaxJWKSize    = 4 << 10
)

// Errors of JWK parsing. Every error wraps one of them and names the
// member that was wrong.
var (
	// ErrInvalidJWK: not a JSON object, a member missing or of the wrong
	// type, a kty other than EC, a crv other than P-256, a coordinate that
	// is not 32 bytes of unpadded base64url, a point not on the curve, a
	// private key, or an alg other than the one required.
	ErrInvalidJWK = errors.New("invalid JWK")
	// ErrJWKKeyOps: key_ops is present but lacks the operation required.
	ErrJWKKeyOps = errors.New("JWK key_ops does not allow this operation")
)

// JWK is a P-256 public key as a JSON Web Key. Its fields are in the order
// json.Marshal writes them, which is the lexicographic order tangd uses.
// Build one with NewJWK or ParseJWK; X and Y are unpadded base64url of the
// 32-byte big-endian coordinates.
type JWK struct {
	Alg    string   `json:"alg,omitempty"`
	Crv    string   `json:"crv"`
	KeyOps []string `json:"key_ops,omitempty"`
	Kty    string   `json:"kty"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

var b64 = base64.RawURLEncoding.Strict()

// NewJWK makes the JWK of a 65-byte uncompressed P-256 point. alg and
// keyOps may be empty.
func NewJWK(point []byte, alg string, keyOps ...string) (*JWK, error) {
	if err := checkP256Point(point); err != nil {
		return nil, err
	}
	k := &JWK{
		Alg: alg,
		Crv: jwkCrvP256,
		Kty: jwkKtyEC,
		X:   b64.EncodeToString(point[1 : 1+p256CoordSize]),
		Y:   b64.EncodeToString(point[1+p256CoordSize:]),
	}
	if len(keyOps) > 0 {
		k.KeyOps = slices.Clone(keyOps)
	}
	return k, nil
}

// checkP256Point checks a 65-byte uncompressed point: on the curve, so not
// the identity. crypto/ecdh refuses the compressed form and the infinity
// encoding.
func checkP256Point(point []byte) error {
	if len(point) != p256PointSize || point[0] != 4 {
		return fmt.Errorf("%w: the point is not a %d-byte uncompressed P-256 point", ErrInvalidJWK, p256PointSize)
	}
	if _, err := ecdh.P256().NewPublicKey(point); err != nil {
		return fmt.Errorf("%w: the point (x, y) is not on P-256", ErrInvalidJWK)
	}
	return nil
}

// ParseJWK parses and checks a public P-256 JWK: a JSON object whose
// members kty = "EC", crv = "P-256", x and y (each 32 bytes, unpadded
// base64url, canonical) are present and give a point on the curve. alg and
// key_ops are optional and must be a string and an array of strings. A
// private key (member d) is refused. Other members are ignored, as RFC 7517
// asks. Member names are matched exactly (encoding/json alone would match
// "KTY" too).
func ParseJWK(data []byte) (*JWK, error) {
	if len(data) > MaxJWKSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidJWK, MaxJWKSize)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || members == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidJWK)
	}
	str := func(name string, required bool) (string, error) {
		raw, ok := members[name]
		if !ok {
			if required {
				return "", fmt.Errorf("%w: member %q is missing", ErrInvalidJWK, name)
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: member %q is not a string", ErrInvalidJWK, name)
		}
		return s, nil
	}
	k := &JWK{}
	var err error
	if k.Kty, err = str("kty", true); err != nil {
		return nil, err
	}
	if k.Kty != jwkKtyEC {
		return nil, fmt.Errorf("%w: kty is %q, want %q", ErrInvalidJWK, k.Kty, jwkKtyEC)
	}
	if k.Crv, err = str("crv", true); err != nil {
		return nil, err
	}
	if k.Crv != jwkCrvP256 {
		return nil, fmt.Errorf("%w: crv is %q; only %q is supported", ErrInvalidJWK, k.Crv, jwkCrvP256)
	}
	if _, ok := members["d"]; ok {
		return nil, fmt.Errorf("%w: member \"d\" is present: this is a private key", ErrInvalidJWK)
	}
	point := make([]byte, 1, p256PointSize)
	point[0] = 4
	for _, name := range []string{"x", "y"} {
		s, err := str(name, true)
		if err != nil {
			return nil, err
		}
		c, err := b64.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: member %q is not unpadded base64url", ErrInvalidJWK, name)
		}
		if len(c) != p256CoordSize {
			return nil, fmt.Errorf("%w: member %q is %d bytes, want %d", ErrInvalidJWK, name, len(c), p256CoordSize)
		}
		point = append(point, c...)
	}
	if err := checkP256Point(point); err != nil {
		return nil, err
	}
	k.X = b64.EncodeToString(point[1 : 1+p256CoordSize])
	k.Y = b64.EncodeToString(point[1+p256CoordSize:])
	if k.Alg, err = str("alg", false); err != nil {
		return nil, err
	}
	if raw, ok := members["key_ops"]; ok {
		if err := json.Unmarshal(raw, &k.KeyOps); err != nil || k.KeyOps == nil {
			return nil, fmt.Errorf("%w: member \"key_ops\" is not an array of strings", ErrInvalidJWK)
		}
	}
	return k, nil
}

// Point returns the key as a 65-byte uncompressed P-256 point. It fails
// only for a JWK that was not made by NewJWK or ParseJWK.
func (k *JWK) Point() ([]byte, error) {
	if k == nil || k.Kty != jwkKtyEC || k.Crv != jwkCrvP256 {
		return nil, fmt.Errorf("%w: not an EC P-256 key", ErrInvalidJWK)
	}
	x, errX := b64.DecodeString(k.X)
	y, errY := b64.DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != p256CoordSize || len(y) != p256CoordSize {
		return nil, fmt.Errorf("%w: coordinates are not 32 bytes of unpadded base64url", ErrInvalidJWK)
	}
	point := append(append([]byte{4}, x...), y...)
	if err := checkP256Point(point); err != nil {
		return nil, err
	}
	return point, nil
}

// CheckUse checks the optional alg and key_ops members against an intended
// use: alg, when present, must equal alg (ErrInvalidJWK), and key_ops, when
// present, must contain op (ErrJWKKeyOps). A Tang recovery request is
// checked with CheckUse(JWKAlgECMR, JWKOpDerive).
func (k *JWK) CheckUse(alg, op string) error {
	if k.Alg != "" && k.Alg != alg {
		return fmt.Errorf("%w: alg is %q, want %q", ErrInvalidJWK, k.Alg, alg)
	}
	if k.KeyOps != nil && !slices.Contains(k.KeyOps, op) {
		return fmt.Errorf("%w: key_ops %q lacks %q", ErrJWKKeyOps, k.KeyOps, op)
	}
	return nil
}

// HasOp reports whether key_ops is present and contains op.
func (k *JWK) HasOp(op string) bool { return slices.Contains(k.KeyOps, op) }

// thumbprintInput is the RFC 7638 input for an EC key: the required
// members crv, kty, x, y in lexicographic order, without whitespace. The
// values are fixed strings and base64url, so no JSON escaping is needed.
func (k *JWK) thumbprintInput() []byte {
	var b bytes.Buffer
	b.WriteString(`{"crv":"`)
	b.WriteString(k.Crv)
	b.WriteString(`","kty":"`)
	b.WriteString(k.Kty)
	b.WriteString(`","x":"`)
	b.WriteString(k.X)
	b.WriteString(`","y":"`)
	b.WriteString(k.Y)
	b.WriteString(`"}`)
	return b.Bytes()
}

func (k *JWK) thumbprint(h hash.Hash) string {
	h.Write(k.thumbprintInput())
	return b64.EncodeToString(h.Sum(nil))
}

// ThumbprintS256 returns the RFC 7638 SHA-256 thumbprint, unpadded
// base64url (43 characters): a Tang exchange key's kid, and the thp clevis
// uses by default.
func (k *JWK) ThumbprintS256() string { return k.thumbprint(sha256.New()) }

// ThumbprintS1 returns the RFC 7638 SHA-1 thumbprint, unpadded base64url
// (27 characters), which clevis still accepts as a thp.
func (k *JWK) ThumbprintS1() string { return k.thumbprint(sha1.New()) }

// MatchesThumbprint reports whether thp is the key's S256 or S1
// thumbprint.
func (k *JWK) MatchesThumbprint(thp string) bool {
	return thp != "" && (thp == k.ThumbprintS256() || thp == k.ThumbprintS1())
}
