package api

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestRSASignInputIsTheStandardEncoding: the block holders raise to d for
// op sign is the standard one: raised to d, it is a signature crypto/rsa
// verifies (PKCS #1 v1.5, and PSS with the salt length of the hash), and
// the same request (message and nonce) always makes the same block, so
// every holder and the coordinator agree. VerifySignature checks
// signatures crypto/rsa made with either padding, for threshold and
// assembled RSA keys, and refuses the other padding and a wrong message.
func TestRSASignInputIsTheStandardEncoding(t *testing.T) {
	priv := testRSA(t)
	pub := &priv.PublicKey
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	msg, nonce := []byte("the message"), []byte("0123456789abcdef")
	digest := sha256.Sum256(msg)
	raise := func(in []byte) []byte {
		return new(big.Int).Exp(new(big.Int).SetBytes(in), priv.D, pub.N).FillBytes(make([]byte, pub.Size()))
	}
	for _, padding := range []string{fsm.PaddingPKCS1v15, fsm.PaddingPSS} {
		in, err := RSASignInput(pub, padding, msg, nonce)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := RSASignInput(pub, padding, msg, nonce)
		if !bytes.Equal(in, again) {
			t.Errorf("%s: the same request made two blocks", padding)
		}
		sig := raise(in)
		if padding == fsm.PaddingPSS {
			err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
		}
		if err != nil {
			t.Errorf("%s: crypto/rsa does not verify the block raised to d: %v", padding, err)
		}
	}
	if _, err := RSASignInput(pub, "oaep", msg, nonce); err == nil {
		t.Error("an unknown padding made a block")
	}

	pkcs, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	pss, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{fsm.KeyTypeRSAThreshold, fsm.KeyTypeRSA} {
		k := &fsm.Key{Name: "k", Type: typ, KeyDetail: &fsm.KeyDetail{Public: der}}
		for _, c := range []struct {
			sig     []byte
			padding string
			ok      bool
		}{
			{pkcs, "", true}, {pkcs, fsm.PaddingPKCS1v15, true}, {pss, fsm.PaddingPSS, true},
			{pkcs, fsm.PaddingPSS, false}, {pss, fsm.PaddingPKCS1v15, false},
		} {
			err := VerifySignature(k, msg, c.sig, c.padding)
			if (err == nil) != c.ok || (!c.ok && !errors.Is(err, ErrBadSignature)) {
				t.Errorf("%s key, padding %q: %v, want valid %v", typ, c.padding, err, c.ok)
			}
		}
		if err := VerifySignature(k, []byte("another"), pkcs, ""); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s key: another message verified: %v", typ, err)
		}
		if err := VerifySignature(k, msg, pkcs, "raw"); err == nil || errors.Is(err, ErrBadSignature) {
			t.Errorf("%s key: an unknown padding: %v, want an error naming it", typ, err)
		}
	}
}
