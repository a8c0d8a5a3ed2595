package tlv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
)

// opKind is what the server does for an opcode.
type opKind uint8

const (
	kindUnknown    opKind = iota // CodeBadOpcode
	kindReply                    // a reply opcode in a request: CodeUnexpectedOpcode
	kindPing                     // answered without a key
	kindRSADecrypt               // PKCS #1 v1.5 decryption
	kindRSARaw                   // c^d mod n
	kindRSASign                  // PKCS #1 v1.5 signature
	kindRSAPSS                   // RSASSA-PSS signature
	kindECDSA                    // ECDSA signature, DER
	kindEd25519                  // Ed25519 signature of the payload
)

// opInfo is an opcode's kind and, for signatures, what to pass to Sign.
type opInfo struct {
	kind opKind
	opts crypto.SignerOpts // the hash, or *rsa.PSSOptions; nil if not a signature
}

// ops is indexed by opcode.
var ops = func() (t [256]opInfo) {
	hashes := []crypto.Hash{crypto.MD5SHA1, crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}
	for i, h := range hashes {
		t[OpRSASignMD5SHA1+Op(i)] = opInfo{kind: kindRSASign, opts: h}
		t[OpECDSASignMD5SHA1+Op(i)] = opInfo{kind: kindECDSA, opts: h}
	}
	for i, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		// Shared by every request: rsa only reads the options.
		t[OpRSAPSSSignSHA256+Op(i)] = opInfo{kind: kindRSAPSS, opts: &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}}
	}
	t[OpRSADecrypt] = opInfo{kind: kindRSADecrypt}
	t[OpRSADecryptRaw] = opInfo{kind: kindRSARaw}
	t[OpEd25519Sign] = opInfo{kind: kindEd25519, opts: crypto.Hash(0)}
	t[OpPing] = opInfo{kind: kindPing}
	t[OpResponse] = opInfo{kind: kindReply}
	t[OpPong] = opInfo{kind: kindReply}
	t[OpError] = opInfo{kind: kindReply}
	return t
}()

// errCiphertextLength answers an RSA ciphertext that is not as long as
// the modulus: a crypto failure (0x01), as the C keyless server answers
// and its test client checks ("RSA raw decrypt with bad data" sends 257
// zero bytes for a 2048-bit key), not a format error.
var errCiphertextLength = &Error{Code: CodeCryptoFailed, Reason: "ciphertext not as long as the modulus"}

// errWrongKeyType is answered with CodeCryptoFailed.
var errWrongKeyType = errors.New("keyless: the key cannot do this operation")

// pkcs1v15Decrypt asks a crypto.Decrypter for PKCS #1 v1.5 explicitly:
// what a nil option means is up to each implementation.
//
//lint:ignore SA1019 keyless's RSA decrypt is PKCS #1 v1.5 by protocol (TLS 1.2's RSA key exchange)
var pkcs1v15Decrypt = &rsa.PKCS1v15DecryptOptions{}

// checkPayload judges the payload before any key is looked up: it returns
// a reason for a format error, or "".
func checkPayload(info opInfo, payload []byte) string {
	switch info.kind {
	case kindPing:
		return ""
	case kindRSASign, kindRSAPSS, kindECDSA:
		if payload == nil {
			return "no payload"
		}
		if want := info.opts.HashFunc().Size(); len(payload) != want {
			return "digest of the wrong length for the hash"
		}
	default:
		if payload == nil {
			return "no payload"
		}
	}
	return ""
}

// perform runs a key operation. What fails is a crypto failure, unless the
// signer says otherwise with an *Error (a quorum that could not answer is
// an internal error).
func perform(info opInfo, key crypto.Signer, payload []byte) ([]byte, error) {
	pub := key.Public()
	switch info.kind {
	case kindRSASign, kindRSAPSS:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return nil, errWrongKeyType
		}
		return key.Sign(rand.Reader, payload, info.opts)
	case kindECDSA:
		if _, ok := pub.(*ecdsa.PublicKey); !ok {
			return nil, errWrongKeyType
		}
		return key.Sign(rand.Reader, payload, info.opts)
	case kindEd25519:
		if _, ok := pub.(ed25519.PublicKey); !ok {
			return nil, errWrongKeyType
		}
		return key.Sign(rand.Reader, payload, info.opts)
	case kindRSADecrypt:
		rpub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errWrongKeyType
		}
		d, ok := key.(crypto.Decrypter)
		if !ok {
			return nil, errWrongKeyType
		}
		if len(payload) != modulusSize(rpub) {
			return nil, errCiphertextLength
		}
		return d.Decrypt(rand.Reader, payload, pkcs1v15Decrypt)
	case kindRSARaw:
		rpub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errWrongKeyType
		}
		if len(payload) != modulusSize(rpub) {
			return nil, errCiphertextLength
		}
		if raw, ok := key.(RawDecrypter); ok {
			return raw.DecryptRaw(payload)
		}
		if priv, ok := key.(*rsa.PrivateKey); ok {
			return decryptRawRSA(priv, payload)
		}
		return nil, errWrongKeyType
	}
	return nil, errWrongKeyType
}
