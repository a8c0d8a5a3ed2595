package api

import (
	"crypto/ed25519"
	"fmt"

	"github.com/keyquorum/keyquorum/fsm"
)

// Transit signing (docs/transit.md): Vault transit's sign and verify for
// ed25519-frost keys, on the FROST signing path (docs/signing.md): a
// signature is "kq:v<version>:<base64 of the Ed25519 signature>", as
// Vault's "vault:v1:...".

// TransitSignReply is the answer of POST /v1/transit/sign/NAME.
type TransitSignReply struct {
	Signature  string   `json:"signature"`
	KeyVersion uint64   `json:"key_version"`
	PublicKey  []byte   `json:"public_key"`
	Signers    []uint32 `json:"signers"`
}

// TransitVerifyRequest is the body of POST /v1/transit/verify/NAME
// (Vault's fields; input is base64 in JSON).
type TransitVerifyRequest struct {
	Input     []byte `json:"input"`
	Signature string `json:"signature"`
}

// TransitSignature is a FROST signature in the transit form.
func TransitSignature(sig *Signature) string { return formatVersioned(sig.Version, sig.Signature) }

// ParseTransitSignature parses "kq:v<version>:<base64>": the version and
// the signature.
func ParseTransitSignature(s string) (uint64, []byte, error) {
	return parseVersioned("a signature", s, ed25519.SignatureSize)
}

// TransitSigningKey checks that k signs under transit names: an
// ed25519-frost key.
func TransitSigningKey(k *fsm.Key) error {
	if k.Type != fsm.KeyTypeFROST {
		return &Error{Kind: KindInvalid, Message: fmt.Sprintf("key %q is a %s key: transit sign and verify take %s keys", k.Name, k.Type, fsm.KeyTypeFROST)}
	}
	return nil
}

// TransitVerify checks a transit signature of input with key k's
// metadata: the version it names must be the key's, and the signature
// must verify under the key's public key.
func TransitVerify(k *fsm.Key, input []byte, signature string) error {
	if err := TransitSigningKey(k); err != nil {
		return err
	}
	version, sig, err := ParseTransitSignature(signature)
	if err != nil {
		return &Error{Kind: KindInvalid, Message: err.Error()}
	}
	if version != k.Version {
		return fmt.Errorf("the signature names version %d; key %q is at version %d", version, k.Name, k.Version)
	}
	return VerifySignature(k, input, sig, "")
}
