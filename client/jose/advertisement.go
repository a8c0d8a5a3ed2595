package jose

// Tang's advertisement: a JWS in JSON serialization whose payload is the
// set of the key's exchange key and verify keys (docs/protocols.md, "Tang,
// as stock clevis uses it").

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// maxAdvSize bounds an advertisement that ParseAdvertisement reads.
const maxAdvSize = 16 << 10

var tangProtectedHeader = b64.EncodeToString([]byte(`{"alg":"ES256","cty":"jwk-set+json"}`))

// tangJWS is a JWS in flattened or general JSON serialization.
type tangJWS struct {
	Payload    string             `json:"payload"`
	Protected  string             `json:"protected,omitempty"`
	Signature  string             `json:"signature,omitempty"`
	Signatures []tangJWSSignature `json:"signatures,omitempty"`
}

type tangJWSSignature struct {
	Protected string `json:"protected"`
	Signature string `json:"signature"`
}

// tangKeySet is the payload of an advertisement.
type tangKeySet struct {
	Keys []json.RawMessage `json:"keys"`
}

// NewAdvertisement makes the signed advertisement of a new Tang key
// whose exchange public key is exchangePub (65-byte uncompressed P-256): a
// fresh ES256 key signs the JWS once and is then discarded (clevis never
// checks freshness). It returns the adv JSON, the exchange key's kid (S256
// thumbprint) and the signing key's thumbprint (S256).
//
// Since Go 1.26 crypto/ecdsa draws its own randomness and ignores rand
// unless GODEBUG=cryptocustomrand=1.
func NewAdvertisement(rand io.Reader, exchangePub []byte) (adv []byte, kid, thp string, err error) {
	exc, err := NewJWK(exchangePub, JWKAlgECMR, JWKOpDerive)
	if err != nil {
		return nil, "", "", fmt.Errorf("tang exchange key: %w", err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, "", "", fmt.Errorf("tang signing key: %w", err)
	}
	sigPub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, "", "", fmt.Errorf("tang signing key: %w", err)
	}
	sig, err := NewJWK(sigPub, JWKAlgES256, JWKOpVerify)
	if err != nil {
		return nil, "", "", fmt.Errorf("tang signing key: %w", err)
	}
	payload, err := json.Marshal(struct {
		Keys []*JWK `json:"keys"`
	}{[]*JWK{sig, exc}})
	if err != nil {
		return nil, "", "", err
	}
	jws := tangJWS{Payload: b64.EncodeToString(payload), Protected: tangProtectedHeader}
	digest := sha256.Sum256([]byte(jws.Protected + "." + jws.Payload))
	r, s, err := ecdsa.Sign(rand, priv, digest[:])
	if err != nil {
		return nil, "", "", fmt.Errorf("signing the tang advertisement: %w", err)
	}
	// ES256 is R || S, each left-padded to 32 bytes (RFC 7518 3.4).
	raw := make([]byte, 2*p256CoordSize)
	r.FillBytes(raw[:p256CoordSize])
	s.FillBytes(raw[p256CoordSize:])
	jws.Signature = b64.EncodeToString(raw)
	adv, err = json.Marshal(jws)
	if err != nil {
		return nil, "", "", err
	}
	return adv, exc.ThumbprintS256(), sig.ThumbprintS256(), nil
}

// Advertisement is a parsed and verified advertisement.
type Advertisement struct {
	// Exchange is the ECMR exchange key clevis encrypts to.
	Exchange *JWK
	// Kid is the S256 thumbprint of Exchange, the kid of /rec/KID.
	Kid string
	// Signing are the verify keys; each one signed the advertisement.
	Signing []*JWK
}

// ParseAdvertisement parses an advertisement the way clevis reads it
// and verifies it: a JWS in JSON serialization (flattened or general) whose
// payload is {"keys":[...]} of P-256 keys, with exactly one exchange key
// (alg ECMR, key_ops deriveKey), at least one verify key, and an ES256
// signature by every verify key. It accepts what NewAdvertisement
// makes; an advertisement with keys on other curves is refused.
func ParseAdvertisement(adv []byte) (*Advertisement, error) {
	if len(adv) > maxAdvSize {
		return nil, fmt.Errorf("tang advertisement is larger than %d bytes", maxAdvSize)
	}
	var jws tangJWS
	if err := json.Unmarshal(adv, &jws); err != nil {
		return nil, errors.New("tang advertisement is not a JWS in JSON serialization")
	}
	sigs := jws.Signatures
	if jws.Signature != "" || jws.Protected != "" {
		if len(sigs) != 0 {
			return nil, errors.New("tang advertisement mixes the flattened and general JWS forms")
		}
		sigs = []tangJWSSignature{{Protected: jws.Protected, Signature: jws.Signature}}
	}
	if len(sigs) == 0 {
		return nil, errors.New("tang advertisement has no signature")
	}
	payload, err := b64.DecodeString(jws.Payload)
	if err != nil {
		return nil, errors.New("tang advertisement payload is not unpadded base64url")
	}
	var set tangKeySet
	if err := json.Unmarshal(payload, &set); err != nil {
		return nil, errors.New(`tang advertisement payload is not {"keys":[...]}`)
	}
	out := &Advertisement{}
	for i, raw := range set.Keys {
		k, err := ParseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("tang advertisement key %d: %w", i+1, err)
		}
		switch {
		case k.HasOp(JWKOpVerify):
			if err := k.CheckUse(JWKAlgES256, JWKOpVerify); err != nil {
				return nil, fmt.Errorf("tang advertisement key %d: %w", i+1, err)
			}
			out.Signing = append(out.Signing, k)
		case k.HasOp(JWKOpDerive):
			if k.Alg != JWKAlgECMR {
				return nil, fmt.Errorf("tang advertisement key %d: %w: an exchange key needs alg %q", i+1, ErrInvalidJWK, JWKAlgECMR)
			}
			if out.Exchange != nil {
				return nil, errors.New("tang advertisement has more than one exchange key")
			}
			out.Exchange = k
		}
	}
	if out.Exchange == nil {
		return nil, errors.New("tang advertisement has no exchange key (alg ECMR, key_ops deriveKey)")
	}
	if len(out.Signing) == 0 {
		return nil, errors.New("tang advertisement has no verify key")
	}
	out.Kid = out.Exchange.ThumbprintS256()
	for i, k := range out.Signing {
		if !tangSignedBy(k, sigs, jws.Payload) {
			return nil, fmt.Errorf("tang advertisement: verify key %d (%s) did not sign it", i+1, k.ThumbprintS256())
		}
	}
	return out, nil
}

// tangSignedBy reports whether one of sigs is a valid ES256 signature by k
// over payload.
func tangSignedBy(k *JWK, sigs []tangJWSSignature, payload string) bool {
	point, err := k.Point()
	if err != nil {
		return false
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return false
	}
	for _, s := range sigs {
		hdr, err := b64.DecodeString(s.Protected)
		if err != nil {
			continue
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if json.Unmarshal(hdr, &h) != nil || h.Alg != JWKAlgES256 {
			continue
		}
		raw, err := b64.DecodeString(s.Signature)
		if err != nil || len(raw) != 2*p256CoordSize {
			continue
		}
		digest := sha256.Sum256([]byte(s.Protected + "." + payload))
		r := new(big.Int).SetBytes(raw[:p256CoordSize])
		sv := new(big.Int).SetBytes(raw[p256CoordSize:])
		if ecdsa.Verify(pub, digest[:], r, sv) {
			return true
		}
	}
	return false
}

// HasSigningKey reports whether thp is the S256 or S1 thumbprint of one of
// the advertisement's verify keys: what GET /adv/THP must check.
func (a *Advertisement) HasSigningKey(thp string) bool {
	for _, k := range a.Signing {
		if k.MatchesThumbprint(thp) {
			return true
		}
	}
	return false
}

// AdvHasThumbprint reports whether adv is a valid advertisement
// (ParseAdvertisement) signed by a key whose S256 or S1 thumbprint is
// thp.
func AdvHasThumbprint(adv []byte, thp string) bool {
	a, err := ParseAdvertisement(adv)
	return err == nil && a.HasSigningKey(thp)
}
