package grpc

import (
	"context"
	"encoding/base64"
	"net"
	"net/netip"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// TokenMetadata is the gRPC metadata key of a capability token
// (docs/tokens.md), in unpadded base64url, on Release, Sign,
// TransitDecrypt, TransitDerive, TransitExport and TransitExchange: the
// call then needs no operator certificate. The request's SignedCommand
// carries the token's operator as signer, the payload the token is bound
// to, and no signature.
const TokenMetadata = "keyquorum-token"

// tokenMethods take a capability token in place of an operator.
var tokenMethods = map[string]bool{
	keyquorumv1.ClusterService_Release_FullMethodName:         true,
	keyquorumv1.ClusterService_Sign_FullMethodName:            true,
	keyquorumv1.ClusterService_TransitDecrypt_FullMethodName:  true,
	keyquorumv1.ClusterService_TransitDerive_FullMethodName:   true,
	keyquorumv1.ClusterService_TransitExport_FullMethodName:   true,
	keyquorumv1.ClusterService_TransitExchange_FullMethodName: true,
}

type tokenKey struct{}

// admitToken lets a call of a tokenMethods method with a token in its
// metadata through without an operator: every node that acts on the
// request verifies the token. ok is false when the call carries none.
func admitToken(ctx context.Context, method string) (context.Context, bool, error) {
	if !tokenMethods[method] {
		return ctx, false, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(TokenMetadata)
	if len(vals) == 0 {
		return ctx, false, nil
	}
	tok, err := base64.RawURLEncoding.DecodeString(vals[0])
	if len(vals) != 1 || err != nil || len(tok) == 0 {
		return ctx, false, cluster.Errorf(cluster.KindInvalid, "the %s metadata is one capability token in unpadded base64url", TokenMetadata)
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			ctx = cluster.WithCaller(ctx, ap.Addr().Unmap())
		} else if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			if a, err := netip.ParseAddr(host); err == nil {
				ctx = cluster.WithCaller(ctx, a.Unmap())
			}
		}
	}
	return context.WithValue(ctx, tokenKey{}, tok), true, nil
}

// checkRequest is the gateway's check of a request of a tokenMethods
// method: with the call's token, a release command that carries it;
// otherwise signed by the operator of the client certificate.
func checkRequest(ctx context.Context, sg *fsm.Signed) error {
	if tok, ok := ctx.Value(tokenKey{}).([]byte); ok {
		sg.Token = tok
		return cluster.CheckTokenRequest(sg)
	}
	return cluster.CheckSigned(principal(ctx), sg, fsm.TypeRelease)
}
