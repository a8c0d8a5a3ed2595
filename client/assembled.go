package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Symmetric assembled keys (docs/signing.md, "AES-CBC and HMAC: assembled
// on the coordinating node"): the node the request reaches has a quorum
// release the key to it and computes whole.

// CBCEncrypt encrypts plaintext with the aes128-cbc or aes256-cbc key
// name: IV || AES-CBC(PKCS #7 padded plaintext), no integrity.
func (c *Client) CBCEncrypt(ctx context.Context, name string, plaintext []byte) ([]byte, error) {
	res, err := c.symmetric(ctx, name, fsm.OpEncrypt, plaintext, nil)
	if err != nil {
		return nil, err
	}
	return res.Output, nil
}

// CBCDecrypt decrypts what CBCEncrypt (or any IV || AES-CBC PKCS #7
// ciphertext under the same key) made.
func (c *Client) CBCDecrypt(ctx context.Context, name string, ciphertext []byte) ([]byte, error) {
	res, err := c.symmetric(ctx, name, fsm.OpDecrypt, ciphertext, nil)
	if err != nil {
		return nil, err
	}
	return res.Output, nil
}

// HMAC is msg's standard HMAC under the hmac-sha256 or hmac-sha512 key
// name.
func (c *Client) HMAC(ctx context.Context, name string, msg []byte) ([]byte, error) {
	res, err := c.symmetric(ctx, name, fsm.OpMAC, msg, nil)
	if err != nil {
		return nil, err
	}
	return res.Output, nil
}

// VerifyHMAC reports whether mac is msg's HMAC under the key name.
func (c *Client) VerifyHMAC(ctx context.Context, name string, msg, mac []byte) (bool, error) {
	res, err := c.symmetric(ctx, name, fsm.OpVerify, msg, mac)
	if err != nil {
		return false, err
	}
	return res.Valid, nil
}

func (c *Client) symmetric(ctx context.Context, name, op string, msg, input []byte) (*api.Symmetric, error) {
	sg, err := c.Sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: op, Message: msg, Input: input}})
	if err != nil {
		return nil, err
	}
	var res api.Symmetric
	if err := c.do(ctx, http.MethodPost, "/v1/assembled", sg, &res); err != nil {
		return nil, err
	}
	if res.Key != name && res.Key != "" {
		return nil, fmt.Errorf("the node answered for key %q, not %q", res.Key, name)
	}
	return &res, nil
}

// CreateAssembled creates an aes128-cbc, aes256-cbc, hmac-sha256 or
// hmac-sha512 key: of raw's bytes (an import), or of random bytes when
// raw is nil, sealed here under the cluster key. ttl is how long the
// coordinating node may keep it whole (0: one operation).
func (c *Client) CreateAssembled(ctx context.Context, name, keyType string, raw []byte, ttl time.Duration) (*fsm.Key, error) {
	if !fsm.SymmetricAssembled(keyType) {
		return nil, fmt.Errorf("%q is not an AES-CBC or HMAC key type", keyType)
	}
	if raw == nil {
		raw = make([]byte, fsm.SymmetricKeyLen(keyType))
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		defer clear(raw)
	}
	if !fsm.SymmetricKeyLenOK(keyType, len(raw)) {
		return nil, fmt.Errorf("a %s key is not %d bytes long", keyType, len(raw))
	}
	return c.CreateSealed(ctx, &fsm.CreateKey{Name: name, Type: keyType, AssembleTTL: ttl}, raw)
}
