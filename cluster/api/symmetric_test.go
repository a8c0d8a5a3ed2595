package api

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CBCVector is a NIST SP 800-38A CBC known answer (F.2.1, F.2.5): four
// blocks, no padding.
type CBCVector struct {
	Name, Key, IV, Plaintext, Ciphertext string
}

// CBCVectors are SP 800-38A F.2.1 (AES-128-CBC) and F.2.5 (AES-256-CBC).
var CBCVectors = []CBCVector{
	{"F.2.1 " + fsm.KeyTypeAES128CBC, "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
		"7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
	{"F.2.5 " + fsm.KeyTypeAES256CBC, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "000102030405060708090a0b0c0d0e0f",
		"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
		"f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
}

// PaddedVector is v's ciphertext in CBCEncrypt's format: IV, the four
// vector blocks, and the full block of PKCS #7 padding a 64-byte
// plaintext takes, chained on the last.
func PaddedVector(t testing.TB, v CBCVector) []byte {
	t.Helper()
	b, err := aes.NewCipher(unhex(t, v.Key))
	if err != nil {
		t.Fatal(err)
	}
	ct := unhex(t, v.Ciphertext)
	pad := bytes.Repeat([]byte{aes.BlockSize}, aes.BlockSize)
	cipher.NewCBCEncrypter(b, ct[len(ct)-aes.BlockSize:]).CryptBlocks(pad, pad)
	return append(append(unhex(t, v.IV), ct...), pad...)
}

// TestCBCKnownAnswers: CBCDecrypt opens SP 800-38A's F.2.1 and F.2.5
// ciphertexts (IV in front, the padding block after) to their
// plaintexts, and CBCEncrypt's output, block for block after its IV, is
// AES-CBC of the padded plaintext under that IV (crypto/cipher).
func TestCBCKnownAnswers(t *testing.T) {
	for _, v := range CBCVectors {
		key, pt := unhex(t, v.Key), unhex(t, v.Plaintext)
		got, err := CBCDecrypt(key, PaddedVector(t, v))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s: decrypt = %x, %v; want the vector's plaintext", v.Name, got, err)
		}
		for _, n := range []int{0, 1, 15, 16, 17, 64} {
			msg := make([]byte, n)
			rand.Read(msg)
			ct, err := CBCEncrypt(key, msg)
			if err != nil || len(ct) != 16+(n/16+1)*16 {
				t.Fatalf("%s: encrypting %d bytes: %d bytes, %v", v.Name, n, len(ct), err)
			}
			b, _ := aes.NewCipher(key)
			padded := append(append([]byte{}, msg...), bytes.Repeat([]byte{byte(16 - n%16)}, 16-n%16)...)
			cipher.NewCBCEncrypter(b, ct[:16]).CryptBlocks(padded, padded)
			if !bytes.Equal(padded, ct[16:]) {
				t.Fatalf("%s: %d bytes: not AES-CBC of the PKCS #7 padded plaintext under the IV in front", v.Name, n)
			}
			if back, err := CBCDecrypt(key, ct); err != nil || !bytes.Equal(back, msg) {
				t.Fatalf("%s: %d bytes do not come back: %v", v.Name, n, err)
			}
		}
	}
}

// TestCBCDecryptRefusesMalformed: a short, ragged or badly padded
// ciphertext is refused, never a panic.
func TestCBCDecryptRefusesMalformed(t *testing.T) {
	key := make([]byte, 16)
	ct, _ := CBCEncrypt(key, []byte("sixteen bytes!!!"))
	for name, bad := range map[string][]byte{
		"empty": nil, "IV only": ct[:16], "ragged": ct[:40],
		"bad padding": append(append([]byte{}, ct[:len(ct)-1]...), ct[len(ct)-1]^1),
	} {
		if _, err := CBCDecrypt(key, bad); err == nil {
			t.Errorf("%s: decrypted", name)
		}
	}
}

// HMACVector is an RFC 4231 test case.
type HMACVector struct {
	Name, Key, Data, SHA256, SHA512 string
}

// HMACVectors are RFC 4231 test cases 1 and 6 (a key longer than the
// block).
var HMACVectors = []HMACVector{
	{"RFC 4231 case 1", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", hex.EncodeToString([]byte("Hi There")),
		"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
		"87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
	{"RFC 4231 case 6", hex.EncodeToString(bytes.Repeat([]byte{0xaa}, 131)), hex.EncodeToString([]byte("Test Using Larger Than Block-Size Key - Hash Key First")),
		"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
		"80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
}

// TestHMACKnownAnswers: HMAC is RFC 4231's answer for both key types,
// and crypto/hmac's on random keys and messages.
func TestHMACKnownAnswers(t *testing.T) {
	for _, v := range HMACVectors {
		key, data := unhex(t, v.Key), unhex(t, v.Data)
		for typ, want := range map[string]string{fsm.KeyTypeHMACSHA256: v.SHA256, fsm.KeyTypeHMACSHA512: v.SHA512} {
			if got, err := HMAC(typ, key, data); err != nil || hex.EncodeToString(got) != want {
				t.Errorf("%s %s = %x, %v; want %s", v.Name, typ, got, err, want)
			}
		}
	}
	key, msg := make([]byte, 40), make([]byte, 300)
	rand.Read(key)
	rand.Read(msg)
	m := hmac.New(sha512.New, key)
	m.Write(msg)
	if got, _ := HMAC(fsm.KeyTypeHMACSHA512, key, msg); !hmac.Equal(got, m.Sum(nil)) {
		t.Error("hmac-sha512 differs from crypto/hmac")
	}
	m = hmac.New(sha256.New, key)
	m.Write(msg)
	if got, _ := HMAC(fsm.KeyTypeHMACSHA256, key, msg); !hmac.Equal(got, m.Sum(nil)) {
		t.Error("hmac-sha256 differs from crypto/hmac")
	}
}

// FuzzCBCDecrypt: any bytes a caller sends as a CBC ciphertext are
// refused or opened, never a panic, and what opens is shorter by its
// IV and padding.
func FuzzCBCDecrypt(f *testing.F) {
	key := make([]byte, 32)
	ct, _ := CBCEncrypt(key, []byte("seed"))
	f.Add(ct)
	f.Add([]byte{})
	f.Add(make([]byte, 33))
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := CBCDecrypt(key, data)
		if err != nil {
			return
		}
		if len(pt) >= len(data)-16 {
			t.Fatalf("%d bytes opened to %d: no padding removed", len(data), len(pt))
		}
	})
}
