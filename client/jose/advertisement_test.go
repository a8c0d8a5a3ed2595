package jose

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"math/big"
	"testing"
)

func TestTangAdvertisement(t *testing.T) {
	point := testP256Point(t)
	adv, kid, thp, err := NewAdvertisement(rand.Reader, point)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAdvertisement(adv)
	if err != nil {
		t.Fatal(err)
	}
	exc, _ := NewJWK(point, "")
	if kid != exc.ThumbprintS256() || a.Kid != kid {
		t.Fatal("kid is not the S256 thumbprint of the exchange key")
	}
	if len(a.Signing) != 1 || a.Signing[0].ThumbprintS256() != thp || !AdvHasThumbprint(adv, thp) || !AdvHasThumbprint(adv, a.Signing[0].ThumbprintS1()) || AdvHasThumbprint(adv, kid) {
		t.Fatal("thp is not the signing key's thumbprint")
	}

	// The exact shape clevis needs.
	var jws struct{ Payload, Protected, Signature string }
	if err := json.Unmarshal(adv, &jws); err != nil {
		t.Fatal(err)
	}
	hdr, _ := b64.DecodeString(jws.Protected)
	if string(hdr) != `{"alg":"ES256","cty":"jwk-set+json"}` {
		t.Fatalf("protected header %s", hdr)
	}
	if sig, _ := b64.DecodeString(jws.Signature); len(sig) != 64 {
		t.Fatalf("signature is %d bytes, want raw R||S of 64", len(sig))
	}
	payload, _ := b64.DecodeString(jws.Payload)
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(payload, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("payload %s", payload)
	}
	for _, k := range set.Keys {
		ops, _ := k["key_ops"].([]any)
		switch {
		case k["alg"] == "ES256" && len(ops) == 1 && ops[0] == "verify":
		case k["alg"] == "ECMR" && len(ops) == 1 && ops[0] == "deriveKey":
		default:
			t.Fatalf("unexpected key in the advertisement: %v", k)
		}
	}

	// Two advertisements of the same key are signed by different keys.
	adv2, kid2, thp2, err := NewAdvertisement(rand.Reader, point)
	if err != nil {
		t.Fatal(err)
	}
	if kid2 != kid || thp2 == thp || bytes.Equal(adv, adv2) {
		t.Fatal("a fresh signing key was not used")
	}

	general, _ := json.Marshal(map[string]any{"payload": jws.Payload, "signatures": []any{map[string]string{"protected": jws.Protected, "signature": jws.Signature}}})
	if _, err := ParseAdvertisement(general); err != nil {
		t.Fatalf("general serialization: %v", err)
	}
	tamper := func(field, value string) []byte {
		m := map[string]string{"payload": jws.Payload, "protected": jws.Protected, "signature": jws.Signature}
		m[field] = value
		b, _ := json.Marshal(m)
		return b
	}
	otherPayload, _ := json.Marshal(map[string]any{"keys": []any{set.Keys[1], set.Keys[0]}})
	sig, _ := b64.DecodeString(jws.Signature)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	der, _ := asn1Sig(r, s)
	var ad2 struct{ Payload, Protected, Signature string }
	json.Unmarshal(adv2, &ad2)
	for name, bad := range map[string][]byte{
		"compact":                  []byte(jws.Protected + "." + jws.Payload + "." + jws.Signature),
		"payload changed":          tamper("payload", b64url(otherPayload)),
		"signature of another adv": tamper("signature", ad2.Signature),
		"DER signature":            tamper("signature", b64url(der)),
		"alg none":                 tamper("protected", b64url([]byte(`{"alg":"none"}`))),
		"no signature":             tamper("signature", ""),
		"padded payload":           tamper("payload", jws.Payload+"="),
		"not JSON":                 []byte("{"),
		"no exchange key":          signedAdv(t, func(keys []any) []any { return keys[:1] }),
		"two exchange keys":        signedAdv(t, func(keys []any) []any { return append(keys, keys[1]) }),
		"unsigned verify key": signedAdv(t, func(keys []any) []any {
			extra, _ := NewJWK(testP256Point(t), JWKAlgES256, JWKOpVerify)
			return append(keys, extra)
		}),
		"exchange key without alg": signedAdv(t, func(keys []any) []any {
			exc, _ := NewJWK(point, "", JWKOpDerive)
			return []any{keys[0], exc}
		}),
	} {
		if _, err := ParseAdvertisement(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, _, err := NewAdvertisement(rand.Reader, []byte{0}); !errors.Is(err, ErrInvalidJWK) {
		t.Fatalf("advertising the identity: %v", err)
	}
}

// signedAdv signs an advertisement whose key list edit changes: it starts
// from [signing key, exchange key].
func signedAdv(t *testing.T, edit func([]any) []any) []byte {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := priv.PublicKey.Bytes()
	sig, _ := NewJWK(pub, JWKAlgES256, JWKOpVerify)
	exc, _ := NewJWK(testP256Point(t), JWKAlgECMR, JWKOpDerive)
	payload, _ := json.Marshal(map[string]any{"keys": edit([]any{sig, exc})})
	p := b64url(payload)
	digest := sha256Sum([]byte(tangProtectedHeader + "." + p))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	b, _ := json.Marshal(map[string]string{"payload": p, "protected": tangProtectedHeader, "signature": b64url(raw)})
	return b
}

func sha256Sum(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}

// asn1Sig is the DER form of an ECDSA signature, which JWS refuses.
func asn1Sig(r, s *big.Int) ([]byte, error) {
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}
