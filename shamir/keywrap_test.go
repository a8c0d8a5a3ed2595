package shamir

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
)

// TestKWPKnownAnswers: AES key wrap with padding gives RFC 5649's
// section 6 outputs (a 20-byte and a 7-byte key under a 192-bit KEK) and
// unwraps them back; a flipped bit, a wrong KEK or a truncated blob is
// refused.
func TestKWPKnownAnswers(t *testing.T) {
	kek := mustHex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, tc := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed1220780894115" + "5068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		key, want := mustHex(t, tc.key), mustHex(t, tc.wrapped)
		got, err := KWPWrap(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("KWPWrap(%x) = %x, %v; want %x", key, got, err, want)
		}
		back, err := KWPUnwrap(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("KWPUnwrap = %x, %v; want %x", back, err, key)
		}
		for i := range want {
			bad := bytes.Clone(want)
			bad[i] ^= 1
			if _, err := KWPUnwrap(kek, bad); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("bit flipped in byte %d: %v, want ErrUnwrap", i, err)
			}
		}
		other := bytes.Clone(kek)
		other[0] ^= 1
		if _, err := KWPUnwrap(other, want); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("another KEK: %v, want ErrUnwrap", err)
		}
		if _, err := KWPUnwrap(kek, want[:len(want)-8]); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("truncated: %v, want ErrUnwrap", err)
		}
	}
	// Every length from 1 to 40 bytes round-trips under an AES-256 KEK.
	kek256 := make([]byte, 32)
	rand.Read(kek256)
	for n := 1; n <= 40; n++ {
		key := make([]byte, n)
		rand.Read(key)
		w, err := KWPWrap(kek256, key)
		if err != nil || len(w) != 8+(n+7)/8*8 {
			t.Fatalf("wrap %d bytes: %d bytes, %v", n, len(w), err)
		}
		back, err := KWPUnwrap(kek256, w)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("round trip of %d bytes: %x, %v", n, back, err)
		}
	}
}

// TestRSAAESWrap: Vault's BYOK layout, RSA-OAEP(SHA-256) of an AES-256
// key then KWP, opens with the wrapping key's private half and no other;
// the head is exactly the RSA modulus long, so another system splits it
// the same way.
func TestRSAAESWrap(t *testing.T) {
	priv := testRSAKey(t)
	material := bytes.Repeat([]byte{0x42}, 32)
	blob, err := WrapRSAAES(rand.Reader, &priv.PublicKey, material)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != priv.Size()+8+32 {
		t.Fatalf("blob is %d bytes, want %d (RSA head) + 40 (KWP of 32 bytes)", len(blob), priv.Size())
	}
	// The head is what OAEP decrypts to the AES key, and the body its KWP.
	aesKey, err := rsa.DecryptOAEP(sha256.New(), nil, priv, blob[:priv.Size()], nil)
	if err != nil || len(aesKey) != 32 {
		t.Fatalf("head: %d bytes, %v", len(aesKey), err)
	}
	if got, err := KWPUnwrap(aesKey, blob[priv.Size():]); err != nil || !bytes.Equal(got, material) {
		t.Fatalf("body: %x, %v", got, err)
	}
	got, err := UnwrapRSAAES(priv, blob)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("UnwrapRSAAES = %x, %v", got, err)
	}
	other := testRSAKey(t)
	if _, err := UnwrapRSAAES(other, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("another private key: %v, want ErrUnwrap", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := WrapRSAAES(rand.Reader, &small.PublicKey, material); err == nil {
		t.Fatal("a 1024-bit wrapping key was taken")
	}
}

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzUnwrapRSAAES: a wrapped blob from anywhere unwraps or is refused,
// never panics.
func FuzzUnwrapRSAAES(f *testing.F) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	blob, err := WrapRSAAES(rand.Reader, &priv.PublicKey, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add(blob[:priv.Size()+8])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := UnwrapRSAAES(priv, b); err == nil && len(m) == 0 {
			t.Fatal("unwrapped to nothing")
		}
		kek := make([]byte, 32)
		if m, err := KWPUnwrap(kek, b); err == nil && (len(m) == 0 || len(m) > len(b)-8) {
			t.Fatalf("KWP unwrapped %d bytes from %d", len(m), len(b))
		}
	})
}

// TestCombineShares: any t shares of a dealt scalar combine to it; a
// share off the commitments is refused naming its index, and fewer than
// t give nothing.
func TestCombineShares(t *testing.T) {
	secret, err := RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := DealKey(rand.Reader, secret, 3, []uint32{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, pick := range [][]int{{0, 1, 2}, {4, 2, 0}, {1, 3, 4}, {0, 1, 2, 3, 4}} {
		var sub []*Share
		for _, i := range pick {
			sub = append(sub, shares[i])
		}
		got, err := CombineShares(poly, sub)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("shares %v: %x, %v; want the secret", pick, got, err)
		}
	}
	other, _ := RandomSecret(rand.Reader)
	bad := &Share{Index: 2, Value: other}
	if _, err := CombineShares(poly, []*Share{shares[0], bad, shares[2]}); !errors.Is(err, ErrBadShare) {
		t.Fatalf("a share off the commitments: %v; want ErrBadShare", err)
	}
	if _, err := CombineShares(poly, shares[:2]); !errors.Is(err, ErrNotEnoughPartials) {
		t.Fatalf("2 shares of 3: %v; want ErrNotEnoughPartials", err)
	}
}
