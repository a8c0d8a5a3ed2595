package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Transit HMAC (docs/transit.md): Vault transit's hmac, with a MAC key
// derived by quorum (op derive) from a transit key version and the
// context tagged by TransitHMACContext, so no node ever holds it: the
// caller derives it, computes the HMAC and erases it. The result is
// "kq:v<version>:<base64 of the MAC>", as Vault's "vault:v1:...".

// TransitHMACContext is the derivation context of the MAC key for
// hashName and the caller's context: tagged, so a MAC key is no other
// derivation's output for the same context.
func TransitHMACContext(hashName string, context []byte) []byte {
	return append([]byte(vocab.LabelTransitHMAC+"\x00"+hashName+"\x00"), context...)
}

func transitHMACHash(hashName string) (func() hash.Hash, error) {
	switch hashName {
	case shamir.DeriveSHA256, "":
		return sha256.New, nil
	case shamir.DeriveSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unknown hmac algorithm %q (known: %s, %s)", hashName, shamir.DeriveSHA256, shamir.DeriveSHA512)
}

// TransitHMACSize is the MAC key's size for hashName: its output size.
func TransitHMACSize(hashName string) (int, error) {
	h, err := transitHMACHash(hashName)
	if err != nil {
		return 0, err
	}
	return h().Size(), nil
}

// TransitHMAC is "kq:v<version>:<base64 of HMAC-hashName(key, input)>".
func TransitHMAC(hashName string, key []byte, version uint64, input []byte) (string, error) {
	h, err := transitHMACHash(hashName)
	if err != nil {
		return "", err
	}
	m := hmac.New(h, key)
	m.Write(input)
	return formatVersioned(version, m.Sum(nil)), nil
}

// ParseTransitHMAC parses "kq:v<version>:<base64>": the version and the
// MAC.
func ParseTransitHMAC(s string) (uint64, []byte, error) {
	return parseVersioned("an hmac", s, sha512.Size)
}

// formatVersioned is "kq:v<version>:<base64 of b>": an HMAC or a
// signature, as Vault's "vault:v1:...".
func formatVersioned(version uint64, b []byte) string {
	return TransitPrefix + strconv.FormatUint(version, 10) + ":" + base64.StdEncoding.EncodeToString(b)
}

// parseVersioned parses "kq:v<version>:<base64>" of at most maxBytes
// bytes; what names it in errors.
func parseVersioned(what, s string, maxBytes int) (uint64, []byte, error) {
	rest, ok := strings.CutPrefix(s, TransitPrefix)
	v, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return 0, nil, fmt.Errorf("%s is %s<version>:<base64>", what, TransitPrefix)
	}
	version, err := strconv.ParseUint(v, 10, 64)
	if err != nil || version == 0 || strconv.FormatUint(version, 10) != v {
		return 0, nil, fmt.Errorf("%s's version %q is not a positive number", what, v)
	}
	if strings.ContainsAny(b64, "\r\n") {
		// The decoder skips them; the form has none.
		return 0, nil, fmt.Errorf("%s has a line break", what)
	}
	if len(b64) > base64.StdEncoding.EncodedLen(maxBytes) {
		return 0, nil, fmt.Errorf("%s is at most %d bytes", what, maxBytes)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return 0, nil, fmt.Errorf("%s is not base64: %v", what, err)
	}
	return version, b, nil
}
