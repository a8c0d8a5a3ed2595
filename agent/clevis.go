package agent

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"

	"github.com/keyquorum/keyquorum/vocab"
)

// clevisLabel separates the clevis pin's key from every other use of a
// keyquorum key.
const clevisLabel = vocab.LabelClevis + "\x00"

// ClevisJWK returns the JSON Web Key the keyquorum clevis pin encrypts
// and decrypts with for key name: a 256-bit symmetric key
// HKDF-SHA256(ikm = key, salt = none, info = "keyquorum/clevis/v1\x00" ||
// name), as {"alg":"A256GCM","k":base64url(...),"kty":"oct"}. Deriving
// rather than using the key itself works for a key of any length and
// gives the JWE a key of its own: the JWK opens the JWE, not a LUKS slot
// that the raw key may also open. The caller should clear the result.
func ClevisJWK(key []byte, name string) ([]byte, error) {
	if len(key) == 0 {
		return nil, errors.New("the key is empty")
	}
	k, err := hkdf.Key(sha256.New, key, nil, clevisLabel+name, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	b64 := make([]byte, base64.RawURLEncoding.EncodedLen(len(k)))
	base64.RawURLEncoding.Encode(b64, k)
	defer clear(b64)
	// Built by hand so that no copy of the key is left in an encoder's
	// buffers; base64url needs no JSON escaping.
	out := make([]byte, 0, len(b64)+48)
	out = append(out, `{"alg":"A256GCM","k":"`...)
	out = append(out, b64...)
	out = append(out, `","kty":"oct"}`...)
	return out, nil
}
