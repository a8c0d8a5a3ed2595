package grpc

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// TransitEncrypt encrypts each item with the latest version of a transit
// key, here, with its public key (api.TransitEncrypt), for a caller who
// may read the key: a result per item.
func (c *clusterService) TransitEncrypt(ctx context.Context, req *keyquorumv1.TransitEncryptRequest) (_ *keyquorumv1.TransitEncryptResponse, err error) {
	var k *fsm.Key
	if m := c.s.opt.metrics; m != nil {
		defer func(start time.Time) {
			keyType := ""
			if k != nil {
				keyType = k.Type
			}
			m.Observe(ctx, metrics.OpEncrypt, keyType, start, err)
		}(time.Now())
	}
	if req.GetKey() == "" || len(req.GetItems()) == 0 || len(req.GetItems()) > fsm.MaxTransitBatch {
		return nil, cluster.Errorf(cluster.KindInvalid, "a key name and 1 to %d items are required", fsm.MaxTransitBatch)
	}
	if k, err = c.s.svc.Key(ctx, principal(ctx).ID, req.GetKey()); err != nil {
		return nil, err
	}
	out := &keyquorumv1.TransitEncryptResponse{KeyVersion: k.Version}
	for _, it := range req.GetItems() {
		ct, err := api.TransitEncrypt(rand.Reader, k, it.GetPlaintext(), it.GetContext())
		r := &keyquorumv1.TransitResult{Ciphertext: ct}
		if err != nil {
			e, ok := err.(*cluster.Error)
			if !ok {
				e = cluster.Errorf(cluster.KindInternal, "internal error")
			}
			r.ErrorKind, r.Error = string(e.Kind), e.Message
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

// TransitDecrypt relays t holders' sealed answers to a decryption request
// (cluster.TransitService), signed by the operator of the client
// certificate or authorized by the call's capability token
// (TokenMetadata).
func (c *clusterService) TransitDecrypt(ctx context.Context, req *keyquorumv1.TransitDecryptRequest) (*keyquorumv1.TransitDecryptResponse, error) {
	return c.transitQuorum(ctx, req.GetRequest(), cluster.TransitService.TransitDecrypt)
}

// TransitDerive relays t holders' sealed answers to a derivation request
// (cluster.TransitService), as TransitDecrypt: the caller combines and runs
// HKDF (client.TransitDerive; an HMAC key is such a derivation).
func (c *clusterService) TransitDerive(ctx context.Context, req *keyquorumv1.TransitDeriveRequest) (*keyquorumv1.TransitDeriveResponse, error) {
	rep, err := c.transitQuorum(ctx, req.GetRequest(), cluster.TransitService.TransitDerive)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.TransitDeriveResponse{ClusterId: rep.ClusterId, Key: rep.Key, Epoch: rep.Epoch, Threshold: rep.Threshold, Partials: rep.Partials}, nil
}

// TransitExport relays t holders' shares of an exportable transit key's
// version, sealed to the caller (cluster.TransitService), as
// TransitDecrypt: the caller checks, combines and wraps the key
// (client.TransitExport). A token needs flag import.
func (c *clusterService) TransitExport(ctx context.Context, req *keyquorumv1.TransitExportRequest) (*keyquorumv1.TransitExportResponse, error) {
	rep, err := c.transitQuorum(ctx, req.GetRequest(), cluster.TransitService.TransitExport)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.TransitExportResponse{ClusterId: rep.ClusterId, Key: rep.Key, Epoch: rep.Epoch, Threshold: rep.Threshold, Partials: rep.Partials}, nil
}

// TransitExchange relays t holders' sealed answers to an x25519 key's
// exchange request (cluster.TransitService), as TransitDecrypt: the caller
// checks, combines and takes the shared secrets (client.TransitExchange).
// A token needs flag exchange.
func (c *clusterService) TransitExchange(ctx context.Context, req *keyquorumv1.TransitExchangeRequest) (*keyquorumv1.TransitExchangeResponse, error) {
	rep, err := c.transitQuorum(ctx, req.GetRequest(), cluster.TransitService.TransitExchange)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.TransitExchangeResponse{ClusterId: rep.ClusterId, Key: rep.Key, Epoch: rep.Epoch, Threshold: rep.Threshold, Partials: rep.Partials}, nil
}

// transitQuorum checks a request that t holders answer, sealed to the
// caller (checkRequest), and relays it; the node checks its op.
func (c *clusterService) transitQuorum(ctx context.Context, m *keyquorumv1.SignedCommand,
	relay func(cluster.TransitService, context.Context, *fsm.Signed) (*api.TransitDecryptReply, error)) (*keyquorumv1.TransitDecryptResponse, error) {
	sg, err := signedFrom(m, "request")
	if err != nil {
		return nil, err
	}
	if err := checkRequest(ctx, sg); err != nil {
		return nil, err
	}
	ts, ok := c.s.svc.(cluster.TransitService)
	if !ok {
		return nil, cluster.Errorf(cluster.KindInvalid, "this node does not serve transit by quorum")
	}
	rep, err := relay(ts, ctx, sg)
	if err != nil {
		return nil, err
	}
	out := &keyquorumv1.TransitDecryptResponse{ClusterId: rep.ClusterID, Key: rep.Key, Epoch: rep.Epoch, Threshold: uint32(rep.Threshold)}
	for _, p := range rep.Partials {
		out.Partials = append(out.Partials, &keyquorumv1.SealedPartial{Index: p.Index, Node: p.Node, R: p.R, Sealed: p.Sealed})
	}
	return out, nil
}
