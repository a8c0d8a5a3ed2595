package shamir

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
)

func newX25519(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestX25519SealRoundTrip: what SealX25519 seals to a key opens with that
// key and the same info, and each sealing uses a fresh sender key.
func TestX25519SealRoundTrip(t *testing.T) {
	k := newX25519(t)
	msg := []byte("a partial, as JSON")
	info := []byte("release context || index")
	ct, err := SealX25519(rand.Reader, k.PublicKey().Bytes(), info, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct.R) != X25519KeySize || len(ct.Sealed) != len(msg)+16 {
		t.Fatalf("ciphertext of %d and %d bytes, want %d and %d", len(ct.R), len(ct.Sealed), X25519KeySize, len(msg)+16)
	}
	got, err := OpenX25519(k, ct, info)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q, %v", got, err)
	}
	again, err := SealX25519(rand.Reader, k.PublicKey().Bytes(), info, msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.R, ct.R) || bytes.Equal(again.Sealed, ct.Sealed) {
		t.Fatal("two sealings of one message share a sender key or a ciphertext")
	}
	if _, err := OpenX25519(k, &Ciphertext{R: ct.R, Sealed: []byte{}}, info); !errors.Is(err, ErrDecrypt) {
		t.Errorf("empty sealed data: %v, want ErrDecrypt", err)
	}
}

// TestX25519OpenRefusesWhatItMustNot: another key, other info, a
// tampered sealed part or a swapped sender key do not open.
func TestX25519OpenRefusesWhatItMustNot(t *testing.T) {
	k := newX25519(t)
	info := []byte("info")
	ct, err := SealX25519(rand.Reader, k.PublicKey().Bytes(), info, []byte("secret partial"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenX25519(newX25519(t), ct, info); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: %v, want ErrDecrypt", err)
	}
	if _, err := OpenX25519(k, ct, []byte("infp")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong info: %v, want ErrDecrypt", err)
	}
	for i := range ct.Sealed {
		bad := &Ciphertext{R: ct.R, Sealed: bytes.Clone(ct.Sealed)}
		bad.Sealed[i] ^= 1
		if _, err := OpenX25519(k, bad, info); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("sealed byte %d flipped: %v, want ErrDecrypt", i, err)
		}
	}
	bad := &Ciphertext{R: newX25519(t).PublicKey().Bytes(), Sealed: ct.Sealed}
	if _, err := OpenX25519(k, bad, info); !errors.Is(err, ErrDecrypt) {
		t.Errorf("another sender key: %v, want ErrDecrypt", err)
	}
	if _, err := OpenX25519(k, &Ciphertext{R: ct.R[:31], Sealed: ct.Sealed}, info); !errors.Is(err, ErrInvalidPoint) {
		t.Errorf("a 31-byte sender key: %v, want ErrInvalidPoint", err)
	}
	if _, err := OpenX25519(nil, ct, info); err == nil {
		t.Error("a nil private key opened")
	}
	p256, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := OpenX25519(p256, ct, info); err == nil {
		t.Error("a P-256 private key was taken")
	}
}

// x25519LowOrder are encodings of the points of small order (and their
// non-canonical aliases), whose X25519 with any scalar is zero.
var x25519LowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// TestX25519RefusesLowOrderKeys: a requester key of small order would
// make the shared secret zero, known to everyone, so the holder's partial
// would be readable by the coordinator; SealX25519 refuses it, as
// OpenX25519 refuses such a sender key. Keys of the wrong size are
// refused too.
func TestX25519RefusesLowOrderKeys(t *testing.T) {
	k := newX25519(t)
	for _, h := range x25519LowOrder {
		pub, _ := hex.DecodeString(h)
		if ct, err := SealX25519(rand.Reader, pub, nil, []byte("partial")); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("sealing to %s: %v (ciphertext %v), want ErrInvalidPoint", h, err, ct != nil)
		}
		if _, err := OpenX25519(k, &Ciphertext{R: pub, Sealed: make([]byte, 32)}, nil); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("opening from %s: %v, want ErrInvalidPoint", h, err)
		}
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := SealX25519(rand.Reader, make([]byte, n), nil, nil); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("a %d-byte key: %v, want ErrInvalidPoint", n, err)
		}
	}
}

// TestX25519TakesItsRandomnessFromRand: the sender key comes from the
// reader given, as every randomized function here.
func TestX25519TakesItsRandomnessFromRand(t *testing.T) {
	k := newX25519(t)
	seed := bytes.Repeat([]byte{7}, X25519KeySize)
	a, err := SealX25519(bytes.NewReader(seed), k.PublicKey().Bytes(), nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := SealX25519(bytes.NewReader(seed), k.PublicKey().Bytes(), nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.R, b.R) || !bytes.Equal(a.Sealed, b.Sealed) {
		t.Error("the same randomness gave two ciphertexts")
	}
	if _, err := SealX25519(bytes.NewReader(seed[:5]), k.PublicKey().Bytes(), nil, []byte("m")); err == nil {
		t.Error("sealed with 5 bytes of randomness")
	}
}

// A partial's JSON is about 300 bytes.
var benchPartialJSON = make([]byte, 300)

func BenchmarkSealX25519(b *testing.B) {
	pub := newX25519(b).PublicKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SealX25519(rand.Reader, pub, testInfo, benchPartialJSON); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenX25519(b *testing.B) {
	k := newX25519(b)
	ct, err := SealX25519(rand.Reader, k.PublicKey().Bytes(), testInfo, benchPartialJSON)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenX25519(k, ct, testInfo); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealEdwardsPartial and BenchmarkOpenWithKeyPartial are what
// SealX25519 and OpenX25519 replace for partials, at the same size.
func BenchmarkSealEdwardsPartial(b *testing.B) {
	_, pub, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(rand.Reader, pub, testInfo, benchPartialJSON); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenWithKeyPartial(b *testing.B) {
	priv, pub, err := GenerateEncryptionKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := Seal(rand.Reader, pub, testInfo, benchPartialJSON)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenWithKey(priv, ct, testInfo); err != nil {
			b.Fatal(err)
		}
	}
}

// TestX25519MatchesCryptoECDH: the X25519 of SealX25519 and OpenX25519
// (circl's) is crypto/ecdh's: for random keys, and public keys with the
// top bit set or not reduced mod p, the sender key and the ciphertext
// are those that crypto/ecdh's X25519 gives for the same randomness, and
// they open with crypto/ecdh's shared secret.
func TestX25519MatchesCryptoECDH(t *testing.T) {
	info, msg := []byte("info"), []byte("a partial")
	for i := range 64 {
		seed := make([]byte, X25519KeySize)
		rand.Read(seed)
		pub := newX25519(t).PublicKey().Bytes()
		switch i % 4 {
		case 1:
			pub[31] |= 0x80 // the top bit, which X25519 ignores
		case 2:
			pub = bytes.Repeat([]byte{0xff}, 32) // 2^256-1: not reduced
			pub[0] = byte(i)
		}
		ct, err := SealX25519(bytes.NewReader(seed), pub, info, msg)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ecdh.X25519().NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ecdh.X25519().NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		shared, err := e.ECDH(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct.R, e.PublicKey().Bytes()) {
			t.Fatalf("case %d: sender key %x, crypto/ecdh's %x", i, ct.R, e.PublicKey().Bytes())
		}
		aead, err := x25519AEAD(shared, ct.R, pub, info)
		if err != nil {
			t.Fatal(err)
		}
		var nonce [12]byte
		if want := aead.Seal(nil, nonce[:], msg, nil); !bytes.Equal(ct.Sealed, want) {
			t.Fatalf("case %d: the ciphertext differs from crypto/ecdh's", i)
		}
	}
	// Opening: the recipient's side, against crypto/ecdh's sealing.
	k := newX25519(t)
	e := newX25519(t)
	shared, _ := e.ECDH(k.PublicKey())
	aead, _ := x25519AEAD(shared, e.PublicKey().Bytes(), k.PublicKey().Bytes(), info)
	var nonce [12]byte
	got, err := OpenX25519(k, &Ciphertext{R: e.PublicKey().Bytes(), Sealed: aead.Seal(nil, nonce[:], msg, nil)}, info)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("opening crypto/ecdh's ciphertext: %q, %v", got, err)
	}
}

// TestX25519KeyIsCryptoECDHs: NewX25519Key makes from 32 bytes of
// randomness the key pair crypto/ecdh makes from them; what is sealed to
// it opens with it (and with crypto/ecdh's key of the same bytes), not
// with another key, and not once it is erased.
func TestX25519KeyIsCryptoECDHs(t *testing.T) {
	info, msg := []byte("info"), []byte("a partial")
	for range 32 {
		seed := make([]byte, X25519KeySize)
		rand.Read(seed)
		k, err := NewX25519Key(bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		e, err := ecdh.X25519().NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.PublicKey(), e.PublicKey().Bytes()) {
			t.Fatalf("public key %x, crypto/ecdh's %x", k.PublicKey(), e.PublicKey().Bytes())
		}
		ct, err := SealX25519(rand.Reader, k.PublicKey(), info, msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, open := range []func() ([]byte, error){
			func() ([]byte, error) { return k.Open(ct, info) },
			func() ([]byte, error) { return OpenX25519(e, ct, info) },
		} {
			if got, err := open(); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("open: %q, %v", got, err)
			}
		}
		other, err := NewX25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Open(ct, info); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("another key: %v, want ErrDecrypt", err)
		}
		if _, err := k.Open(ct, []byte("infp")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("other info: %v, want ErrDecrypt", err)
		}
		k.Erase()
		if _, err := k.Open(ct, info); err == nil {
			t.Fatal("an erased key still opens")
		}
	}
	if _, err := NewX25519Key(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("a key from 31 bytes of randomness")
	}
	var nilKey *X25519Key
	if _, err := nilKey.Open(&Ciphertext{}, nil); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("nil key: %v, want ErrInvalidScalar", err)
	}
}

func BenchmarkNewX25519Key(b *testing.B) {
	for b.Loop() {
		if _, err := NewX25519Key(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCryptoECDHGenerateKey(b *testing.B) {
	for b.Loop() {
		if _, err := ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}
