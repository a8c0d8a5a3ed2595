package tang

import (
	"context"
	"net/netip"

	"github.com/keyquorum/keyquorum/client/jose"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// ClusterKeys adapts a cluster node to the Tang endpoints. It finds keys
// in the node's applied state, has the admission check every legacy
// gateway shares (cluster.Admission) decide on the client, since the
// terminating node is the only one that sees it, and asks a quorum, whose
// holders check that the key is open to Tang. A Tang client has no
// certificate: a key that lists client certificates refuses it.
type ClusterKeys struct {
	svc cluster.LegacyService
	// defaultTang names the Tang key served at /adv with no thumbprint;
	// when empty, the only active Tang key is.
	defaultTang string
	adm         cluster.Admission
}

// NewClusterKeys makes the adapter for a node. defaultTang names the Tang
// key served at /adv and /rec without a key name; when empty, it is the
// only active Tang key, if there is one.
func NewClusterKeys(svc cluster.LegacyService, defaultTang string) *ClusterKeys {
	return &ClusterKeys{svc: svc, defaultTang: defaultTang}
}

var _ Keys = (*ClusterKeys)(nil)

// open finds a key open to a gateway. A key that is not open to it is
// reported as unknown, so the gateway reveals nothing of it.
func (l *ClusterKeys) open(gateway, name string) (*fsm.Key, error) {
	k := l.svc.LocalKey(name)
	if k == nil || k.State == fsm.KeyDestroyed || !k.Access().Allows(gateway) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no key %q is served by the %s gateway", name, gateway)
	}
	return k, nil
}

// Adv is the advertisement of a Tang key: the named one, or the
// default one when name is empty; thp, when given, must be the key's
// signing key thumbprint.
func (l *ClusterKeys) Adv(ctx context.Context, name, thp string) ([]byte, error) {
	k, err := l.tangKey(name)
	if err != nil {
		return nil, err
	}
	if thp != "" && !jose.AdvHasThumbprint(k.Tang().Adv, thp) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has the signing key %q", thp)
	}
	return k.Tang().Adv, nil
}

func (l *ClusterKeys) tangKey(name string) (*fsm.Key, error) {
	if name == "" {
		name = l.defaultTang
	}
	if name != "" {
		k, err := l.open(fsm.GatewayTang, name)
		if err == nil && (k.Tang() == nil || k.State != fsm.KeyActive) {
			err = cluster.Errorf(cluster.KindNotFound, "no active tang key %q", name)
		}
		return k, err
	}
	var found *fsm.Key
	for _, k := range l.svc.LocalTangKeys() {
		if k.Tang() != nil && k.State == fsm.KeyActive && k.Access().Allows(fsm.GatewayTang) {
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

// Recover multiplies the client's point by the Tang key whose exchange
// key is kid, by quorum, once the admission check allows the client.
func (l *ClusterKeys) Recover(ctx context.Context, name, kid string, x []byte, addr netip.Addr) ([]byte, error) {
	k := l.svc.LocalTangKey(kid)
	if k == nil || (name != "" && k.Name != name) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has kid %q", kid)
	}
	if _, err := l.adm.Admit(ctx, fsm.GatewayTang, k, cluster.GatewayClient{Addr: addr}); err != nil {
		if cluster.KindOf(err) == cluster.KindNotFound {
			return nil, cluster.Errorf(cluster.KindNotFound, "no tang key has kid %q", kid)
		}
		return nil, err
	}
	return l.svc.Exchange(ctx, k.Name, x, addr.String())
}
