package grpc

import (
	"context"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// submitTypes are the command types ClusterService.Submit takes: those of
// the REST API's command endpoints (one type each there), and set_access.
// A release goes to Release and a replace_key only to CompareAndSwap;
// the node-to-node commands are not submitted by operators.
var submitTypes = []string{
	fsm.TypeAddNode, fsm.TypeRemoveNode,
	fsm.TypeAddOperator, fsm.TypeRemoveOperator,
	fsm.TypePutRule, fsm.TypeDeleteRule,
	fsm.TypeCreateKey, fsm.TypeRevokeKey, fsm.TypeDestroyKey,
	fsm.TypeSetAccess,
}

// clusterService is ClusterService onto cluster.Service. Every method runs
// after the interceptor has authenticated the operator.
type clusterService struct {
	keyquorumv1.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterService) Status(ctx context.Context, _ *keyquorumv1.StatusRequest) (*keyquorumv1.StatusResponse, error) {
	st, err := c.s.svc.Status(ctx)
	if err != nil {
		return nil, err
	}
	return statusToProto(st), nil
}

func (c *clusterService) Submit(ctx context.Context, req *keyquorumv1.SubmitRequest) (*keyquorumv1.SubmitResponse, error) {
	sg, err := signedFrom(req.GetCommand(), "command")
	if err != nil {
		return nil, err
	}
	if err := cluster.CheckSigned(principal(ctx), sg, submitTypes...); err != nil {
		return nil, err
	}
	res, err := c.s.svc.Submit(ctx, sg)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.SubmitResponse{Index: res.Index, Key: keyToProto(res.Key)}, nil
}

func (c *clusterService) ListKeys(ctx context.Context, req *keyquorumv1.ListKeysRequest) (*keyquorumv1.ListKeysResponse, error) {
	// The page token is the name of the page's last key, which the caller
	// may read: the service starts after it and checks every key it
	// answers, so a forged token only moves where the page starts.
	keys, next, err := c.s.svc.Keys(ctx, principal(ctx).ID, req.GetPageToken(), int(req.GetPageSize()))
	if err != nil {
		return nil, err
	}
	out := &keyquorumv1.ListKeysResponse{Keys: make([]*keyquorumv1.Key, 0, len(keys)), NextPageToken: next}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyToProto(k))
	}
	return out, nil
}

func (c *clusterService) ShowKey(ctx context.Context, req *keyquorumv1.ShowKeyRequest) (*keyquorumv1.ShowKeyResponse, error) {
	if req.GetName() == "" {
		return nil, cluster.Errorf(cluster.KindInvalid, "a key name is required")
	}
	k, err := c.s.svc.Key(ctx, principal(ctx).ID, req.GetName())
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.ShowKeyResponse{Key: keyToProto(k)}, nil
}

func (c *clusterService) Release(ctx context.Context, req *keyquorumv1.ReleaseRequest) (*keyquorumv1.ReleaseResponse, error) {
	sg, err := signedFrom(req.GetRequest(), "request")
	if err != nil {
		return nil, err
	}
	if err := checkRequest(ctx, sg); err != nil {
		return nil, err
	}
	sr, err := c.s.svc.Release(ctx, sg)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.ReleaseResponse{Sealed: sealedReleaseToProto(sr)}, nil
}

// sealedReleaseToProto is the blind release on the wire; its inverse is
// sealedReleaseFromProto.
func sealedReleaseToProto(sr *cluster.SealedRelease) *keyquorumv1.SealedRelease {
	out := &keyquorumv1.SealedRelease{ClusterId: sr.ClusterID, Key: sr.Key, Version: sr.Version, Epoch: sr.Epoch,
		Threshold: uint32(sr.Threshold), Poly: sr.Poly, R: sr.R, Sealed: sr.Sealed}
	for _, p := range sr.Partials {
		out.Partials = append(out.Partials, &keyquorumv1.SealedPartial{Index: p.Index, Node: p.Node, R: p.R, Sealed: p.Sealed})
	}
	return out
}

// sealedReleaseFromProto is a blind release as a gRPC client decodes it,
// to open it with api.SealedRelease.Open.
func sealedReleaseFromProto(p *keyquorumv1.SealedRelease) *cluster.SealedRelease {
	out := &cluster.SealedRelease{ClusterID: p.GetClusterId(), Key: p.GetKey(), Version: p.GetVersion(), Epoch: p.GetEpoch(),
		Threshold: int(p.GetThreshold()), Poly: p.GetPoly(), R: p.GetR(), Sealed: p.GetSealed()}
	for _, sp := range p.GetPartials() {
		out.Partials = append(out.Partials, cluster.SealedPartial{Index: sp.GetIndex(), Node: sp.GetNode(), R: sp.GetR(), Sealed: sp.GetSealed()})
	}
	return out
}

func (c *clusterService) CompareAndSwap(ctx context.Context, req *keyquorumv1.CompareAndSwapRequest) (*keyquorumv1.CompareAndSwapResponse, error) {
	if req.GetRelease() != nil {
		return nil, cluster.Errorf(cluster.KindInvalid, "the node no longer compares: release the current secret with Release, compare it, and send only the replace (update the client)")
	}
	replace, err := signedFrom(req.GetReplace(), "replace")
	if err != nil {
		return nil, err
	}
	if err := cluster.CheckSigned(principal(ctx), replace, fsm.TypeReplaceKey); err != nil {
		return nil, err
	}
	k, err := c.s.svc.CompareAndSwap(ctx, replace)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.CompareAndSwapResponse{Key: keyToProto(k)}, nil
}

// signedFrom takes a signed command off the wire as it is: the payload is
// the bytes the operator signed and is never re-encoded.
func signedFrom(m *keyquorumv1.SignedCommand, field string) (*fsm.Signed, error) {
	if m == nil {
		return nil, cluster.Errorf(cluster.KindInvalid, "the signed command %s is required", field)
	}
	return &fsm.Signed{Signer: m.GetSigner(), Payload: m.GetPayload(), Signature: m.GetSignature()}, nil
}

func statusToProto(st *cluster.Status) *keyquorumv1.StatusResponse {
	out := &keyquorumv1.StatusResponse{
		ClusterId:    st.ClusterID,
		Node:         st.Node,
		Leader:       st.Leader,
		Epoch:        st.Epoch,
		N:            int32(st.N),
		Threshold:    int32(st.Threshold),
		InitialNodes: int32(st.InitialNodes),
		PublicKey:    st.PublicKey,
		Applied:      st.Applied,
	}
	if r := st.Resharing; r != nil {
		out.Resharing = &keyquorumv1.ReshareStatus{
			Round:     r.Round,
			Fresh:     r.Fresh,
			Threshold: int32(r.Threshold),
			Members:   r.Members,
			Deals:     int32(r.Deals),
			Needed:    int32(r.Needed),
			Acks:      int32(r.Acks),
		}
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, &keyquorumv1.MemberStatus{
			Id:         m.ID,
			ApiAddr:    m.APIAddr,
			RaftAddr:   m.RaftAddr,
			GossipAddr: m.GossipAddr,
			Index:      m.Index,
			Holder:     m.Holder,
			Leaving:    m.Leaving,
			RaftState:  m.RaftState,
			Applied:    m.Applied,
			Health:     m.Health,
			StateHash:  m.StateHash,
		})
	}
	return out
}

// keyToProto converts a key's metadata; material is never put on the wire
// (the service returns keys without it, and this leaves R and Sealed out
// regardless).
func keyToProto(k *fsm.Key) *keyquorumv1.Key {
	if k == nil {
		return nil
	}
	out := &keyquorumv1.Key{
		Name:        k.Name,
		Type:        k.Type,
		Version:     k.Version,
		State:       k.State,
		CreatedAt:   k.CreatedAt,
		UpdatedAt:   k.UpdatedAt,
		ExpiresAt:   k.ExpiresAt,
		Public:      k.Public(),
		AssembleTtl: int64(k.AssembleTTL()),
		Id:          k.ID,
	}
	if tk := k.Transit(); tk != nil {
		out.Transit = &keyquorumv1.TransitKey{Cipher: tk.Cipher, Derived: tk.Derived, MinDecryptionVersion: tk.MinDecryptionVersion}
		for _, v := range tk.Versions {
			if v.Sharing != nil {
				out.Transit.Versions = append(out.Transit.Versions, &keyquorumv1.TransitVersion{Version: v.Version,
					Threshold: uint32(v.Sharing.Threshold), Epoch: v.Sharing.Epoch, Commits: v.Sharing.Commits})
			}
		}
	}
	if a := k.Access(); a != nil {
		out.Access = &keyquorumv1.Access{
			Gateways:      a.Gateways,
			ClientCerts:   a.ClientCerts,
			Networks:      a.Networks,
			EmailTo:       a.EmailTo,
			RatePerMinute: int32(a.RatePerMinute),
		}
		if a.Hosts != nil {
			out.Access.Hosts = &keyquorumv1.HostList{Hosts: a.Hosts}
		}
	}
	if t := k.Tang(); t != nil {
		out.Tang = &keyquorumv1.TangKey{Adv: t.Adv, Kid: t.Kid, Thp: t.Thp, Threshold: int32(t.Threshold)}
		for _, sh := range t.Shares {
			out.Tang.Shares = append(out.Tang.Shares, &keyquorumv1.TangShare{NodeId: sh.NodeID, Index: sh.Index, PublicShare: sh.PublicShare})
		}
	}
	return out
}

// Sign makes a signature by quorum, or with an assembled ECDSA key on
// the coordinating node (cluster.SignService), for the operator's signed
// request, op sign.
func (c *clusterService) Sign(ctx context.Context, req *keyquorumv1.SignRequest) (*keyquorumv1.SignResponse, error) {
	sg, err := signedFrom(req.GetRequest(), "request")
	if err != nil {
		return nil, err
	}
	if err := checkRequest(ctx, sg); err != nil {
		return nil, err
	}
	sv, ok := c.s.svc.(cluster.SignService)
	if !ok {
		return nil, cluster.Errorf(cluster.KindInvalid, "this node does not sign by quorum")
	}
	sig, err := sv.Sign(ctx, sg)
	if err != nil {
		return nil, err
	}
	return &keyquorumv1.SignResponse{Key: sig.Key, Version: sig.Version, Type: sig.Type, PublicKey: sig.PublicKey,
		Signature: sig.Signature, Signers: sig.Signers, Failed: sig.Failed}, nil
}

// Verify checks a signature with the key's public key
// (api.VerifySignature), for a caller who may read the key.
func (c *clusterService) Verify(ctx context.Context, req *keyquorumv1.VerifyRequest) (*keyquorumv1.VerifyResponse, error) {
	if req.GetKey() == "" {
		return nil, cluster.Errorf(cluster.KindInvalid, "a key name is required")
	}
	k, err := c.s.svc.Key(ctx, principal(ctx).ID, req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := api.VerifySignature(k, req.GetMessage(), req.GetSignature(), req.GetPadding()); err != nil {
		return &keyquorumv1.VerifyResponse{Error: err.Error()}, nil
	}
	return &keyquorumv1.VerifyResponse{Valid: true}, nil
}
