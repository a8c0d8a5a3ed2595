package tlv

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// ClusterKeys finds keyless clients' keys in a cluster: the assembled keys
// (rsa, ecdsa, ed25519) open to the tlv gateway. A key is released by a
// quorum to this node when a client first uses it, and kept in memory for
// the key's assemble_ttl (with 0, for one request). Every request checks
// the key, its state and its client rules in this node's applied state,
// so a revoke stops a key here as soon as this node applies it; the
// release, when one is needed, is checked by every holder at a
// linearizable read.
type ClusterKeys struct {
	svc cluster.LegacyService

	mu      sync.Mutex
	index   map[string]string // hex SKI or digest -> key name
	builtAt time.Time
	cache   map[string]*assembled
	loading map[string]*sync.Mutex // one release at a time per key
}

type assembled struct {
	version uint64
	signer  crypto.Signer
	expires time.Time
}

// indexEvery bounds how often a miss rebuilds the index.
const indexEvery = time.Second

// NewClusterKeys makes the key finder of a node.
func NewClusterKeys(svc cluster.LegacyService) *ClusterKeys {
	return &ClusterKeys{svc: svc, index: map[string]string{}, cache: map[string]*assembled{}, loading: map[string]*sync.Mutex{}}
}

var _ Keys = (*ClusterKeys)(nil)

// Lookup implements Keys.
func (c *ClusterKeys) Lookup(ctx context.Context, ski, digest []byte, sni string, client Client) (crypto.Signer, error) {
	name := c.find(ski, digest)
	if name == "" {
		return nil, ErrKeyNotFound
	}
	k := c.svc.LocalKey(name)
	if k == nil || k.State != fsm.KeyActive || !fsm.Assembled(k.Type) || !k.Access.Allows(fsm.GatewayTLV) ||
		(k.ExpiresAt != 0 && time.Now().UnixNano() >= k.ExpiresAt) {
		return nil, ErrKeyNotFound
	}
	if client.Cert == nil {
		return nil, ErrDenied
	}
	if _, err := fsm.AuthorizeClient(k.Access.ClientCerts, []*x509.Certificate{client.Cert}, time.Now()); err != nil {
		return nil, ErrDenied
	}
	if s := c.cached(name, k.Version); s != nil {
		return s, nil
	}
	return c.load(ctx, k, client)
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
		if !fsm.Assembled(k.Type) || k.State == fsm.KeyDestroyed {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.Public)
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
	if a.version != version || time.Now().After(a.expires) {
		delete(c.cache, name)
		return nil
	}
	return a.signer
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
	who := "tlv"
	if client.Addr != nil {
		who = client.Addr.String()
	}
	if client.Cert != nil {
		sum := sha256.Sum256(client.Cert.Raw)
		who += " cert sha256:" + hex.EncodeToString(sum[:])
	}
	der, released, err := c.svc.ReleaseFor(ctx, fsm.GatewayTLV, k.Name, who)
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
	if released.AssembleTTL > 0 {
		c.mu.Lock()
		c.cache[k.Name] = &assembled{version: released.Version, signer: signer, expires: time.Now().Add(released.AssembleTTL)}
		c.mu.Unlock()
	}
	return signer, nil
}
