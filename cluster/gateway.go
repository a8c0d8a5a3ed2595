package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Legacy gateways (kxd, Tang, Keyless SSL) serve clients that cannot sign
// a request. The node that terminates such a client authorizes it itself,
// by the key's access rules, and then signs the release as a node, naming
// its gateway; every holder checks that the key's access names that
// gateway (fsm.State.AuthorizeRelease). docs/threat-model.md: a node can
// only release, for these protocols, the keys an operator opened to them.

// ReleaseFor releases a key's material for a client of one of this node's
// legacy gateways, which has authorized the client itself. client
// describes the client for the holders' logs. It returns the key's
// metadata at the read that authorized the release.
func (n *Node) ReleaseFor(ctx context.Context, gateway, name, client string) (_ []byte, _ *fsm.Key, err error) {
	ctx = metrics.WithGateway(ctx, gateway)
	defer func(start time.Time) { n.observe(ctx, opRelease, name, start, err) }(time.Now())
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpGet, Gateway: gateway, Client: client}})
	if err != nil {
		return nil, nil, Errorf(KindInternal, "signing the release: %v", err)
	}
	return n.release(ctx, sg)
}

// LocalKey is a key's metadata as this node has applied it, without asking
// a quorum; nil if there is no such key. Gateways find keys with it and
// then ask a quorum, whose holders check again.
func (n *Node) LocalKey(name string) *fsm.Key {
	var k *fsm.Key
	n.fsm.Read(func(s *fsm.State) {
		if key := s.ResolveKey(name); key != nil {
			k = key.Metadata()
		}
	})
	return k
}

// LocalTangKey is the metadata of the Tang key whose exchange key is kid,
// as this node has applied it, or nil.
func (n *Node) LocalTangKey(kid string) *fsm.Key {
	var k *fsm.Key
	n.fsm.Read(func(s *fsm.State) {
		if key := s.TangKeyByKid(kid); key != nil {
			k = key.Metadata()
		}
	})
	return k
}

// LocalTangKeys is the metadata of the Tang keys not destroyed, as this
// node has applied them, by name.
func (n *Node) LocalTangKeys() []*fsm.Key {
	var out []*fsm.Key
	n.fsm.Read(func(s *fsm.State) {
		for _, k := range s.TangKeys() {
			out = append(out, k.Metadata())
		}
	})
	return out
}

// LocalKeys is the metadata of every key as this node has applied it,
// without asking a quorum, and the applied index it was read at.
func (n *Node) LocalKeys() ([]*fsm.Key, uint64) {
	var out []*fsm.Key
	var applied uint64
	n.fsm.Read(func(s *fsm.State) {
		applied = s.Applied
		for _, k := range s.Keys {
			out = append(out, k.Metadata())
		}
	})
	return out, applied
}

// TangShareContext binds a Tang share sealed to a node to the cluster and
// the key's exchange key id (api.TangShareContext).
func TangShareContext(clusterID, kid string) []byte { return api.TangShareContext(clusterID, kid) }

// exchangeContext binds a Tang partial's proof to one request.
func exchangeContext(clusterID string, key *fsm.Key, req *fsm.Signed) []byte {
	h := sha256.New()
	h.Write([]byte(vocab.LabelExchange + "\x00" + clusterID + "\x00" + key.Name + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, key.Version))
	h.Write(req.Payload)
	return h.Sum(nil)
}

// Exchange multiplies a client's P-256 point (uncompressed) by a Tang
// key's secret, by quorum, for this node's Tang gateway: t of the key's
// share holders each return s_i*X with a proof, and the node combines them.
// The secret is never rebuilt.
func (n *Node) Exchange(ctx context.Context, name string, point []byte, client string) (_ []byte, err error) {
	ctx = metrics.WithGateway(ctx, fsm.GatewayTang)
	defer func(start time.Time) { n.observe(ctx, opExchange, name, start, err) }(time.Now())
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpExchange, Gateway: fsm.GatewayTang, Client: client, Point: point}})
	if err != nil {
		return nil, Errorf(KindInternal, "signing the exchange: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	// A Tang key has share holders and a threshold of its own.
	public := map[uint32][]byte{}
	a, err := n.coordinatorRead(ctx, sg, func(s *fsm.State, a *authorized, refused *fsm.Error) {
		if refused != nil {
			return
		}
		a.holders, a.threshold = nil, a.key.Tang().Threshold
		for _, sh := range a.key.Tang().Shares {
			// A removed node keeps its share but is asked no more.
			if node := s.Nodes[sh.NodeID]; node != nil && !node.Leaving && node.Index == sh.Index {
				a.holders = append(a.holders, *node)
				public[sh.Index] = sh.PublicShare
			}
		}
	})
	if err != nil {
		return nil, err
	}
	xctx := exchangeContext(a.clusterID, a.key, sg)
	call := holderCall[shamir.P256Partial]{path: "/internal/v1/exchange", local: n.answerExchange,
		index: func(p *shamir.P256Partial) uint32 { return p.Index }}
	return gather(ctx, n, a, call, a.partialFor(0), "%d of the tang key's share holders are still members, %d needed", nil, func(own, others []*shamir.P256Partial) ([]byte, error) {
		for _, p := range others {
			if err := shamir.VerifyP256Partial(public[p.Index], point, p, xctx); err != nil {
				return nil, fmt.Errorf("partial of share %d: %w", p.Index, err)
			}
		}
		return shamir.CombineP256(append(own, others...), a.threshold)
	})
}

func (n *Node) handleExchange(w http.ResponseWriter, r *http.Request) {
	var req partialRequest
	if err := readPartialRequest(r, &req); err != nil {
		writeRPC(w, nil, err)
		return
	}
	p, err := n.answerExchange(r.Context(), &req)
	writeRPC(w, p, err)
}

// answerExchange is a Tang share holder's side of an exchange: the same
// checks as for a release, at the coordinator's read index, then s_i*X with
// a proof. The share is the one of the epoch the checks were made at, from
// the node's share store (resharing rounds put it there and erase it with
// the epoch), or still sealed in the state to the node's identity key for
// a key no round has reshared yet.
func (n *Node) answerExchange(ctx context.Context, req *partialRequest) (*shamir.P256Partial, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	g, err := n.authorizeAsHolder(ctx, req)
	if err != nil {
		return nil, err
	}
	cmd, key, clusterID := g.cmd, g.key, g.clusterID
	var mine *fsm.TangShare
	if key.Tang() != nil {
		for _, sh := range key.Tang().Shares {
			if sh.NodeID == n.id.NodeID {
				mine = &sh
			}
		}
	}
	if mine == nil {
		return nil, Errorf(KindNoQuorum, "node %s holds no share of tang key %q", n.id.NodeID, key.Name)
	}
	share, err := n.tangShare(clusterID, g.epoch, key.Tang(), mine)
	if err != nil {
		return nil, Errorf(KindNoQuorum, "node %s has no usable share of tang key %q: %v", n.id.NodeID, key.Name, err)
	}
	defer share.Erase()
	p, err := shamir.ComputeP256Partial(rand.Reader, share, cmd.Release.Point, exchangeContext(clusterID, key, req.Request))
	if err != nil {
		return nil, Errorf(KindInvalid, "exchange: %v", err)
	}
	return p, nil
}
