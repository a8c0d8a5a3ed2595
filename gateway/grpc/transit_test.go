package grpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// transitCall is what the fake's TransitDecrypt, TransitDerive,
// TransitExport or TransitExchange got.
type transitCall struct {
	op      string
	token   []byte
	gateway string // metrics.GatewayOf the call's context: the node's metrics label
}

func (f *fakeService) TransitDecrypt(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return f.transit(ctx, sg, fsm.OpDecrypt)
}

func (f *fakeService) TransitDerive(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return f.transit(ctx, sg, fsm.OpDerive)
}

func (f *fakeService) TransitExport(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return f.transit(ctx, sg, fsm.OpExport)
}

func (f *fakeService) TransitExchange(ctx context.Context, sg *fsm.Signed) (*api.TransitDecryptReply, error) {
	return f.transit(ctx, sg, fsm.OpExchange)
}

// transit answers a request a node would relay to t holders: one with a
// token as it came (the holders verify the token), else verified as a
// holder does; the op must be the call's, as the node requires.
func (f *fakeService) transit(ctx context.Context, sg *fsm.Signed, op string) (*api.TransitDecryptReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cmd *fsm.Command
	if len(sg.Token) > 0 {
		if len(sg.Signature) != 0 {
			return nil, cluster.Errorf(cluster.KindInvalid, "a request with a token and a signature")
		}
		cmd = new(fsm.Command)
		if err := json.Unmarshal(sg.Payload, cmd); err != nil {
			return nil, cluster.Errorf(cluster.KindInvalid, "payload: %v", err)
		}
	} else {
		var err error
		if cmd, err = f.verify(sg); err != nil {
			return nil, err
		}
	}
	if cmd.Release == nil || cmd.Release.Op != op {
		return nil, cluster.Errorf(cluster.KindInvalid, "not a release with op %s", op)
	}
	f.transitCalls = append(f.transitCalls, transitCall{op: op, token: slices.Clone(sg.Token), gateway: metrics.GatewayOf(ctx)})
	return &api.TransitDecryptReply{ClusterID: "c1", Key: cmd.Release.Key, Epoch: 3, Threshold: 2,
		Partials: []api.SealedPartial{{Index: 1, Node: "n1", R: []byte("r1"), Sealed: []byte("p1")}, {Index: 3, Node: "n3", R: []byte("r3"), Sealed: []byte("p3")}}}, nil
}

func (f *fakeService) lastTransit() transitCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.transitCalls[len(f.transitCalls)-1]
}

// TestTransitQuorumCalls: TransitDecrypt, TransitDerive, TransitExport and
// TransitExchange relay a request signed by the operator of the client
// certificate, or one that the capability token in the call's metadata
// authorizes, with no client certificate; the node gets the token as it
// came and the call labelled as the gRPC gateway's in its metrics. Neither
// credential is refused before the node, as is a token on what is not a
// release request, and each call relays only its own op.
func TestTransitQuorumCalls(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := newEnv(t, false, WithMetrics(metrics.New()))
			ctx := context.Background()
			withCert := keyquorumv1.NewClusterServiceClient(e.dial(t, tr, &e.pki.admin.cert))
			bare := keyquorumv1.NewClusterServiceClient(e.dial(t, tr, nil))
			tok := []byte("a bound capability token")
			withToken := metadata.AppendToOutgoingContext(ctx, TokenMetadata, base64.RawURLEncoding.EncodeToString(tok))
			type reply interface {
				GetClusterId() string
				GetKey() string
				GetEpoch() uint64
				GetThreshold() uint32
				GetPartials() []*keyquorumv1.SealedPartial
			}
			calls := map[string]func(context.Context, keyquorumv1.ClusterServiceClient, *keyquorumv1.SignedCommand) (reply, error){
				fsm.OpDecrypt: func(ctx context.Context, c keyquorumv1.ClusterServiceClient, sg *keyquorumv1.SignedCommand) (reply, error) {
					return c.TransitDecrypt(ctx, &keyquorumv1.TransitDecryptRequest{Request: sg})
				},
				fsm.OpDerive: func(ctx context.Context, c keyquorumv1.ClusterServiceClient, sg *keyquorumv1.SignedCommand) (reply, error) {
					return c.TransitDerive(ctx, &keyquorumv1.TransitDeriveRequest{Request: sg})
				},
				fsm.OpExport: func(ctx context.Context, c keyquorumv1.ClusterServiceClient, sg *keyquorumv1.SignedCommand) (reply, error) {
					return c.TransitExport(ctx, &keyquorumv1.TransitExportRequest{Request: sg})
				},
				fsm.OpExchange: func(ctx context.Context, c keyquorumv1.ClusterServiceClient, sg *keyquorumv1.SignedCommand) (reply, error) {
					return c.TransitExchange(ctx, &keyquorumv1.TransitExchangeRequest{Request: sg})
				},
			}
			for op, call := range calls {
				rel := &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "app/t", Op: op, Ephemeral: make([]byte, 32)}}
				rep, err := call(ctx, withCert, sign(t, e.pki.admin, rel))
				if err != nil {
					t.Fatalf("%s signed: %v", op, err)
				}
				if rep.GetClusterId() != "c1" || rep.GetKey() != "app/t" || rep.GetEpoch() != 3 || rep.GetThreshold() != 2 ||
					len(rep.GetPartials()) != 2 || rep.GetPartials()[1].GetIndex() != 3 || rep.GetPartials()[1].GetNode() != "n3" ||
					!bytes.Equal(rep.GetPartials()[1].GetR(), []byte("r3")) || !bytes.Equal(rep.GetPartials()[1].GetSealed(), []byte("p3")) {
					t.Fatalf("%s: reply %v", op, rep)
				}
				if got := e.svc.lastTransit(); got.op != op || got.token != nil || got.gateway != Gateway {
					t.Fatalf("%s signed: the node got %+v", op, got)
				}

				unsigned := sign(t, e.pki.admin, rel)
				unsigned.Signature = nil
				if _, err := call(withToken, bare, unsigned); err != nil {
					t.Fatalf("%s with a token: %v", op, err)
				}
				if got := e.svc.lastTransit(); got.op != op || !bytes.Equal(got.token, tok) || got.gateway != Gateway {
					t.Fatalf("%s with a token: the node got %+v", op, got)
				}

				_, err = call(ctx, bare, unsigned)
				wantKind(t, op+" with neither token nor certificate", err, cluster.KindUnauthenticated)
				notRelease := &keyquorumv1.SignedCommand{Signer: e.pki.admin.id, Payload: []byte(`{"type":"create_key"}`)}
				_, err = call(withToken, bare, notRelease)
				wantKind(t, op+" with a token on another command", err, cluster.KindInvalid)
				_, err = call(metadata.AppendToOutgoingContext(ctx, TokenMetadata, "not base64url!"), bare, unsigned)
				wantKind(t, op+" with a malformed token", err, cluster.KindInvalid)
			}
			// Each call relays only its own op: the node checks.
			for op, call := range calls {
				for other := range calls {
					if other == op {
						continue
					}
					sg := sign(t, e.pki.admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "app/t", Op: other, Ephemeral: make([]byte, 32)}})
					_, err := call(ctx, withCert, sg)
					wantKind(t, "op "+other+" sent to the "+op+" call", err, cluster.KindInvalid)
				}
			}
		})
	}
}
