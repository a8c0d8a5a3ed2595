package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyquorum/keyquorum/client/jose"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Credentials are an operator's: the cluster CA certificate (and, for an
// operator who admits nodes, the CA key and the gossip key), the
// operator's Ed25519 key with its client certificate (the same key signs
// commands), and the pin: the cluster's ID and public key.
//
// Every seal uses the pinned key and never asks a node for it, and every
// release is checked against it; the pin is written when the first key is
// made (InitCluster with one initial node, or the JoinNode that completes
// the first key) or by Client.Pin.
type Credentials struct {
	CACert     []byte // PEM
	CAKey      []byte // PEM; only needed to init and join nodes
	GossipKey  []byte // 32 bytes; only needed to join nodes
	Cert       []byte // PEM operator certificate
	Key        ed25519.PrivateKey
	OperatorID string
	ClusterID  string // the pinned cluster's ID
	ClusterKey []byte // the pinned cluster public key (the public polynomial's constant term)
}

// Client calls one node's REST v1 API.
type Client struct {
	base      string
	creds     *Credentials
	http      *http.Client
	tlsConfig *tls.Config // the client's TLS configuration, which Confirm clones per member
	transit   transitPins // transit public keys t members confirmed (transit.go)
	sealModes
	ephemeral ephemeralKeys
}

// sealModes is a client's seal mode for its blind releases: share mode
// (fsm.SealShare) until a release in share mode does not open, proof mode
// from then on (docs/coordinator.md, "Share mode").
type sealModes struct {
	// proofMode is set once a release in share mode did not open
	// (api.ErrShareMode): every release after is made with proofs.
	proofMode atomic.Bool
	// failure is the error of that release in share mode.
	failure atomic.Pointer[error]
}

// fellBack records err, the api.ErrShareMode of a release in share mode,
// and switches to proof mode.
func (m *sealModes) fellBack(err error) {
	m.failure.CompareAndSwap(nil, &err)
	m.proofMode.Store(true)
}

// release makes a release with once, given the seal mode to sign: share
// mode (fsm.SealShare) until a release in share mode did not open
// (api.ErrShareMode); that release is made again with proofs (""), whose
// errors name the holder or the coordinator at fault, and so is every
// release after.
func (m *sealModes) release(once func(seal string) error) error {
	if !m.proofMode.Load() {
		err := once(fsm.SealShare)
		if !errors.Is(err, api.ErrShareMode) {
			return err
		}
		m.fellBack(err)
	}
	return once("")
}

// ShareModeFailure is why this client releases with proofs: the error of
// its release in share mode that did not open (api.ErrShareMode, naming
// the seal and its node when a seal did not open), or nil while it asks
// for share mode. A holder or the coordinator lied, or an older holder
// answered with proofs. The release made again with proofs names a lying
// holder; when it opened, the lie was one share mode alone lets pass
// unnamed (a coordinator can spoil every share-mode release it relays, so
// that each client it serves pays a second release once), and the
// operator should see this error: keyctl prints it on stderr.
func (m *sealModes) ShareModeFailure() error {
	if err := m.failure.Load(); err != nil {
		return *err
	}
	return nil
}

// NewClient makes a client of the node at addr ("host:port" or an https
// URL) with an operator's credentials.
func NewClient(addr string, creds *Credentials) (*Client, error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CACert) {
		return nil, errors.New("CA certificate: no PEM certificate found")
	}
	leaf, err := pki.ParseCertPEM(creds.Cert)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: creds.Key, Leaf: leaf}},
	}
	return &Client{base: base, creds: creds, tlsConfig: cfg.Clone(), http: &http.Client{Transport: nodeTransport(cfg)}}, nil
}

// maxIdleConns is how many connections to its node a client keeps open
// between requests: one per request it had in flight at once, up to this.
const maxIdleConns = 64

// idleConnTimeout closes a connection kept open with no request for this
// long: before the node does (gateway/https.IdleTimeout, 2 minutes), so a
// request is not written on a connection the node is closing. A request
// sent on one that is already closed is sent again on a new connection
// only when nothing of it was written: a release or a write that was
// written and then lost its connection may have happened, and says so.
const idleConnTimeout = time.Minute

// nodeTransport is the transport of a client's requests to its node:
// HTTP/1.1 on connections kept open, one per request in flight. Go's
// HTTP/2 costs more CPU per request on both ends (frames written apart,
// more goroutines on each side: docs/coordinator.md, "A tenth pass"), and
// a client has a few requests in flight, not hundreds.
func nodeTransport(cfg *tls.Config) *http.Transport {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Transport{TLSClientConfig: cfg, Protocols: &p, MaxIdleConns: maxIdleConns, MaxIdleConnsPerHost: maxIdleConns,
		IdleConnTimeout: idleConnTimeout}
}

func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("node address %q is not host:port or an https URL", addr)
	}
	return "https://" + u.Host, nil
}

// Error is an error the API returned.
type Error = api.Error

// The bodies of REST v1 that are the API's own; the others are fsm's
// commands and results and api's status and identity. The HTTPS gateway
// decodes and writes them with these types.

// CASRequest is the commit of a compare-and-swap the client compared in a
// blind release: the signed replace_key at the version it compared.
// Release is what a client that let the node compare sent; a node refuses
// a request that sets it.
type CASRequest struct {
	Release *fsm.Signed `json:"release,omitempty"`
	Replace *fsm.Signed `json:"replace"`
}

// ErrorReply is the body of every answer that is not 200:
// {"error":{"kind":K,"message":M}}.
type ErrorReply struct {
	Error *Error `json:"error"`
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	return doJSON(ctx, c.http, method, c.base+path, body, out)
}

func doJSON(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	_, err := doJSONHeader(ctx, hc, method, url, body, out)
	return err
}

// doJSONHeader is doJSON that also returns the answer's header.
func doJSONHeader(ctx context.Context, hc *http.Client, method, url string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, transportError(req, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e ErrorReply
		if err := dec.Decode(&e); err != nil || e.Error == nil {
			return nil, fmt.Errorf("%s %s: %s", method, req.URL.Path, resp.Status)
		}
		return nil, e.Error
	}
	if out == nil {
		return resp.Header, nil
	}
	return resp.Header, dec.Decode(out)
}

// transportError classifies a call that got no answer. One that never
// reached the node did not happen, and says the node is unreachable (not
// that the cluster lacks a quorum: nothing was asked of it); a read that
// got no answer did not happen either; a write that was sent and then lost
// its connection or its time may have.
func transportError(req *http.Request, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &Error{Kind: vocab.KindUnreachable, Message: fmt.Sprintf("cannot reach node at %s: %v", req.URL.Host, err)}
	}
	if req.Method == http.MethodGet {
		return &Error{Kind: api.KindNoQuorum, Message: fmt.Sprintf("no answer from %s: %v", req.URL.Host, err)}
	}
	return &Error{Kind: api.KindUnknownOutcome, Message: fmt.Sprintf("%s %s got no answer (%v): it may or may not have happened", req.Method, req.URL.Path, err)}
}

// Sign signs a command with the operator's key, with a fresh nonce and
// the current time.
func (c *Client) Sign(cmd *fsm.Command) (*fsm.Signed, error) {
	return signAs(c.creds, cmd)
}

func signAs(creds *Credentials, cmd *fsm.Command) (*fsm.Signed, error) {
	cmd.Nonce = make([]byte, 16)
	if _, err := rand.Read(cmd.Nonce); err != nil {
		return nil, err
	}
	cmd.IssuedAt = time.Now().UnixNano()
	return fsm.Sign(creds.OperatorID, creds.Key, cmd)
}

// Status returns the answering node's view of the cluster.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var st api.Status
	return &st, c.do(ctx, http.MethodGet, "/v1/cluster/status", nil, &st)
}

// submit signs a command and posts it.
func (c *Client) submit(ctx context.Context, path string, cmd *fsm.Command) (*fsm.Result, error) {
	sg, err := c.Sign(cmd)
	if err != nil {
		return nil, err
	}
	var res fsm.Result
	return &res, c.do(ctx, http.MethodPost, path, sg, &res)
}

// CreateSecret seals a secret to the pinned cluster public key here, on
// the client, and stores it: no node sees the plaintext.
func (c *Client) CreateSecret(ctx context.Context, name string, secret []byte, expires time.Time) (*fsm.Key, error) {
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeSecret}
	if !expires.IsZero() {
		ck.ExpiresAt = expires.UnixNano()
	}
	return c.CreateSealed(ctx, ck, secret)
}

// CreateSealed creates a key whose material is sealed here, to the
// pinned cluster public key, so that no node sees it: a secret, or the
// PKCS #8 DER of an assembled key (ck.Type rsa, ecdsa or ed25519, with
// ck.Public). ck's R and Sealed are filled in. It asks no node for the
// key: one call, the create.
func (c *Client) CreateSealed(ctx context.Context, ck *fsm.CreateKey, material []byte) (*fsm.Key, error) {
	clusterID, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	ct, err := shamir.Seal(rand.Reader, pin, fsm.SealInfo(clusterID, ck.Name), material)
	if err != nil {
		return nil, err
	}
	ck.R, ck.Sealed = ct.R, ct.Sealed
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// NamedSecret is one secret of a bulk create (CreateSecrets).
type NamedSecret struct {
	Name    string
	Secret  []byte
	Expires time.Time // zero: never
}

// BatchBytes bounds the sealed material of one create_keys command that
// CreateSecrets sends, below the node's limit on its request body.
const BatchBytes = 1 << 20

// CreateSecrets creates many secrets, each sealed here as CreateSecret
// seals it, in create_keys commands of up to fsm.MaxCreateKeys keys and
// BatchBytes of material each: one Raft entry per command. Each key is
// checked as a create of it alone would be; the result has each key's
// outcome in order (Error set for a key refused). It stops at the first
// command that fails as a whole (a network error, or every key of it
// refused), with the outcomes so far and that error.
func (c *Client) CreateSecrets(ctx context.Context, secrets []NamedSecret) ([]fsm.ItemResult, error) {
	clusterID, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	out := make([]fsm.ItemResult, 0, len(secrets))
	var batch []*fsm.CreateKey
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := c.submit(ctx, "/v1/keys/batch", &fsm.Command{Type: fsm.TypeCreateKeys, CreateKeys: batch})
		batch, size = nil, 0
		if err != nil {
			return err
		}
		out = append(out, res.Items...)
		return nil
	}
	for _, s := range secrets {
		ck := &fsm.CreateKey{Name: s.Name, Type: fsm.KeyTypeSecret}
		if !s.Expires.IsZero() {
			ck.ExpiresAt = s.Expires.UnixNano()
		}
		ct, err := shamir.Seal(rand.Reader, pin, fsm.SealInfo(clusterID, ck.Name), s.Secret)
		if err != nil {
			return out, err
		}
		ck.R, ck.Sealed = ct.R, ct.Sealed
		n := len(ck.Name) + len(ck.R) + len(ck.Sealed)
		if len(batch) == fsm.MaxCreateKeys || len(batch) > 0 && size+n > BatchBytes {
			if err := flush(); err != nil {
				return out, err
			}
		}
		batch, size = append(batch, ck), size+n
	}
	return out, flush()
}

// CreateTang creates a Tang key: a P-256 exchange key dealt here t-of-n to
// the cluster's share holders, each share sealed to its holder's identity
// key, and an advertisement signed by a key that is then discarded. The
// secret never leaves this process whole and is erased before it returns.
// The holders and their keys are the ones t members confirm (Confirm), so
// no node that lies alone chooses the keys the shares are sealed to.
func (c *Client) CreateTang(ctx context.Context, name string, access *fsm.Access) (*fsm.Key, error) {
	_, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	st, err := c.Confirm(ctx, pin)
	if err != nil {
		return nil, err
	}
	holders := st.Holders
	indexes := make([]uint32, len(holders))
	for i, h := range holders {
		indexes[i] = h.Index
	}
	pub, shares, publicShares, err := shamir.DealP256(rand.Reader, st.Threshold, indexes)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, sh := range shares {
			sh.Erase()
		}
	}()
	adv, kid, thp, err := jose.NewAdvertisement(rand.Reader, pub)
	if err != nil {
		return nil, err
	}
	tk := &fsm.TangKey{Adv: adv, Kid: kid, Thp: thp, Threshold: st.Threshold}
	for i, h := range holders {
		sealed, err := shamir.SealP256Share(rand.Reader, h.SignKey, shares[i], api.TangShareContext(st.ClusterID, kid))
		if err != nil {
			return nil, fmt.Errorf("sealing the share of node %s: %w", h.ID, err)
		}
		tk.Shares = append(tk.Shares, fsm.TangShare{NodeID: h.ID, Index: h.Index, PublicShare: publicShares[h.Index], Sealed: sealed})
	}
	if access == nil {
		access = &fsm.Access{Gateways: []string{fsm.GatewayTang}}
	}
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeTang, Public: pub, Access: access, Tang: tk}
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// CreateThresholdRSA imports an RSA key made elsewhere as an
// rsa-threshold key: it is dealt here by Shoup's scheme to the share
// holders t members confirm (Confirm), each share sealed to its holder's
// identity key, so no node ever holds it whole and no node that lies alone
// chooses the keys the shares are sealed to. Nodes sign and decrypt with
// it by quorum. access defaults to the Keyless SSL gateway.
func (c *Client) CreateThresholdRSA(ctx context.Context, name string, priv *rsa.PrivateKey, access *fsm.Access) (*fsm.Key, error) {
	_, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	st, err := c.Confirm(ctx, pin)
	if err != nil {
		return nil, err
	}
	public, rk, err := api.DealRSA(rand.Reader, st.ClusterID, name, priv, st.Threshold, st.Holders)
	if err != nil {
		return nil, err
	}
	if access == nil {
		access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
	}
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeRSAThreshold, Public: public, Access: access, RSA: rk}
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// AddMachine registers a machine that may fetch keys (names or prefix*).
func (c *Client) AddMachine(ctx context.Context, m *fsm.Machine) error {
	_, err := c.submit(ctx, "/v1/machines", &fsm.Command{Type: fsm.TypeAddMachine, AddMachine: m})
	return err
}

// RevokeMachine revokes a machine: no node answers it any more.
func (c *Client) RevokeMachine(ctx context.Context, id string) error {
	_, err := c.submit(ctx, "/v1/machines/"+url.PathEscape(id)+"/revoke", &fsm.Command{Type: fsm.TypeRevokeMachine, RevokeMachine: id})
	return err
}

// Machines lists the registered machines.
func (c *Client) Machines(ctx context.Context) ([]*fsm.Machine, error) {
	var out []*fsm.Machine
	return out, c.do(ctx, http.MethodGet, "/v1/machines", nil, &out)
}

// Sessions lists the machines waiting for an approval.
func (c *Client) Sessions(ctx context.Context) ([]*fsm.Session, error) {
	var out []*fsm.Session
	return out, c.do(ctx, http.MethodGet, "/v1/sessions", nil, &out)
}

// Approve approves a machine's releases: uses, a window, or both.
func (c *Client) Approve(ctx context.Context, a *fsm.Approval) error {
	_, err := c.submit(ctx, "/v1/approvals", &fsm.Command{Type: fsm.TypeApprove, Approve: a})
	return err
}

// Deny refuses a machine's releases until d.Until: its waiting session is
// dropped and its keyagent stops.
func (c *Client) Deny(ctx context.Context, d *fsm.Denial) error {
	_, err := c.submit(ctx, "/v1/denials", &fsm.Command{Type: fsm.TypeDeny, Deny: d})
	return err
}

// AddPasskey registers an operator's passkey (an admin's command): the
// passkey may then sign that operator's approvals and denials.
func (c *Client) AddPasskey(ctx context.Context, pk *fsm.Passkey) error {
	_, err := c.submit(ctx, "/v1/passkeys", &fsm.Command{Type: fsm.TypeAddPasskey, AddPasskey: pk})
	return err
}

// SetAccess replaces a key's gateway access; nil closes it to every
// legacy gateway.
func (c *Client) SetAccess(ctx context.Context, name string, access *fsm.Access) (*fsm.Key, error) {
	res, err := c.submit(ctx, "/v1/access", &fsm.Command{Type: fsm.TypeSetAccess, SetAccess: &fsm.SetAccess{Name: name, Access: access}})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// Get releases a secret blindly: the request carries a fresh ephemeral
// key, every share holder seals its partial to it, and this client checks
// each proof against the pinned cluster key, combines and decrypts. The
// node it asks never holds the secret.
func (c *Client) Get(ctx context.Context, name string) ([]byte, error) {
	secret, _, err := c.release(ctx, &fsm.ReleaseRequest{Key: name, Op: fsm.OpGet})
	return secret, err
}

// release makes a blind release of req (Ephemeral and Seal are filled
// in) and returns the secret and the key's version it was released at,
// in the seal mode sealModes.release chooses.
func (c *Client) release(ctx context.Context, req *fsm.ReleaseRequest) (secret []byte, version uint64, err error) {
	err = c.sealModes.release(func(seal string) (err error) {
		req.Seal = seal
		secret, version, err = c.releaseOnce(ctx, req)
		return err
	})
	return secret, version, err
}

// releaseOnce makes one blind release of req, with a new ephemeral key
// and nonce.
func (c *Client) releaseOnce(ctx context.Context, req *fsm.ReleaseRequest) ([]byte, uint64, error) {
	clusterID, pin, err := c.pinned()
	if err != nil {
		return nil, 0, err
	}
	ephPriv, err := c.ephemeral.take()
	if err != nil {
		return nil, 0, err
	}
	defer ephPriv.Erase()
	req.Ephemeral = ephPriv.PublicKey()
	sg, err := c.Sign(&fsm.Command{Type: fsm.TypeRelease, Release: req})
	if err != nil {
		return nil, 0, err
	}
	c.ephemeral.prepare()
	var sr api.SealedRelease
	if err := c.do(ctx, http.MethodPost, "/v1/release", sg, &sr); err != nil {
		return nil, 0, err
	}
	secret, err := api.OpenRelease(&sr, clusterID, req.Key, pin, sg.Payload, ephPriv)
	if errors.Is(err, api.ErrShareMode) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, &Error{Kind: api.KindInternal, Message: fmt.Sprintf("the release of %q through %s does not check out: %v", req.Key, c.base, err)}
	}
	return secret, sr.Version, nil
}

// Keys lists every key the operator may read, a page at a time.
func (c *Client) Keys(ctx context.Context) ([]*fsm.Key, error) {
	var all []*fsm.Key
	for after := ""; ; {
		keys, next, err := c.KeysPage(ctx, after, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
		if next == "" {
			return all, nil
		}
		after = next
	}
}

// KeysPage lists one page of the keys the operator may read: up to limit
// (0: api.MaxKeysPage) whose names sort after `after`, in name order, and
// the name to ask the next page after ("" when no key is left).
func (c *Client) KeysPage(ctx context.Context, after string, limit int) ([]*fsm.Key, string, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/keys"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var keys []*fsm.Key
	h, err := doJSONHeader(ctx, c.http, http.MethodGet, c.base+path, nil, &keys)
	if err != nil {
		return nil, "", err
	}
	return keys, h.Get(api.NextPageHeader), nil
}

// Key shows one key's metadata.
func (c *Client) Key(ctx context.Context, name string) (*fsm.Key, error) {
	var k fsm.Key
	return &k, c.do(ctx, http.MethodGet, "/v1/keys/"+name, nil, &k)
}

// Revoke revokes a key: no release succeeds after it returns. It returns
// only once t members show the key revoked (ConfirmKeyState), not on the
// word of the node that acknowledged it.
func (c *Client) Revoke(ctx context.Context, name string) (*fsm.Key, error) {
	return c.confirmedState(ctx, "/v1/revoke", &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: name}, name, fsm.KeyRevoked)
}

// Destroy erases a key's material from the cluster, and returns once t
// members show it destroyed.
func (c *Client) Destroy(ctx context.Context, name string) (*fsm.Key, error) {
	return c.confirmedState(ctx, "/v1/destroy", &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: name}, name, fsm.KeyDestroyed)
}

func (c *Client) confirmedState(ctx context.Context, path string, cmd *fsm.Command, name, state string) (*fsm.Key, error) {
	res, err := c.submit(ctx, path, cmd)
	if err != nil {
		return nil, err
	}
	// The write was acknowledged: whatever stops the confirmation, the
	// outcome is unknown, never a failure.
	if err := c.ConfirmKeyState(ctx, name, state); err != nil {
		if api.KindOf(err) != api.KindUnknownOutcome {
			err = &Error{Kind: api.KindUnknownOutcome, Message: fmt.Sprintf("the node acknowledged key %q %s, but t members could not confirm it: %v", name, state, err)}
		}
		return nil, err
	}
	return res.Key, nil
}

// CompareAndSwap replaces a secret if the current one hashes to
// oldSHA256. It compares here: it releases the current secret blindly
// (op cas), compares its hash in constant time, and sends the signed
// replace_key at the version it released, which the cluster applies only
// if the key is still at that version. No node sees the old secret.
func (c *Client) CompareAndSwap(ctx context.Context, name string, oldSHA256, secret []byte) (*fsm.Key, error) {
	clusterID, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	if len(oldSHA256) != sha256.Size {
		return nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf("old-sha256 must be %d bytes", sha256.Size)}
	}
	cur, version, err := c.release(ctx, &fsm.ReleaseRequest{Key: name, Op: fsm.OpCAS, ReplaceKey: &fsm.ReplaceKey{Name: name, OldSHA256: oldSHA256}})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cur)
	clear(cur)
	if subtle.ConstantTimeCompare(sum[:], oldSHA256) != 1 {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf("the current secret of %q does not hash to old-sha256", name)}
	}
	ct, err := shamir.Seal(rand.Reader, pin, fsm.SealInfo(clusterID, name), secret)
	if err != nil {
		return nil, err
	}
	rep, err := c.Sign(&fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: &fsm.ReplaceKey{
		Name: name, ExpectVersion: version, OldSHA256: oldSHA256, R: ct.R, Sealed: ct.Sealed}})
	if err != nil {
		return nil, err
	}
	var out fsm.Key
	return &out, c.do(ctx, http.MethodPost, "/v1/cas", CASRequest{Replace: rep}, &out)
}

// PutRule grants a principal operations on a key or prefix*.
func (c *Client) PutRule(ctx context.Context, r *fsm.Rule) error {
	_, err := c.submit(ctx, "/v1/rules", &fsm.Command{Type: fsm.TypePutRule, PutRule: r})
	return err
}

// AddOperator registers another operator.
func (c *Client) AddOperator(ctx context.Context, name string, pub ed25519.PublicKey, admin bool) (*fsm.Operator, error) {
	op := &fsm.Operator{ID: fsm.PrincipalID(pub), Name: name, PublicKey: pub, Admin: admin}
	_, err := c.submit(ctx, "/v1/operators", &fsm.Command{Type: fsm.TypeAddOperator, AddOperator: op})
	return op, err
}

// CreateOperator makes a new operator's key and a client certificate for
// it from the CA key, and registers it. The credentials it returns carry
// the CA certificate but neither the CA key nor the gossip key.
func (c *Client) CreateOperator(ctx context.Context, name string, admin bool) (*Credentials, error) {
	if len(c.creds.CAKey) == 0 {
		return nil, errors.New("creating an operator needs the CA key (KEYQUORUM_CA_KEY)")
	}
	ca, err := pki.LoadCA(c.creds.CACert, c.creds.CAKey)
	if err != nil {
		return nil, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	op, err := c.AddOperator(ctx, name, pub, admin)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(pub, pki.RoleOperator, op.ID, nil)
	if err != nil {
		return nil, err
	}
	return &Credentials{CACert: c.creds.CACert, Cert: cert, Key: key, OperatorID: op.ID}, nil
}

// SetAutopilot has the leader remove a member it has seen down for
// removeDeadAfter, while t holders stay (fsm/autopilot.go); 0 turns it off.
func (c *Client) SetAutopilot(ctx context.Context, removeDeadAfter time.Duration) error {
	_, err := c.submit(ctx, "/v1/autopilot", &fsm.Command{Type: fsm.TypeSetAutopilot, SetAutopilot: &fsm.Autopilot{RemoveDeadAfter: removeDeadAfter}})
	return err
}

// RemoveNode removes a member; the cluster reshares without it.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	_, err := c.submit(ctx, "/v1/nodes/"+url.PathEscape(id)+"/remove", &fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: id})
	return err
}

// WaitEpoch waits until the cluster is at a key epoch after `after` with
// no resharing in progress, and returns its status.
func (c *Client) WaitEpoch(ctx context.Context, after uint64) (*api.Status, error) {
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Epoch > after && st.Resharing == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("the cluster is at key epoch %d, resharing %v", st.Epoch, st.Resharing != nil)
			}
			return nil, fmt.Errorf("waiting for key epoch %d: %w", after+1, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LoadCredentials reads credentials from files; caKey and gossipKey may
// be empty paths.
func LoadCredentials(caCert, cert, key, caKey, gossipKey string) (*Credentials, error) {
	var c Credentials
	var err error
	read := func(path, what string) []byte {
		if err != nil || path == "" {
			return nil
		}
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			err = fmt.Errorf("reading %s: %w", what, err)
		}
		return b
	}
	c.CACert = read(caCert, "the CA certificate")
	c.Cert = read(cert, "the client certificate")
	keyPEM := read(key, "the client key")
	c.CAKey = read(caKey, "the CA key")
	gk := read(gossipKey, "the gossip key")
	if err != nil {
		return nil, err
	}
	if c.Key, err = pki.ParseKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("client key %s: %w", key, err)
	}
	c.OperatorID = fsm.PrincipalID(c.Key.Public().(ed25519.PublicKey))
	if len(gk) > 0 {
		if c.GossipKey, err = hex.DecodeString(strings.TrimSpace(string(gk))); err != nil || len(c.GossipKey) != 32 {
			return nil, fmt.Errorf("gossip key %s: want 64 hex digits", gossipKey)
		}
	}
	return &c, nil
}

// Environment variables keyctl reads; keyd dev and keyctl cluster init
// print them.
const (
	EnvAddr       = "KEYQUORUM_ADDR"
	EnvCACert     = "KEYQUORUM_CACERT"
	EnvClientCert = "KEYQUORUM_CLIENT_CERT"
	EnvClientKey  = "KEYQUORUM_CLIENT_KEY"
	EnvCAKey      = "KEYQUORUM_CA_KEY"
	EnvGossipKey  = "KEYQUORUM_GOSSIP_KEY"
	// The pin: values, not paths. The cluster key is hex (base64 is
	// read too).
	EnvClusterID  = "KEYQUORUM_CLUSTER_ID"
	EnvClusterKey = "KEYQUORUM_CLUSTER_KEY"
)

// Save writes the credentials into dir as PEM files (keys with mode 0600)
// and an env.sh of export lines pointing keyctl at addr. It returns the
// export lines.
func (c *Credentials) Save(dir, addr string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	keyPEM, err := pki.KeyToPEM(c.Key)
	if err != nil {
		return "", err
	}
	files := []struct {
		env, name string
		data      []byte
		mode      os.FileMode
	}{
		{EnvCACert, "ca.pem", c.CACert, 0o644},
		{EnvClientCert, "operator.pem", c.Cert, 0o644},
		{EnvClientKey, "operator-key.pem", keyPEM, 0o600},
		{EnvCAKey, "ca-key.pem", c.CAKey, 0o600},
		{EnvGossipKey, "gossip.key", []byte(hex.EncodeToString(c.GossipKey) + "\n"), 0o600},
	}
	var env strings.Builder
	fmt.Fprintf(&env, "export %s=%s\n", EnvAddr, addr)
	for _, f := range files {
		if len(f.data) == 0 || (f.env == EnvGossipKey && len(c.GossipKey) == 0) {
			continue
		}
		path := dir + "/" + f.name
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return "", err
		}
		fmt.Fprintf(&env, "export %s=%s\n", f.env, path)
	}
	env.WriteString(c.pinLines())
	if err := os.WriteFile(dir+"/env.sh", []byte(env.String()), 0o644); err != nil {
		return "", err
	}
	return env.String(), nil
}

// CredentialsFromEnv loads the credentials the KEYQUORUM_* variables name.
func CredentialsFromEnv() (*Credentials, error) {
	for _, v := range []string{EnvCACert, EnvClientCert, EnvClientKey} {
		if os.Getenv(v) == "" {
			return nil, fmt.Errorf("%s is not set: source the env.sh that keyd dev or keyctl cluster init wrote", v)
		}
	}
	c, err := LoadCredentials(os.Getenv(EnvCACert), os.Getenv(EnvClientCert), os.Getenv(EnvClientKey), os.Getenv(EnvCAKey), os.Getenv(EnvGossipKey))
	if err != nil {
		return nil, err
	}
	id, key := os.Getenv(EnvClusterID), os.Getenv(EnvClusterKey)
	if (id == "") != (key == "") {
		return nil, fmt.Errorf("%s and %s are set together: run keyctl cluster pin", EnvClusterID, EnvClusterKey)
	}
	if key != "" {
		if c.ClusterKey, err = ParseClusterKey(key); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvClusterKey, err)
		}
		c.ClusterID = id
	}
	return c, nil
}

// CreateFROST imports an Ed25519 private key as an ed25519-frost key: its
// scalar is dealt here t-of-n to the share holders t members confirm
// (Confirm), each share sealed to its holder's identity key, so the key
// signs by quorum and never exists whole in the cluster
// (docs/signing.md). The caller erases priv.
func (c *Client) CreateFROST(ctx context.Context, name string, priv ed25519.PrivateKey, access *fsm.Access) (*fsm.Key, error) {
	_, pin, err := c.pinned()
	if err != nil {
		return nil, err
	}
	st, err := c.Confirm(ctx, pin)
	if err != nil {
		return nil, err
	}
	ck, err := api.NewFROSTKey(rand.Reader, name, priv, st.ClusterID, st.Epoch, st.Threshold, st.Holders)
	if err != nil {
		return nil, err
	}
	ck.Access = access
	res, err := c.submit(ctx, "/v1/keys", &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck})
	if err != nil {
		return nil, err
	}
	return res.Key, nil
}

// SignMessage signs msg with key name by quorum (op sign): the node asks
// t holders, each of which checks this signed request itself. padding is
// an rsa-threshold key's (fsm.PaddingPKCS1v15, also when empty, or
// fsm.PaddingPSS); other keys take none. The signature is checked here
// against the public key the answer names; check that key against one you
// trust (VerifySignature does, with the key's metadata).
func (c *Client) SignMessage(ctx context.Context, name string, msg []byte, padding string) (*api.Signature, error) {
	sg, err := c.Sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpSign, Message: msg, Padding: padding}})
	if err != nil {
		return nil, err
	}
	var sig api.Signature
	if err := c.do(ctx, http.MethodPost, "/v1/sign", sg, &sig); err != nil {
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

// VerifySignature checks sig over msg with key name's public key, here,
// with the key's metadata (api.VerifySignature); padding as for
// SignMessage.
func (c *Client) VerifySignature(ctx context.Context, name string, msg, sig []byte, padding string) error {
	k, err := c.Key(ctx, name)
	if err != nil {
		return err
	}
	return api.VerifySignature(k, msg, sig, padding)
}

// ephemeralKeys gives a client's releases their ephemeral X25519 keys, each
// used once: the next one is made while a release waits for its answer,
// off the release's path. A key made ahead and never taken (the client's
// last) was sent nowhere and opens nothing; it is not erased.
type ephemeralKeys struct {
	mu     sync.Mutex
	next   *shamir.X25519Key // made ahead, not yet given
	making bool
}

// take returns a key no release had: the one made ahead, or a new one.
func (e *ephemeralKeys) take() (*shamir.X25519Key, error) {
	e.mu.Lock()
	k := e.next
	e.next = nil
	e.mu.Unlock()
	if k != nil {
		return k, nil
	}
	return shamir.NewX25519Key(rand.Reader)
}

// prepare makes the next key in the background, unless one is ready or
// being made.
func (e *ephemeralKeys) prepare() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next != nil || e.making {
		return
	}
	e.making = true
	go func() {
		k, err := shamir.NewX25519Key(rand.Reader)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.making = false
		if err == nil {
			e.next = k
		}
	}()
}
