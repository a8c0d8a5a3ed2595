package kxd

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// ClusterKeys adapts a cluster node to the kxd endpoint. It finds keys in
// the node's applied state, has the node's admission check (the same for
// every legacy gateway: cluster.Admission) decide on the client, since the
// terminating node is the only one that sees it, and asks a quorum, whose
// holders check that the key is open to kxd.
type ClusterKeys struct {
	svc cluster.LegacyService
	adm cluster.Admission
}

// NewClusterKeys makes the adapter for a node.
func NewClusterKeys(svc cluster.LegacyService) *ClusterKeys {
	return &ClusterKeys{svc: svc}
}

var _ Keys = (*ClusterKeys)(nil)

// Admit implements Keys with cluster.Admission on the key as this node
// has applied it.
func (l *ClusterKeys) Admit(ctx context.Context, path string, client Client) (*Admitted, error) {
	a, err := l.adm.Admit(ctx, fsm.GatewayKxd, l.svc.LocalKey(path), gatewayClient(client))
	if err != nil {
		return nil, err
	}
	return &Admitted{EmailTo: a.Key.Access().EmailTo, Chains: a.Chains, access: a.Key.Access()}, nil
}

// gatewayClient is what the admission check knows of a kxd client.
func gatewayClient(c Client) cluster.GatewayClient {
	chain := c.Chain
	if len(chain) == 0 && c.Cert != nil {
		chain = []*x509.Certificate{c.Cert}
	}
	return cluster.GatewayClient{Certs: chain, Addr: c.Addr.Addr()}
}

// Release releases the key by quorum. The rules Admit checked were this
// node's applied state; the release reads linearizably, so if the rules
// changed in between, the key is not given out.
func (l *ClusterKeys) Release(ctx context.Context, path string, client Client, admitted *Admitted) ([]byte, error) {
	who := client.Addr.String()
	if client.Cert != nil {
		sum := sha256.Sum256(client.Cert.Raw)
		who += " cert sha256:" + hex.EncodeToString(sum[:])
	}
	secret, k, err := l.svc.ReleaseFor(ctx, fsm.GatewayKxd, path, who)
	if err != nil {
		return nil, err
	}
	if admitted == nil || !admitted.access.Equal(k.Access()) {
		clear(secret)
		return nil, cluster.Errorf(cluster.KindConflict, "the rules of key %q changed while it was released; ask again", path)
	}
	return secret, nil
}
