package https

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// Legacy adapts a cluster node to the kxd and Tang endpoints. It finds
// keys in the node's applied state, checks the key's access rules for the
// client (the terminating node is the only one that sees the client), and
// asks a quorum, whose holders check that the key is open to the gateway.
type Legacy struct {
	svc cluster.LegacyService
	// defaultTang names the Tang key served at /adv with no thumbprint;
	// when empty, the only active Tang key is.
	defaultTang string
	limits      rateLimits
}

// NewLegacy makes the adapter for a node; defaultTang is as for
// WithDefaultTang.
func NewLegacy(svc cluster.LegacyService, defaultTang string) *Legacy {
	return &Legacy{svc: svc, defaultTang: defaultTang, limits: rateLimits{buckets: map[string]*bucket{}}}
}

var (
	_ KxdKeys  = (*Legacy)(nil)
	_ TangKeys = (*Legacy)(nil)
)

// open finds a key open to a gateway. A key that is not open to it is
// reported as unknown, so the gateway reveals nothing of it.
func (l *Legacy) open(gateway, name string) (*fsm.Key, error) {
	k := l.svc.LocalKey(name)
	if k == nil || k.State == fsm.KeyDestroyed || !k.Access.Allows(gateway) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no key %q is served by the %s gateway", name, gateway)
	}
	return k, nil
}

// KxdPolicy is the key's kxd rules, as this node has applied them.
func (l *Legacy) KxdPolicy(ctx context.Context, path string) (*KxdPolicy, error) {
	k, err := l.open(fsm.GatewayKxd, path)
	if err != nil {
		return nil, err
	}
	return &KxdPolicy{AllowedClients: k.Access.ClientCerts, AllowedHosts: k.Access.Hosts, EmailTo: k.Access.EmailTo}, nil
}

// KxdRelease releases the key by quorum. The rules the handler checked
// were this node's applied state; the release reads linearizably, so if
// the rules changed in between, the key is not given out.
func (l *Legacy) KxdRelease(ctx context.Context, path string, client KxdClient) ([]byte, error) {
	local, err := l.open(fsm.GatewayKxd, path)
	if err != nil {
		return nil, err
	}
	if err := l.limits.take(path, client.Addr.Addr(), local.Access.RatePerMinute); err != nil {
		return nil, err
	}
	who := client.Addr.String()
	if client.Cert != nil {
		sum := sha256.Sum256(client.Cert.Raw)
		who += " cert sha256:" + hex.EncodeToString(sum[:])
	}
	secret, k, err := l.svc.ReleaseFor(ctx, fsm.GatewayKxd, path, who)
	if err != nil {
		return nil, err
	}
	if !sameAccess(local.Access, k.Access) {
		clear(secret)
		return nil, cluster.Errorf(cluster.KindConflict, "the rules of key %q changed while it was released; ask again", path)
	}
	return secret, nil
}

func sameAccess(a, b *fsm.Access) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TangAdv is the advertisement of a Tang key: the named one, or the
// default one when name is empty; thp, when given, must be the key's
// signing key thumbprint.
func (l *Legacy) TangAdv(ctx context.Context, name, thp string) ([]byte, error) {
	k, err := l.tangKey(name)
	if err != nil {
		return nil, err
	}
	if thp != "" && !AdvHasThumbprint(k.Tang.Adv, thp) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has the signing key %q", thp)
	}
	return k.Tang.Adv, nil
}

func (l *Legacy) tangKey(name string) (*fsm.Key, error) {
	if name == "" {
		name = l.defaultTang
	}
	if name != "" {
		k, err := l.open(fsm.GatewayTang, name)
		if err == nil && (k.Tang == nil || k.State != fsm.KeyActive) {
			err = cluster.Errorf(cluster.KindNotFound, "no active tang key %q", name)
		}
		return k, err
	}
	keys, _ := l.svc.LocalKeys()
	var found *fsm.Key
	for _, k := range keys {
		if k.Tang != nil && k.State == fsm.KeyActive && k.Access.Allows(fsm.GatewayTang) {
			if found != nil {
				return nil, cluster.Errorf(cluster.KindNotFound, "several tang keys: ask for one at /tang/NAME/adv, or set a default")
			}
			found = k
		}
	}
	if found == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key")
	}
	return found, nil
}

// TangRecover multiplies the client's point by the Tang key whose exchange
// key is kid, by quorum, after the key's network and rate rules.
func (l *Legacy) TangRecover(ctx context.Context, name, kid string, x []byte, addr netip.Addr) ([]byte, error) {
	k := l.svc.LocalTangKey(kid)
	if k == nil || !k.Access.Allows(fsm.GatewayTang) || (name != "" && k.Name != name) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has kid %q", kid)
	}
	if !inNetworks(addr, k.Access.Networks) {
		return nil, cluster.Errorf(cluster.KindDenied, "%s is outside the networks tang key %q allows", addr, k.Name)
	}
	if err := l.limits.take(k.Name, addr, k.Access.RatePerMinute); err != nil {
		return nil, err
	}
	return l.svc.Exchange(ctx, k.Name, x, addr.String())
}

func inNetworks(addr netip.Addr, networks []string) bool {
	if len(networks) == 0 {
		return true
	}
	addr = addr.Unmap()
	return slices.ContainsFunc(networks, func(n string) bool {
		p, err := netip.ParsePrefix(n)
		return err == nil && p.Contains(addr)
	})
}

// rateLimits are token buckets per key and client address: a bucket holds
// up to a minute's worth of uses and refills continuously.
type rateLimits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func (r *rateLimits) take(key string, addr netip.Addr, perMinute int) error {
	if perMinute <= 0 {
		return nil
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) > time.Minute {
		// A bucket untouched for a minute is full again: forget it.
		for k, b := range r.buckets {
			if now.Sub(b.at) > time.Minute {
				delete(r.buckets, k)
			}
		}
		r.swept = now
	}
	id := key + "\x00" + addr.Unmap().String()
	b := r.buckets[id]
	if b == nil {
		b = &bucket{tokens: float64(perMinute), at: now}
		r.buckets[id] = b
	}
	b.tokens = min(float64(perMinute), b.tokens+now.Sub(b.at).Minutes()*float64(perMinute))
	b.at = now
	if b.tokens < 1 {
		return cluster.Errorf(cluster.KindDenied, "%s used key %q more than %d times a minute", addr, key, perMinute)
	}
	b.tokens--
	return nil
}
