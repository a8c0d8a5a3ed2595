package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTransitKnownAnswers: the primitives transit ciphertexts are made of
// give the published outputs: HKDF-SHA256 (RFC 5869 A.1), AES-256-GCM
// (the GCM specification's test cases 13 and 14, as NIST's validation
// uses), ChaCha20-Poly1305 (RFC 8439 2.8.2), each through NewTransitAEAD.
func TestTransitKnownAnswers(t *testing.T) {
	okm, err := hkdf.Key(sha256.New, bytes.Repeat([]byte{0x0b}, 22), unhex(t, "000102030405060708090a0b0c"), string(unhex(t, "f0f1f2f3f4f5f6f7f8f9")), 42)
	if err != nil || hex.EncodeToString(okm) != "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865" {
		t.Errorf("HKDF-SHA256 RFC 5869 A.1: %x, %v", okm, err)
	}
	gcm, err := NewTransitAEAD(CipherAES256GCM, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if out := gcm.Seal(nil, make([]byte, 12), nil, nil); hex.EncodeToString(out) != "530f8afbc74536b9a963b4f1c4cb738b" {
		t.Errorf("AES-256-GCM test case 13: %x", out)
	}
	if out := gcm.Seal(nil, make([]byte, 12), make([]byte, 16), nil); hex.EncodeToString(out) != "cea7403d4d606b6e074ec5d3baf39d18"+"d0d1c8a799996bf0265b98b5d48ab919" {
		t.Errorf("AES-256-GCM test case 14: %x", out)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(0x80 + i)
	}
	cc, err := NewTransitAEAD(CipherChaCha20, key)
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")
	out := cc.Seal(nil, unhex(t, "070000004041424344454647"), pt, unhex(t, "50515253c0c1c2c3c4c5c6c7"))
	if len(out) != len(pt)+chacha20poly1305.Overhead ||
		hex.EncodeToString(out[:16]) != "d31a8d34648e60db7b86afbc53ef7ec2" ||
		hex.EncodeToString(out[len(pt):]) != "1ae10b594f09e26a7e902ecbd0600691" {
		t.Errorf("ChaCha20-Poly1305 RFC 8439 2.8.2: %x", out)
	}
	if _, err := NewTransitAEAD("aes128-cbc", key); err == nil {
		t.Error("an unknown cipher was accepted")
	}
}

// transitKey deals a fresh transit key 2-of-3 and returns its scalar,
// polynomial and shares.
func transitKey(t *testing.T) ([]byte, *PublicPoly, []*Share) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	secret, err := Ed25519Scalar(priv)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := DealKey(rand.Reader, secret, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	return secret, poly, shares
}

// TestTransitThresholdMatchesWhole: what t holders' checked partials
// combine to is s*E computed with the whole key, and it opens what
// TransitSeal made under the public key, for both ciphers and every pair
// of holders; a partial of a lying holder fails its proof.
func TestTransitThresholdMatchesWhole(t *testing.T) {
	secret, poly, shares := transitKey(t)
	pub := poly.Commits[0]
	info := TransitBinding("info", "id:k", 3, []byte("ctx"))
	aad := TransitBinding("aad", "id:k", 3, []byte("ctx"))
	rctx := []byte("request")
	for _, c := range TransitCiphers {
		E, proof, sealed, err := TransitSeal(rand.Reader, pub, c, info, aad, []byte("attack at dawn"))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyTransitProof(info, E, proof); err != nil {
			t.Fatalf("%s: the encryptor's proof: %v", c, err)
		}
		whole, err := TransitSharedPoint(secret, E)
		if err != nil {
			t.Fatal(err)
		}
		for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
			parts := map[uint32][]byte{}
			for _, i := range pair {
				p, err := ComputePartial(rand.Reader, shares[i], E, rctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := VerifyPartial(poly, E, p, rctx); err != nil {
					t.Fatalf("holder %d's partial: %v", shares[i].Index, err)
				}
				parts[p.Index] = p.Value
			}
			K, err := CombinePoints(parts, 2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(K, whole) {
				t.Fatalf("%s, holders %v: combined %x, whole key gives %x", c, pair, K, whole)
			}
			pt, err := TransitOpen(K, E, pub, c, info, aad, sealed)
			if err != nil || string(pt) != "attack at dawn" {
				t.Fatalf("%s: open: %q, %v", c, pt, err)
			}
		}
		// Another version, context or key ID in the binding, a tampered
		// byte: each fails authentication.
		for name, try := range map[string]func() ([]byte, error){
			"another version": func() ([]byte, error) {
				return TransitOpen(whole, E, pub, c, TransitBinding("info", "id:k", 2, []byte("ctx")), aad, sealed)
			},
			"another context": func() ([]byte, error) {
				return TransitOpen(whole, E, pub, c, info, TransitBinding("aad", "id:k", 3, []byte("other")), sealed)
			},
			"another key": func() ([]byte, error) {
				return TransitOpen(whole, E, pub, c, TransitBinding("info", "id:j", 3, []byte("ctx")), aad, sealed)
			},
			"a tampered byte": func() ([]byte, error) {
				bad := bytes.Clone(sealed)
				bad[len(bad)-1] ^= 1
				return TransitOpen(whole, E, pub, c, info, aad, bad)
			},
			"the other cipher": func() ([]byte, error) {
				other := TransitCiphers[0]
				if other == c {
					other = TransitCiphers[1]
				}
				return TransitOpen(whole, E, pub, other, info, aad, sealed)
			},
		} {
			if _, err := try(); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%s, %s: %v, want ErrDecrypt", c, name, err)
			}
		}
		// A lying holder: a partial for another point, or its value
		// changed, fails the proof against its public share.
		p, _ := ComputePartial(rand.Reader, shares[0], E, rctx)
		p.Value = whole
		if err := VerifyPartial(poly, E, p, rctx); err == nil {
			t.Error("a partial with a changed value passed its proof")
		}
		p, _ = ComputePartial(rand.Reader, shares[0], E, []byte("another request"))
		if err := VerifyPartial(poly, E, p, rctx); err == nil {
			t.Error("a partial made for another request passed its proof")
		}
	}
}

// TestTransitDeriveMatchesWhole: a derivation combined from any t
// holders' checked partials equals HKDF (SHA-256 and SHA-512, as RFC 5869
// defines it: crypto/hkdf here, restated) of s*X computed with the whole
// scalar; another context, version or key ID gives another point, and
// so another key.
func TestTransitDeriveMatchesWhole(t *testing.T) {
	secret, poly, shares := transitKey(t)
	pub := poly.Commits[0]
	bind := TransitBinding("derive", "id:k", 3, []byte("tenant-1"))
	X, err := TransitDerivePoint(bind)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := TransitSharedPoint(secret, X)
	if err != nil {
		t.Fatal(err)
	}
	salt := append(bytes.Clone(X), pub...)
	info := "keyquorum/transit/derive/v1\x00" + string(bind)
	want256, _ := hkdf.Key(sha256.New, whole, salt, info, 32)
	want512, _ := hkdf.Key(sha512.New, whole, salt, info, 64)
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
		parts := map[uint32][]byte{}
		for _, i := range pair {
			p, err := ComputePartial(rand.Reader, shares[i], X, []byte("request"))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyPartial(poly, X, p, []byte("request")); err != nil {
				t.Fatal(err)
			}
			parts[p.Index] = p.Value
		}
		K, err := CombinePoints(parts, 2)
		if err != nil {
			t.Fatal(err)
		}
		got256, err := TransitDeriveOutput(DeriveSHA256, K, X, pub, bind, 32)
		if err != nil || !bytes.Equal(got256, want256) {
			t.Fatalf("holders %v, sha2-256: %x, %v; whole key gives %x", pair, got256, err, want256)
		}
		got512, err := TransitDeriveOutput(DeriveSHA512, K, X, pub, bind, 64)
		if err != nil || !bytes.Equal(got512, want512) {
			t.Fatalf("holders %v, sha2-512: %x, %v; whole key gives %x", pair, got512, err, want512)
		}
	}
	for _, other := range [][]byte{TransitBinding("derive", "id:k", 3, []byte("tenant-2")), TransitBinding("derive", "id:k", 2, []byte("tenant-1")),
		TransitBinding("derive", "id:j", 3, []byte("tenant-1"))} {
		Y, err := TransitDerivePoint(other)
		if err != nil || bytes.Equal(X, Y) {
			t.Fatalf("another binding gave the same point: %v", err)
		}
	}
	if _, err := TransitDeriveOutput("md5", whole, X, pub, bind, 32); err == nil {
		t.Fatal("an unknown hash was accepted")
	}
}
