package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// MintToken makes a capability token for scope, signed with the
// operator's key, here: no node is asked. It returns the token's text
// form (token.Format). What it allows is bounded, on every node, by the
// operator's own rules.
func (c *Client) MintToken(scope token.Scope) (string, error) {
	tok, err := token.Mint(c.creds.OperatorID, c.creds.Key, scope, time.Now())
	if err != nil {
		return "", err
	}
	return token.Format(c.creds.OperatorID, tok), nil
}

// RevokeToken revokes a token by one of its revocation ids (token.Inspect
// lists them): that token, and every token restricted or bound from it,
// is refused by every node once the revocation is committed.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.submit(ctx, "/v1/tokens/revoke", &fsm.Command{Type: fsm.TypeRevokeToken, RevokeToken: &fsm.RevokedToken{ID: id}})
	return err
}

// RestrictToken narrows a token in its text form, offline.
func RestrictToken(text string, r token.Restriction) (string, error) {
	op, tok, err := token.ParseText(text)
	if err != nil {
		return "", err
	}
	out, err := token.Restrict(tok, r)
	if err != nil {
		return "", err
	}
	return token.Format(op, out), nil
}

// TokenClient calls one node for an application that holds a capability
// token and no operator certificate. It trusts the cluster CA for the
// node's certificate and the pinned cluster key for what it releases;
// every request binds the token to itself (token.Bind), so the node it
// asks cannot reuse the token.
type TokenClient struct {
	base      string
	http      *http.Client
	clusterID string
	pin       []byte
	operator  string
	token     []byte
	sealModes // as Client's
}

// NewTokenClient makes a client of the node at addr with a token in its
// text form, the cluster CA certificate (PEM) and the pin.
func NewTokenClient(addr string, caCert []byte, clusterID string, clusterKey []byte, text string) (*TokenClient, error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caCert) {
		return nil, errors.New("CA certificate: no PEM certificate found")
	}
	if clusterID == "" || len(clusterKey) == 0 {
		return nil, &Error{Kind: api.KindInvalid, Message: "a token client needs the pinned cluster ID and key"}
	}
	op, tok, err := token.ParseText(text)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	return &TokenClient{base: base, clusterID: clusterID, pin: clusterKey, operator: op, token: tok,
		http: &http.Client{Transport: nodeTransport(cfg)}}, nil
}

// request makes the release request for req, with the token bound to it.
func (c *TokenClient) request(req *fsm.ReleaseRequest) (*fsm.Signed, error) {
	return c.bind(&fsm.Command{Type: fsm.TypeRelease, Release: req})
}

// bind makes the request of cmd, with a fresh nonce and the time, and the
// token bound to it in place of a signature.
func (c *TokenClient) bind(cmd *fsm.Command) (*fsm.Signed, error) {
	cmd.Nonce, cmd.IssuedAt = make([]byte, 16), time.Now().UnixNano()
	if _, err := rand.Read(cmd.Nonce); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	sg := &fsm.Signed{Signer: c.operator, Payload: payload}
	if sg.Token, err = token.Bind(c.token, sg.Payload); err != nil {
		return nil, err
	}
	return sg, nil
}

// RevokeKey revokes a key, as Client.RevokeKey, with a token that has the
// revoke flag for it: every node verifies the token when it applies the
// entry.
func (c *TokenClient) RevokeKey(ctx context.Context, name string) (*fsm.Key, error) {
	return c.write(ctx, "/v1/token/keys/revoke", &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: name})
}

// DestroyKey destroys a key's material, as Client.DestroyKey, with a token
// that has the destroy flag for it.
func (c *TokenClient) DestroyKey(ctx context.Context, name string) (*fsm.Key, error) {
	return c.write(ctx, "/v1/token/keys/destroy", &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: name})
}

func (c *TokenClient) write(ctx context.Context, path string, cmd *fsm.Command) (*fsm.Key, error) {
	sg, err := c.bind(cmd)
	if err != nil {
		return nil, err
	}
	var res fsm.Result
	if err := doJSON(ctx, c.http, http.MethodPost, c.base+path, sg, &res); err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, &Error{Kind: res.Error.Code.Kind(), Message: res.Error.Message}
	}
	return res.Key, nil
}

// Get releases a secret, blind: the holders seal their partials to an
// ephemeral key of this client, which combines them. As Client's
// releases, it asks for share mode until a release in share mode does not
// open, then makes that one again with proofs, and every one after.
func (c *TokenClient) Get(ctx context.Context, name string) (secret []byte, err error) {
	err = c.sealModes.release(func(seal string) (err error) {
		secret, err = c.get(ctx, name, seal)
		return err
	})
	return secret, err
}

// get makes one blind release of name with seal mode seal.
func (c *TokenClient) get(ctx context.Context, name, seal string) ([]byte, error) {
	eph, err := shamir.NewX25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	defer eph.Erase()
	sg, err := c.request(&fsm.ReleaseRequest{Key: name, Op: fsm.OpGet, Ephemeral: eph.PublicKey(), Seal: seal})
	if err != nil {
		return nil, err
	}
	var sr api.SealedRelease
	if err := doJSON(ctx, c.http, http.MethodPost, c.base+"/v1/token/release", sg, &sr); err != nil {
		return nil, err
	}
	secret, err := api.OpenRelease(&sr, c.clusterID, name, c.pin, sg.Payload, eph)
	if errors.Is(err, api.ErrShareMode) {
		return nil, err
	}
	if err != nil {
		return nil, &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the release of %q through %s does not check out: %v", name, c.base, err)}
	}
	return secret, nil
}

// SignMessage signs msg with key name by quorum, as Client.SignMessage.
func (c *TokenClient) SignMessage(ctx context.Context, name string, msg []byte, padding string) (*api.Signature, error) {
	sg, err := c.request(&fsm.ReleaseRequest{Key: name, Op: fsm.OpSign, Message: msg, Padding: padding})
	if err != nil {
		return nil, err
	}
	var sig api.Signature
	if err := doJSON(ctx, c.http, http.MethodPost, c.base+"/v1/token/sign", sg, &sig); err != nil {
		return nil, err
	}
	if sig.Key != name {
		return nil, fmt.Errorf("the node answered a signature of key %q, not %q", sig.Key, name)
	}
	if err := sig.Check(msg, padding); err != nil {
		return nil, fmt.Errorf("the node's signature does not verify under the public key it names: %w", err)
	}
	return &sig, nil
}

// EnvToken holds a capability token's text form, for keyctl's --token.
const EnvToken = "KEYQUORUM_TOKEN"

// TokenClientFromEnv makes a token client of the node at addr with the
// CA certificate and the pin the KEYQUORUM_* variables name: what an
// application holding a token needs, and no operator credentials.
func TokenClientFromEnv(addr, text string) (*TokenClient, error) {
	ca := os.Getenv(EnvCACert)
	if ca == "" {
		return nil, fmt.Errorf("%s is not set: a token client checks the node's certificate against the cluster CA", EnvCACert)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	key, err := ParseClusterKey(os.Getenv(EnvClusterKey))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a token client checks what it releases against the pinned cluster key)", EnvClusterKey, err)
	}
	return NewTokenClient(addr, caPEM, os.Getenv(EnvClusterID), key, text)
}

// A token client decrypts and derives with a transit key whose metadata
// (keyctl key show --json: its versions' public keys) the application
// was given with its token: that metadata is its pin, as the cluster key
// is, so the node it asks cannot hand it a key of its own.

// tokenTransitSend binds the token to a transit request and posts it.
func (c *TokenClient) tokenTransitSend(path string) transitSend {
	return func(ctx context.Context, rel *fsm.ReleaseRequest) (*fsm.Signed, *api.TransitDecryptReply, error) {
		sg, err := c.request(rel)
		if err != nil {
			return nil, nil, err
		}
		var rep api.TransitDecryptReply
		if err := doJSON(ctx, c.http, http.MethodPost, c.base+path, sg, &rep); err != nil {
			return nil, nil, err
		}
		return sg, &rep, nil
	}
}

// checkTransitPin checks that k is a transit key's metadata.
func checkTransitPin(k *fsm.Key) error {
	if k == nil || k.Transit() == nil || len(k.Transit().Versions) == 0 {
		return &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("a token client needs a %s key's metadata (keyctl key show --json)", fsm.KeyTypeTransit)}
	}
	return nil
}

// TransitDecrypt decrypts items with transit key k (its pinned metadata)
// by quorum, as Client.TransitDecryptReport: the token needs flag
// decrypt for the key's name.
func (c *TokenClient) TransitDecrypt(ctx context.Context, k *fsm.Key, items []api.TransitBatchItem) (*TransitDecryption, error) {
	if err := checkTransitPin(k); err != nil {
		return nil, err
	}
	return transitDecryptItems(ctx, c.base, c.clusterID, k, k.Name, items, c.tokenTransitSend("/v1/token/transit/decrypt"))
}

// TransitDerive derives with transit key k (its pinned metadata) by
// quorum, as Client.TransitDerive: the token needs flag derive.
func (c *TokenClient) TransitDerive(ctx context.Context, k *fsm.Key, items []TransitDerivation, hashName string, length int) (*TransitDecryption, error) {
	if err := checkTransitPin(k); err != nil {
		return nil, err
	}
	if err := checkTransitDerive(len(items), hashName, length); err != nil {
		return nil, err
	}
	derive := make([]fsm.TransitDerivation, len(items))
	for i, it := range items {
		derive[i] = fsm.TransitDerivation{Version: it.Version, Context: it.Context}
		if it.Version == 0 {
			derive[i].Version = k.Transit().Latest().Version
		}
		if tv := k.Transit().Version(derive[i].Version); tv == nil || tv.Sharing == nil || len(tv.Sharing.Commits) == 0 {
			return nil, &Error{Kind: api.KindNotFound, Message: fmt.Sprintf("key %q has no version %d in its pinned metadata", k.Name, derive[i].Version)}
		}
	}
	return transitDeriveItems(ctx, c.base, c.clusterID, k, k.Name, derive, hashName, length, c.tokenTransitSend("/v1/token/transit/derive"))
}

// TransitExchange is Client.TransitExchange with x25519 key k (its
// pinned metadata): the token needs flag exchange.
func (c *TokenClient) TransitExchange(ctx context.Context, k *fsm.Key, items []TransitExchangeItem) (*TransitDecryption, error) {
	if err := checkTransitPin(k); err != nil {
		return nil, err
	}
	points, err := exchangePoints(k, items)
	if err != nil {
		return nil, err
	}
	return transitExchangeItems(ctx, c.base, c.clusterID, k, k.Name, points, c.tokenTransitSend("/v1/token/transit/exchange"))
}

// TransitHMAC is Client.TransitHMAC with transit key k (its pinned
// metadata): the MAC key is derived by quorum, so the token needs flag
// derive.
func (c *TokenClient) TransitHMAC(ctx context.Context, k *fsm.Key, hashName string, version uint64, input, context []byte) (string, error) {
	if err := checkTransitPin(k); err != nil {
		return "", err
	}
	return transitHMAC(k, hashName, version, input, context, func(items []TransitDerivation, size int) (*TransitDecryption, error) {
		return c.TransitDerive(ctx, k, items, hashName, size)
	})
}
