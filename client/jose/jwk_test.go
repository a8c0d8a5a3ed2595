package jose

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func testP256Point(t testing.TB) []byte {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

// jwkJSON builds a JWK document from members, for tests that need
// documents NewJWK would never make.
func jwkJSON(t testing.TB, members map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestNewJWKEncoding(t *testing.T) {
	point := testP256Point(t)
	k, err := NewJWK(point, JWKAlgECMR, JWKOpDerive)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"alg":"ECMR","crv":"P-256","key_ops":["deriveKey"],"kty":"EC","x":"` + b64url(point[1:33]) + `","y":"` + b64url(point[33:]) + `"}`
	if string(got) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", got, want)
	}
	back, err := k.Point()
	if err != nil || !bytes.Equal(back, point) {
		t.Fatalf("Point() = %x, %v", back, err)
	}
	parsed, err := ParseJWK(got)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := parsed.Point(); !bytes.Equal(p, point) || parsed.Alg != JWKAlgECMR || !parsed.HasOp(JWKOpDerive) {
		t.Fatalf("round trip lost something: %+v", parsed)
	}
	// Without alg and key_ops, the members are omitted.
	bare, _ := NewJWK(point, "")
	if b, _ := json.Marshal(bare); strings.Contains(string(b), "alg") || strings.Contains(string(b), "key_ops") {
		t.Fatalf("empty alg and key_ops were written: %s", b)
	}
	for name, p := range map[string][]byte{
		"identity":   {0},
		"compressed": append([]byte{2 + point[64]&1}, point[1:33]...),
		"off curve":  append(append([]byte{4}, point[1:64]...), point[64]^1),
		"short":      point[:64],
	} {
		if _, err := NewJWK(p, ""); !errors.Is(err, ErrInvalidJWK) {
			t.Errorf("NewJWK(%s): %v", name, err)
		}
	}
}

func TestParseJWKRefuses(t *testing.T) {
	point := testP256Point(t)
	x, y := b64url(point[1:33]), b64url(point[33:])
	good := func() map[string]any {
		return map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ECMR", "key_ops": []string{"deriveKey"}}
	}
	with := func(k string, v any) []byte {
		m := good()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return jwkJSON(t, m)
	}
	offCurve := bytes.Clone(point[33:])
	offCurve[31] ^= 1
	p521 := b64url(make([]byte, 66))
	for _, tc := range []struct {
		name string
		doc  []byte
		want string // a word the error must contain
	}{
		{"not JSON", []byte("{"), "JSON object"},
		{"compact JWS", []byte("a.b.c"), "JSON object"},
		{"array", []byte("[]"), "JSON object"},
		{"null", []byte("null"), "JSON object"},
		{"string", []byte(`"EC"`), "JSON object"},
		{"trailing data", append(with("alg", "ECMR"), '{'), "JSON object"},
		{"missing kty", with("kty", nil), `"kty" is missing`},
		{"upper-case KTY", jwkJSON(t, map[string]any{"KTY": "EC", "crv": "P-256", "x": x, "y": y}), `"kty" is missing`},
		{"kty RSA", with("kty", "RSA"), "kty"},
		{"kty OKP", with("kty", "OKP"), "kty"},
		{"kty a number", with("kty", 2), `"kty" is not a string`},
		{"missing crv", with("crv", nil), `"crv" is missing`},
		{"crv P-384", with("crv", "P-384"), "crv"},
		{"crv P-521 coordinates", jwkJSON(t, map[string]any{"kty": "EC", "crv": "P-521", "x": p521, "y": p521}), "crv"},
		{"missing x", with("x", nil), `"x" is missing`},
		{"missing y (x only)", with("y", nil), `"y" is missing`},
		{"x padded", with("x", x+"="), `"x" is not unpadded base64url`},
		{"x standard base64", with("x", base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), `"x" is not unpadded base64url`},
		{"x 31 bytes", with("x", b64url(point[2:33])), `"x" is 31 bytes`},
		{"y 33 bytes", with("y", b64url(append([]byte{0}, point[33:]...))), `"y" is 33 bytes`},
		{"x empty", with("x", ""), `"x" is 0 bytes`},
		{"off curve", with("y", b64url(offCurve)), "not on P-256"},
		{"zero point", jwkJSON(t, map[string]any{"kty": "EC", "crv": "P-256", "x": b64url(make([]byte, 32)), "y": b64url(make([]byte, 32))}), "not on P-256"},
		{"coordinate >= p", with("x", b64url(bytes.Repeat([]byte{0xff}, 32))), "not on P-256"},
		{"private key", with("d", b64url(make([]byte, 32))), `"d"`},
		{"alg a number", with("alg", 1), `"alg" is not a string`},
		{"key_ops a string", with("key_ops", "deriveKey"), `"key_ops" is not an array`},
		{"key_ops null", with("key_ops", json.RawMessage("null")), `"key_ops" is not an array`},
		{"key_ops numbers", with("key_ops", []int{1}), `"key_ops" is not an array`},
		{"too large", with("pad", strings.Repeat("a", MaxJWKSize)), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJWK(tc.doc)
			if !errors.Is(err, ErrInvalidJWK) {
				t.Fatalf("ParseJWK: %v, want ErrInvalidJWK", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// Unknown members are ignored, as RFC 7517 asks.
	if _, err := ParseJWK(with("kid", "whatever")); err != nil {
		t.Fatalf("an unknown member: %v", err)
	}
}

func TestJWKCheckUse(t *testing.T) {
	point := testP256Point(t)
	for _, tc := range []struct {
		name   string
		alg    string
		keyOps []string
		want   error
	}{
		{"ECMR and deriveKey", JWKAlgECMR, []string{JWKOpDerive}, nil},
		{"no alg, no key_ops (clevis decrypt sends alg only)", "", nil, nil},
		{"alg only", JWKAlgECMR, nil, nil},
		{"deriveKey among others", "", []string{"verify", JWKOpDerive}, nil},
		{"alg ECDH-ES", "ECDH-ES", nil, ErrInvalidJWK},
		{"alg ES256", JWKAlgES256, []string{JWKOpDerive}, ErrInvalidJWK},
		{"key_ops verify", JWKAlgECMR, []string{JWKOpVerify}, ErrJWKKeyOps},
		{"key_ops empty", JWKAlgECMR, []string{}, ErrJWKKeyOps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NewJWK(point, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			k.KeyOps = tc.keyOps
			err = k.CheckUse(JWKAlgECMR, JWKOpDerive)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckUse: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestJWKThumbprints checks RFC 7638 thumbprints against an independent
// computation (encoding/json sorts map keys) and against stock jose.
func TestJWKThumbprints(t *testing.T) {
	point := testP256Point(t)
	k, err := NewJWK(point, JWKAlgECMR, JWKOpDerive)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "x": k.X, "y": k.Y})
	if err != nil {
		t.Fatal(err)
	}
	s256 := sha256.Sum256(canon)
	s1 := sha1.Sum(canon)
	if got, want := k.ThumbprintS256(), b64url(s256[:]); got != want {
		t.Fatalf("S256 = %s, want %s", got, want)
	}
	if got, want := k.ThumbprintS1(), b64url(s1[:]); got != want {
		t.Fatalf("S1 = %s, want %s", got, want)
	}
	if len(k.ThumbprintS256()) != 43 || len(k.ThumbprintS1()) != 27 {
		t.Fatal("thumbprint lengths are not 43 and 27")
	}
	if !k.MatchesThumbprint(k.ThumbprintS256()) || !k.MatchesThumbprint(k.ThumbprintS1()) || k.MatchesThumbprint("") || k.MatchesThumbprint("x") {
		t.Fatal("MatchesThumbprint")
	}

	if _, err := exec.LookPath("jose"); err != nil {
		t.Logf("jose not installed; skipping the comparison with stock jose: %v", err)
		return
	}
	doc, _ := json.Marshal(k)
	for alg, want := range map[string]string{"S256": k.ThumbprintS256(), "S1": k.ThumbprintS1()} {
		cmd := exec.Command("jose", "jwk", "thp", "-i-", "-a", alg)
		cmd.Stdin = bytes.NewReader(doc)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jose jwk thp -a %s: %v", alg, err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Fatalf("jose %s thumbprint %s, ours %s", alg, got, want)
		}
	}
}

// FuzzParseJWK: no panic; a refusal wraps ErrInvalidJWK; an accepted key
// is a valid P-256 point that re-encodes and parses to the same key and
// thumbprints.
func FuzzParseJWK(f *testing.F) {
	point := testP256Point(f)
	k, _ := NewJWK(point, JWKAlgECMR, JWKOpDerive)
	good, _ := json.Marshal(k)
	f.Add(good)
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"","y":""}`))
	f.Add([]byte(`{"kty":"EC","crv":"P-521","x":"AA","y":"AA","key_ops":["deriveKey"]}`))
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`[{"kty":"EC"}]`))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"` + k.X + `","y":"` + k.Y + `","d":"AA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseJWK(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidJWK) {
				t.Fatalf("refusal does not wrap ErrInvalidJWK: %v", err)
			}
			return
		}
		p, err := k.Point()
		if err != nil {
			t.Fatalf("accepted key has no point: %v", err)
		}
		if _, err := ecdh.P256().NewPublicKey(p); err != nil {
			t.Fatalf("accepted a point crypto/ecdh refuses: %v", err)
		}
		_ = k.CheckUse(JWKAlgECMR, JWKOpDerive)
		enc, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseJWK(enc)
		if err != nil {
			t.Fatalf("re-encoded key refused: %v (%s)", err, enc)
		}
		p2, _ := k2.Point()
		if !bytes.Equal(p, p2) || k.ThumbprintS256() != k2.ThumbprintS256() || k.Alg != k2.Alg {
			t.Fatalf("round trip changed the key: %s", enc)
		}
	})
}
