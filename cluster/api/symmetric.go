package api

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/keyquorum/keyquorum/fsm"
)

// Symmetric is the answer to an operation with a symmetric assembled key
// (AES-CBC or HMAC, docs/signing.md "AES-CBC and HMAC: assembled"):
// Output is the ciphertext, plaintext or MAC; Valid a verify's answer.
type Symmetric struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Type    string `json:"type"`
	Output  []byte `json:"output,omitempty"`
	Valid   bool   `json:"valid,omitempty"`
}

// CBCEncrypt encrypts plaintext with an AES key (16 or 32 bytes) in CBC
// mode: PKCS #7 padding, and a random 16-byte IV in front of the
// ciphertext, IV || AES-CBC(key, IV, pad(plaintext)). It gives no
// integrity: it is for systems that need CBC.
func CBCEncrypt(key, plaintext []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, aes.BlockSize+len(plaintext)+pad)
	if _, err := rand.Read(out[:aes.BlockSize]); err != nil {
		return nil, err
	}
	body := out[aes.BlockSize:]
	copy(body, plaintext)
	for i := len(plaintext); i < len(body); i++ {
		body[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(b, out[:aes.BlockSize]).CryptBlocks(body, body)
	return out, nil
}

// errCBC is every refusal of a CBC ciphertext after its length: one
// error, so a caller learns nothing of which check failed (a padding
// oracle still learns that one failed; CBC has no integrity).
var errCBC = errors.New("not a ciphertext of this key: IV || AES-CBC with PKCS #7 padding")

// CBCDecrypt decrypts what CBCEncrypt made: IV || ciphertext, a whole
// number of blocks after the IV, PKCS #7 padding checked and removed.
func CBCDecrypt(key, data []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(data) < 2*aes.BlockSize || len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("a CBC ciphertext is a 16-byte IV and one or more 16-byte blocks, not %d bytes", len(data))
	}
	out := make([]byte, len(data)-aes.BlockSize)
	cipher.NewCBCDecrypter(b, data[:aes.BlockSize]).CryptBlocks(out, data[aes.BlockSize:])
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, errCBC
	}
	bad := byte(0)
	for _, c := range out[len(out)-pad:] {
		bad |= c ^ byte(pad)
	}
	if bad != 0 {
		return nil, errCBC
	}
	return out[:len(out)-pad], nil
}

// HMAC is msg's standard HMAC (RFC 2104) under key with the hash of an
// hmac-sha256 or hmac-sha512 key type.
func HMAC(keyType string, key, msg []byte) ([]byte, error) {
	var h func() hash.Hash
	switch keyType {
	case fsm.KeyTypeHMACSHA256:
		h = sha256.New
	case fsm.KeyTypeHMACSHA512:
		h = sha512.New
	default:
		return nil, fmt.Errorf("a %s key makes no HMAC", keyType)
	}
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil), nil
}
