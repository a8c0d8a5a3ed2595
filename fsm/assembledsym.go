package fsm

import "slices"

// Operations of the symmetric assembled keys (keytypes.go): the
// coordinating node, which a quorum releases the key to, encrypts or
// decrypts with an AES-CBC key, makes or checks an HMAC. A rule grants
// each; OpDecrypt is transit's (transit.go).
const (
	OpEncrypt = "encrypt"
	OpMAC     = "mac"
	OpVerify  = "verify"
)

// MaxSymmetricInput is the largest input of a symmetric assembled
// operation (plaintext, ciphertext, or message and MAC).
const MaxSymmetricInput = 64 << 10

// SymmetricKeyLen is the length of a symmetric assembled key type's
// material made from random bytes (an imported HMAC key may be of
// another length: SymmetricKeyLenOK), or 0 for another type.
func SymmetricKeyLen(keyType string) int {
	switch keyType {
	case KeyTypeAES128CBC:
		return 16
	case KeyTypeAES256CBC:
		return 32
	case KeyTypeHMACSHA256:
		return 32
	case KeyTypeHMACSHA512:
		return 64
	}
	return 0
}

// SymmetricKeyLenOK reports whether n bytes are a key of the type: an
// AES key's exact length; an HMAC key of 16 to MaxHMACKey bytes (RFC
// 2104 hashes a key longer than the hash's block first: another system's
// long key is imported as it is).
func SymmetricKeyLenOK(keyType string, n int) bool {
	switch keyType {
	case KeyTypeAES128CBC, KeyTypeAES256CBC:
		return n == SymmetricKeyLen(keyType)
	case KeyTypeHMACSHA256, KeyTypeHMACSHA512:
		return n >= 16 && n <= MaxHMACKey
	}
	return false
}

// MaxHMACKey is the longest HMAC key imported.
const MaxHMACKey = 256

// SymmetricAssembled reports whether the type is a symmetric assembled
// key (AES-CBC or HMAC).
func SymmetricAssembled(keyType string) bool { return SymmetricKeyLen(keyType) != 0 }

// symmetricOp reports whether op is one a symmetric assembled key
// answers on the coordinating node.
func symmetricOp(op string) bool {
	return slices.Contains([]string{OpEncrypt, OpDecrypt, OpMAC, OpVerify}, op)
}

// authorizeSymmetric checks a request for a symmetric assembled key's
// operation: its input in Message (and a MAC to check in Input for
// OpVerify), no ephemeral key (the result goes back over the caller's
// TLS, as a signature does).
func authorizeSymmetric(req *ReleaseRequest) *Error {
	switch {
	case len(req.Message) > MaxSymmetricInput:
		return errorf(CodeInvalid, "a %s request carries at most %d bytes", req.Op, MaxSymmetricInput)
	case req.Op == OpDecrypt && len(req.Message) == 0:
		return errorf(CodeInvalid, "a decrypt request carries a ciphertext")
	case len(req.Ephemeral) != 0:
		return errorf(CodeInvalid, "a %s request with an assembled key carries no ephemeral key: the coordinating node computes", req.Op)
	case req.Op == OpVerify && (len(req.Input) == 0 || len(req.Input) > 64):
		return errorf(CodeInvalid, "a verify request carries the MAC to check, 1 to 64 bytes")
	case req.Op != OpVerify && len(req.Input) != 0:
		return errorf(CodeInvalid, "a %s request carries its input in message", req.Op)
	case req.Padding != "" || req.Gateway != "":
		return errorf(CodeInvalid, "a %s request takes no padding and no gateway", req.Op)
	}
	return nil
}
