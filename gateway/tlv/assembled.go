package tlv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// ClusterKeys finds keyless clients' keys in a cluster: the keys open to
// the tlv gateway. An rsa-threshold key is never released: each operation
// is computed by a quorum of its share holders (quorumRSA), and this node
// only pads, combines and checks. An assembled key (rsa, ecdsa, ed25519;
// ECDSA has no practical threshold scheme, so it is always assembled) is
// released by a
// quorum to this node when a client first uses it, and kept in memory for
// the key's assemble_ttl (with 0, for one request). Every request checks
// the key and its state in this node's applied state, and the client with
// the admission check every legacy gateway shares (cluster.Admission:
// certificates, hosts, networks, rate), so a revoke stops a key here as
// soon as this node applies it; the release, when one is needed, is
// checked by every holder at a linearizable read.
//
// A key held in memory is dropped without waiting for a request: at the
// end of its assemble_ttl, and as soon as this node applies a revoke, a
// destroy, a new version, an expiry or any change of the key's access.
// A goroutine runs for that while a key is held, watching the applied
// state and the earliest deadline. The node's status lists what is held
// (cluster.LegacyService.ReportHeld).
//
// Dropping a key zeroes what this package can reach: the private scalar
// of an ECDSA key, the 64 bytes of an Ed25519 key, and the words of an RSA
// key's D, primes and CRT values, and the PKCS #8 bytes the quorum
// released. Go cannot promise more: the standard library keeps its own
// precomputed copies of an RSA or ECDSA key inside the parsed key (in
// unexported fields) that are left for the garbage collector, the runtime
// may have moved or copied any of these values (stacks, big.Int
// temporaries of each operation), and memory is not wiped when it is
// freed. A key with an assemble_ttl of 0 is used for one request and left
// to the garbage collector, unzeroed, since the server does not say when
// the request is done with it.
type ClusterKeys struct {
	svc cluster.LegacyService
	adm cluster.Admission
	// now and at are the clock (at's channel fires at a time); tests
	// replace them.
	now func() time.Time
	at  func(time.Time) <-chan time.Time

	mu       sync.Mutex
	index    map[string]string // hex SKI or digest -> key name
	builtAt  time.Time
	cache    map[string]*assembled
	loading  map[string]*sync.Mutex // one release at a time per key
	sweeping bool                   // the sweeper goroutine runs
	closed   bool
	wake     chan struct{} // tells the sweeper of a new deadline
	changed  chan struct{} // closed and replaced when the cache changes
}

type assembled struct {
	version uint64
	access  *fsm.Access // as released: any change drops the key
	key     *heldKey
	expires time.Time
}

// indexEvery bounds how often a miss rebuilds the index.
const indexEvery = time.Second

// NewClusterKeys makes the key finder of a node. Close drops what it
// holds.
func NewClusterKeys(svc cluster.LegacyService) *ClusterKeys {
	return &ClusterKeys{svc: svc, now: time.Now, at: func(t time.Time) <-chan time.Time { return time.After(time.Until(t)) },
		index: map[string]string{},
		cache: map[string]*assembled{}, loading: map[string]*sync.Mutex{},
		wake: make(chan struct{}, 1), changed: make(chan struct{})}
}

var _ Keys = (*ClusterKeys)(nil)

// Lookup implements Keys.
func (c *ClusterKeys) Lookup(ctx context.Context, ski, digest []byte, sni string, client Client) (crypto.Signer, error) {
	name := c.find(ski, digest)
	if name == "" {
		return nil, ErrKeyNotFound
	}
	k := c.svc.LocalKey(name)
	if k == nil || k.State != fsm.KeyActive || !served(k.Type) || expired(k, c.now()) {
		return nil, ErrKeyNotFound
	}
	gc := cluster.GatewayClient{Addr: addrOf(client.Addr)}
	if client.Cert != nil {
		gc.Certs = []*x509.Certificate{client.Cert}
	}
	if _, err := c.adm.Admit(ctx, fsm.GatewayTLV, k, gc); err != nil {
		var refused *cluster.AdmitError
		if errors.As(err, &refused) && refused.Rule == cluster.RuleKey {
			return nil, ErrKeyNotFound
		}
		return nil, ErrDenied
	}
	if signsByQuorum(k.Type) {
		return c.byQuorum(ctx, k, describe(client))
	}
	if s := c.cached(name, k.Version); s != nil {
		return s, nil
	}
	return c.load(ctx, k, client)
}

// served says whether the gateway serves keys of a type: the assembled
// ones, which a node holds for their assemble_ttl, and those that sign by
// quorum (threshold RSA, FROST), which no node holds.
func served(keyType string) bool {
	return fsm.Assembled(keyType) || signsByQuorum(keyType)
}

func signsByQuorum(keyType string) bool {
	k := fsm.KindOf(keyType)
	return k != nil && k.Custody == fsm.CustodyQuorum && slices.Contains(k.Ops, fsm.OpSign)
}

// byQuorum is the signer of a key that signs by quorum, for one request:
// this node holds no key, only the request's context; every holder checks
// the node's signed request at its own read.
func (c *ClusterKeys) byQuorum(ctx context.Context, k *fsm.Key, who string) (crypto.Signer, error) {
	if k.Type == fsm.KeyTypeRSAThreshold {
		pub, ok := k.RSAPublicKey()
		if !ok {
			return nil, fmt.Errorf("key %q has no RSA public key", k.Name)
		}
		return &quorumRSA{ctx: ctx, svc: c.svc, name: k.Name, client: who, pub: pub}, nil
	}
	return newQuorumSigner(ctx, c.svc, k, who)
}

// describe is a client as the holders' logs name it: its address and the
// SHA-256 of its certificate.
func describe(client Client) string {
	who := "tlv"
	if client.Addr != nil {
		who = client.Addr.String()
	}
	if client.Cert != nil {
		sum := sha256.Sum256(client.Cert.Raw)
		who += " cert sha256:" + hex.EncodeToString(sum[:])
	}
	return who
}

// quorumSigner signs with an ed25519-frost key by quorum, for one
// request: this node holds no key, only the request's context; every
// holder checks the node's signed request at its own read.
type quorumSigner struct {
	ctx  context.Context
	svc  cluster.LegacyService
	name string
	pub  ed25519.PublicKey
	who  string
}

func newQuorumSigner(ctx context.Context, svc cluster.LegacyService, k *fsm.Key, who string) (crypto.Signer, error) {
	pub, err := x509.ParsePKIXPublicKey(k.Public())
	if err != nil {
		return nil, fmt.Errorf("key %q: public key: %w", k.Name, err)
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key %q holds a %T, not an Ed25519 public key", k.Name, pub)
	}
	return &quorumSigner{ctx: ctx, svc: svc, name: k.Name, pub: ed, who: who}, nil
}

func (q *quorumSigner) Public() crypto.PublicKey { return q.pub }

// Sign signs the message itself (Ed25519 hashes inside), by quorum, and
// checks the signature before it is returned.
func (q *quorumSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != 0 {
		return nil, errors.New("an Ed25519 key signs the message itself, not a digest")
	}
	sig, err := q.svc.SignFor(q.ctx, fsm.GatewayTLV, q.name, msg, q.who)
	if err != nil {
		return nil, fmt.Errorf("signing with key %q by quorum: %w", q.name, err)
	}
	if !ed25519.Verify(q.pub, msg, sig.Signature) {
		return nil, fmt.Errorf("the quorum's signature with key %q does not verify", q.name)
	}
	return sig.Signature, nil
}

func expired(k *fsm.Key, now time.Time) bool {
	return k.ExpiresAt != 0 && now.UnixNano() >= k.ExpiresAt
}

// addrOf is the IP address of a TCP or QUIC peer.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	case *net.UDPAddr:
		return a.AddrPort().Addr()
	case nil:
		return netip.Addr{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr()
}

// find returns the name of the key with the SKI or digest, rebuilding the
// index on a miss at most every indexEvery.
func (c *ClusterKeys) find(ski, digest []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lookup := func() string {
		if n := c.index[hex.EncodeToString(ski)]; len(ski) > 0 && n != "" {
			return n
		}
		if n := c.index[hex.EncodeToString(digest)]; len(digest) > 0 && n != "" {
			return n
		}
		return ""
	}
	if n := lookup(); n != "" || time.Since(c.builtAt) < indexEvery {
		return n
	}
	c.rebuild()
	return lookup()
}

func (c *ClusterKeys) rebuild() {
	keys, _ := c.svc.LocalKeys()
	index := map[string]string{}
	for _, k := range keys {
		if !served(k.Type) || k.State == fsm.KeyDestroyed {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.Public())
		if err != nil {
			continue
		}
		if ski, err := SKI(pub); err == nil {
			index[hex.EncodeToString(ski)] = k.Name
		}
		if d, err := Digest(pub); err == nil {
			index[hex.EncodeToString(d)] = k.Name
		}
	}
	c.index, c.builtAt = index, time.Now()
}

func (c *ClusterKeys) cached(name string, version uint64) crypto.Signer {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.cache[name]
	if a == nil {
		return nil
	}
	if a.version != version || !c.now().Before(a.expires) {
		c.dropLocked(name)
		return nil
	}
	return a.key
}

// load releases a key by quorum and keeps it for its assemble_ttl.
func (c *ClusterKeys) load(ctx context.Context, k *fsm.Key, client Client) (crypto.Signer, error) {
	c.mu.Lock()
	l := c.loading[k.Name]
	if l == nil {
		l = &sync.Mutex{}
		c.loading[k.Name] = l
	}
	c.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	if s := c.cached(k.Name, k.Version); s != nil {
		return s, nil // another request loaded it meanwhile
	}
	der, released, err := c.svc.ReleaseFor(ctx, fsm.GatewayTLV, k.Name, describe(client))
	if err != nil {
		return nil, fmt.Errorf("releasing key %q: %w", k.Name, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("key %q does not hold a PKCS #8 key: %w", k.Name, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %q holds a %T, not a signing key", k.Name, priv)
	}
	if released.Version != k.Version || !released.Access().Equal(k.Access()) {
		// The client was admitted by rules that changed before the
		// quorum's read: it asks again, and is checked by the new ones.
		wipe(signer)
		return nil, cluster.Errorf(cluster.KindConflict, "key %q changed while it was released; ask again", k.Name)
	}
	held := newHeldKey(signer)
	if released.AssembleTTL() > 0 {
		c.hold(k.Name, &assembled{version: released.Version, access: released.Access(), key: held,
			expires: c.now().Add(released.AssembleTTL())})
	}
	return held, nil
}

// hold keeps a key and makes sure the sweeper runs.
func (c *ClusterKeys) hold(name string, a *assembled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if old := c.cache[name]; old != nil && old.key != a.key {
		old.key.wipe()
	}
	c.cache[name] = a
	c.changedLocked()
	if !c.sweeping {
		c.sweeping = true
		go c.sweep()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sweep drops held keys at their deadline and as soon as the node applies
// a change that makes them stale, until nothing is held.
func (c *ClusterKeys) sweep() {
	for {
		_, applied := c.svc.WatchApplied()
		c.mu.Lock()
		now := c.now()
		for name, a := range c.cache {
			if c.stale(name, a, now) {
				c.dropLocked(name)
			}
		}
		if len(c.cache) == 0 || c.closed {
			c.sweeping = false
			c.mu.Unlock()
			return
		}
		var next time.Time
		for _, a := range c.cache {
			if next.IsZero() || a.expires.Before(next) {
				next = a.expires
			}
		}
		c.mu.Unlock()
		select {
		case <-applied:
		case <-c.at(next):
		case <-c.wake:
		}
	}
}

// stale says whether a held key must go: its assemble_ttl is over, or the
// node's applied state no longer has it active, at the same version, open
// to tlv with the same rules, and unexpired.
func (c *ClusterKeys) stale(name string, a *assembled, now time.Time) bool {
	if !now.Before(a.expires) {
		return true
	}
	k := c.svc.LocalKey(name)
	return k == nil || k.State != fsm.KeyActive || k.Version != a.version || expired(k, now) ||
		!k.Access().Allows(fsm.GatewayTLV) || !k.Access().Equal(a.access)
}

// dropLocked forgets a held key and zeroes what it can of it.
func (c *ClusterKeys) dropLocked(name string) {
	a := c.cache[name]
	if a == nil {
		return
	}
	delete(c.cache, name)
	a.key.wipe()
	c.changedLocked()
}

// changedLocked reports the held keys to the node and wakes Held's
// watchers.
func (c *ClusterKeys) changedLocked() {
	c.svc.ReportHeld(fsm.GatewayTLV, c.heldLocked())
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *ClusterKeys) heldLocked() []cluster.HeldKey {
	out := make([]cluster.HeldKey, 0, len(c.cache))
	for name, a := range c.cache {
		out = append(out, cluster.HeldKey{Name: name, Gateway: fsm.GatewayTLV, Version: a.version, Until: a.expires})
	}
	slices.SortFunc(out, func(x, y cluster.HeldKey) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Held lists the keys held in memory, with a channel closed when that
// changes.
func (c *ClusterKeys) Held() ([]cluster.HeldKey, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heldLocked(), c.changed
}

// Close drops every held key. Lookups still work afterwards, without
// keeping keys.
func (c *ClusterKeys) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for name := range c.cache {
		c.dropLocked(name)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// errDropped answers a request whose key was dropped while it was in
// flight: it was revoked or its time was over, so it is not found.
var errDropped = &Error{Code: CodeKeyNotFound, Reason: "the key was dropped from memory"}

// heldKey is an assembled key in memory: it can be wiped while requests
// may still hold it, which then fail with errDropped.
type heldKey struct {
	pub crypto.PublicKey

	mu sync.RWMutex
	s  crypto.Signer // nil once wiped
}

var (
	_ crypto.Decrypter = (*heldKey)(nil)
	_ RawDecrypter     = (*heldKey)(nil)
)

func newHeldKey(s crypto.Signer) *heldKey { return &heldKey{pub: s.Public(), s: s} }

func (h *heldKey) Public() crypto.PublicKey { return h.pub }

func (h *heldKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.s == nil {
		return nil, errDropped
	}
	return h.s.Sign(rand, digest, opts)
}

func (h *heldKey) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.s == nil {
		return nil, errDropped
	}
	d, ok := h.s.(crypto.Decrypter)
	if !ok {
		return nil, &Error{Code: CodeCryptoFailed, Reason: "the key cannot decrypt"}
	}
	return d.Decrypt(rand, msg, opts)
}

func (h *heldKey) DecryptRaw(ciphertext []byte) ([]byte, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.s == nil {
		return nil, errDropped
	}
	k, ok := h.s.(*rsa.PrivateKey)
	if !ok {
		return nil, &Error{Code: CodeCryptoFailed, Reason: "raw decryption needs an RSA key"}
	}
	return decryptRawRSA(k, ciphertext)
}

// wipe waits for the operations in progress, then zeroes the key and
// drops it.
func (h *heldKey) wipe() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.s != nil {
		wipe(h.s)
		h.s = nil
	}
}

// wipe zeroes the private values of a parsed key that this package can
// reach (see ClusterKeys).
func wipe(s crypto.Signer) {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		wipeInt(k.D)
		for _, p := range k.Primes {
			wipeInt(p)
		}
		wipeInt(k.Precomputed.Dp)
		wipeInt(k.Precomputed.Dq)
		wipeInt(k.Precomputed.Qinv)
	case *ecdsa.PrivateKey:
		//lint:ignore SA1019 zeroing the scalar we hold is the point; the key is never used again
		wipeInt(k.D)
	case ed25519.PrivateKey:
		clear(k)
	}
}

func wipeInt(x *big.Int) {
	if x != nil {
		clear(x.Bits())
		x.SetInt64(0)
	}
}
