package cluster

import (
	"context"
	"crypto/rand"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// PossessionService answers a client's challenge with this node's proof
// that it holds its share of the current epoch (see cluster/api
// possession.go): client.Confirm and keyagent enroll --confirm ask every
// holder of the view they confirm. *Node implements it.
type PossessionService interface {
	ProvePossession(ctx context.Context, nonce []byte) (*api.Possession, error)
}

var _ PossessionService = (*Node)(nil)

// ProvePossession answers the challenge nonce with this node's partial
// and DLEQ proof for its share of the epoch its state is at, and that
// epoch's public polynomial. A node that holds no share of that epoch
// says so (conflict).
func (n *Node) ProvePossession(ctx context.Context, nonce []byte) (*api.Possession, error) {
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	if len(nonce) != api.PossessionNonceSize {
		return nil, Errorf(KindInvalid, "a challenge's nonce is %d bytes, not %d", len(nonce), api.PossessionNonceSize)
	}
	var (
		clusterID string
		epoch     uint64
		poly      [][]byte
		index     uint32
		holder    bool
	)
	n.fsm.Read(func(s *fsm.State) {
		clusterID, epoch, poly = s.ClusterID, s.Epoch, s.Poly
		if me := s.Nodes[n.id.NodeID]; me != nil {
			index, holder = me.Index, me.Holder
		}
	})
	if epoch == 0 || len(poly) == 0 {
		return nil, Errorf(KindConflict, "the cluster key does not exist yet: wait for the first key epoch")
	}
	if !holder {
		return nil, Errorf(KindConflict, "node %s holds no share of key epoch %d", n.id.NodeID, epoch)
	}
	share := n.shares.current(epoch)
	if share == nil || share.Index != index {
		share.Erase()
		return nil, Errorf(KindConflict, "node %s does not have its share of key epoch %d yet", n.id.NodeID, epoch)
	}
	defer share.Erase()
	return api.ProvePossession(rand.Reader, share, clusterID, epoch, n.id.NodeID, poly, nonce)
}
