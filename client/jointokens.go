package client

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"net/http"
	"net/url"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// CreateJoinToken makes a join token here and has the cluster hold it
// (its SHA-256, never the token) until ttl has passed or a node joins
// with it. Start the joining node with the token.
func (c *Client) CreateJoinToken(ctx context.Context, ttl time.Duration) (string, error) {
	token, _, _, err := api.NewJoinToken()
	if err != nil {
		return "", err
	}
	return token, c.AddJoinToken(ctx, token, ttl)
}

// AddJoinToken has the cluster hold a join token made elsewhere
// (api.NewJoinToken), such as the one an unjoined node wrote to its data
// directory, for ttl: the SHA-256 of its secret, for an operator's join,
// and the public key it derives (api.JoinTokenKey), for a node that joins
// by itself with it (keyd --retry-join).
func (c *Client) AddJoinToken(ctx context.Context, token string, ttl time.Duration) error {
	id, secret, err := api.ParseJoinToken(token)
	if err != nil {
		return err
	}
	sum := sha256Sum(secret)
	key := api.JoinTokenKey(secret).Public().(ed25519.PublicKey)
	clear(secret)
	_, err = c.submit(ctx, "/v1/join-tokens", &fsm.Command{Type: fsm.TypeCreateJoinToken,
		CreateJoinToken: &fsm.JoinToken{ID: id, Hash: sum, Key: key, ExpiresAt: time.Now().Add(ttl).UnixNano()}})
	return err
}

// JoinTokens lists the join tokens the cluster holds, spent or not, until
// they expire. Only admins may.
func (c *Client) JoinTokens(ctx context.Context) ([]api.JoinTokenInfo, error) {
	var out []api.JoinTokenInfo
	return out, c.do(ctx, http.MethodGet, "/v1/join-tokens", nil, &out)
}

// RevokeJoinToken forgets a join token: no node joins with it any more.
func (c *Client) RevokeJoinToken(ctx context.Context, id string) error {
	_, err := c.submit(ctx, "/v1/join-tokens/"+url.PathEscape(id)+"/revoke", &fsm.Command{Type: fsm.TypeRevokeJoinToken, RevokeJoinToken: id})
	return err
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
