package kxd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/ratelimit"
	"github.com/keyquorum/keyquorum/fsm"
)

// ClusterKeys adapts a cluster node to the kxd endpoint. It finds keys in
// the node's applied state, checks the key's access rules for the client
// (the terminating node is the only one that sees the client), and asks a
// quorum, whose holders check that the key is open to kxd.
type ClusterKeys struct {
	svc    cluster.LegacyService
	limits ratelimit.Limits
}

// NewClusterKeys makes the adapter for a node.
func NewClusterKeys(svc cluster.LegacyService) *ClusterKeys {
	return &ClusterKeys{svc: svc}
}

var _ Keys = (*ClusterKeys)(nil)

// open finds a key open to kxd. A key that is not open to it is reported
// as unknown, so the gateway reveals nothing of it.
func (l *ClusterKeys) open(name string) (*fsm.Key, error) {
	k := l.svc.LocalKey(name)
	if k == nil || k.State == fsm.KeyDestroyed || !k.Access.Allows(fsm.GatewayKxd) {
		return nil, cluster.Errorf(cluster.KindNotFound, "no key %q is served by the %s gateway", name, fsm.GatewayKxd)
	}
	return k, nil
}

// Policy is the key's kxd rules, as this node has applied them.
func (l *ClusterKeys) Policy(ctx context.Context, path string) (*Policy, error) {
	k, err := l.open(path)
	if err != nil {
		return nil, err
	}
	return &Policy{AllowedClients: k.Access.ClientCerts, AllowedHosts: k.Access.Hosts, EmailTo: k.Access.EmailTo}, nil
}

// Release releases the key by quorum. The rules the handler checked were
// this node's applied state; the release reads linearizably, so if the
// rules changed in between, the key is not given out.
func (l *ClusterKeys) Release(ctx context.Context, path string, client Client) ([]byte, error) {
	local, err := l.open(path)
	if err != nil {
		return nil, err
	}
	if err := l.limits.Take(path, client.Addr.Addr(), local.Access.RatePerMinute); err != nil {
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
