package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	grpcgw "github.com/keyquorum/keyquorum/gateway/grpc"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
	"github.com/keyquorum/keyquorum/shamir"
)

// grpcConn dials node i's gRPC gateway over TCP or QUIC, as the operator
// or, with operator false, without a client certificate.
func (c *localCluster) grpcConn(i int, quic, operator bool) *gogrpc.ClientConn {
	c.t.Helper()
	conf := c.tlsConfig(operator)
	addr := c.gatewayAddr(i, "grpc")
	var conn *gogrpc.ClientConn
	var err error
	if quic {
		conn, err = grpcgw.DialQUIC(addr, conf)
	} else {
		conn, err = gogrpc.NewClient(addr, gogrpc.WithTransportCredentials(credentials.NewTLS(conf)))
	}
	if err != nil {
		c.t.Fatalf("dialing gRPC on node %d: %v", i, err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// operatorSign signs a command with the operator's key (that of its client
// certificate), as keyctl does.
func (c *localCluster) operatorSign(cmd *fsm.Command) *keyquorumv1.SignedCommand {
	c.t.Helper()
	pair, err := tls.LoadX509KeyPair(c.envValue("KEYQUORUM_CLIENT_CERT"), c.envValue("KEYQUORUM_CLIENT_KEY"))
	if err != nil {
		c.t.Fatal(err)
	}
	key, ok := pair.PrivateKey.(ed25519.PrivateKey)
	if !ok {
		c.t.Fatalf("the operator's key is a %T, not Ed25519", pair.PrivateKey)
	}
	cmd.Nonce = make([]byte, 16)
	rand.Read(cmd.Nonce)
	cmd.IssuedAt = time.Now().UnixNano()
	sg, err := fsm.Sign(fsm.PrincipalID(key.Public().(ed25519.PublicKey)), key, cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	return &keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload, Signature: sg.Signature}
}

// grpcTransitReply is a gRPC transit quorum call's answer as
// cluster/api.TransitDecryptReply, which the api.OpenTransit* functions
// check.
func grpcTransitReply(r interface {
	GetClusterId() string
	GetKey() string
	GetEpoch() uint64
	GetThreshold() uint32
	GetPartials() []*keyquorumv1.SealedPartial
}) *api.TransitDecryptReply {
	rep := &api.TransitDecryptReply{ClusterID: r.GetClusterId(), Key: r.GetKey(), Epoch: r.GetEpoch(), Threshold: int(r.GetThreshold())}
	for _, p := range r.GetPartials() {
		rep.Partials = append(rep.Partials, api.SealedPartial{Index: p.GetIndex(), Node: p.GetNode(), R: p.GetR(), Sealed: p.GetSealed()})
	}
	return rep
}

// keyMetadata is key name's metadata as keyctl key show --json prints it
// (what an application pins).
func (c *localCluster) keyMetadata(name string) (*fsm.Key, []byte) {
	c.t.Helper()
	raw := c.mustKeyctl(1, "key", "show", "--json", name).stdout
	var k fsm.Key
	if err := json.Unmarshal(raw, &k); err != nil {
		c.t.Fatalf("key show --json %s: %v", name, err)
	}
	return &k, raw
}

// TestGRPCMachineFlow is klefki's flow through the gRPC gateway of real
// nodes: a registered machine asks and waits, every node lists it, an
// operator submits a passphrase sealed to the machine, the machine gets it
// once; a replay, a bad signature and an unregistered machine are refused.
// The operator API answers over QUIC too, and reflection lists the
// services.
func TestGRPCMachineFlow(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c.mustKeyctl(1, "key", "create", "luks/m1")
	c.mustKeyctl(1, "machine", "add", "m1", "--public-key", base64.StdEncoding.EncodeToString(pub), "--key", "luks/m1")
	id := keyquorumv1.MachineID(pub)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	machine := keyquorumv1.NewMachineServiceClient(c.grpcConn(2, false, false))
	ask := func(key ed25519.PrivateKey, nonce []byte, at time.Time) (*keyquorumv1.GetKeyResponse, error) {
		sig := ed25519.Sign(key, keyquorumv1.GetKeySigningInput(id, nonce, at.UnixNano(), nil))
		return machine.GetKey(ctx, &keyquorumv1.GetKeyRequest{MachineId: id, Nonce: nonce, SignedAt: at.UnixNano(), Signature: sig})
	}
	fresh := func() []byte { n := make([]byte, 16); rand.Read(n); return n }
	// Node 2 checks a machine on its applied state before any read index
	// (an unauthenticated request must not cost a quorum round), so right
	// after machine add it may not know the machine yet: a machine retries,
	// as keyagent does, until the registration reaches that node.
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = ask(priv, fresh(), time.Now()); grpcstatus.Code(err) != codes.Unauthenticated {
			break
		}
	}
	if grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("before any key is submitted: %v, want NotFound", err)
	}
	for i := 1; i <= 3; i++ {
		ops := keyquorumv1.NewMachineServiceClient(c.grpcConn(i, i == 3, true))
		list, err := ops.ListSessions(ctx, &keyquorumv1.ListSessionsRequest{})
		if err != nil || len(list.Sessions) != 1 || list.Sessions[0].MachineId != id {
			t.Fatalf("node %d: sessions %v, %v: want the waiting machine", i, list, err)
		}
	}
	if r := c.keyctl(3, "session", "list"); r.code != 0 || !strings.Contains(string(r.stdout), "m1") {
		t.Errorf("keyctl session list on node 3: %v", r)
	}

	passphrase := []byte("correct horse battery staple")
	ct, err := shamir.Seal(rand.Reader, pub, []byte("klefki"), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	sealed := append(append([]byte{}, ct.R...), ct.Sealed...)
	ops := keyquorumv1.NewMachineServiceClient(c.grpcConn(1, false, true))
	// The operator signs the submit_key with the key of its certificate;
	// the node only relays it.
	submit := c.operatorSign(&fsm.Command{Type: fsm.TypeSubmitKey, SubmitKey: &fsm.SubmittedKey{Machine: fsm.PrincipalID(pub), Sealed: sealed}})
	if _, err := ops.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: sealed, Command: submit}); err != nil {
		t.Fatalf("SubmitKey: %v", err)
	}
	if _, err := keyquorumv1.NewMachineServiceClient(c.grpcConn(1, false, false)).SubmitKey(ctx,
		&keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: sealed, Command: submit}); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Errorf("SubmitKey without an operator certificate: %v, want Unauthenticated", err)
	}

	nonce, at := fresh(), time.Now()
	got, err := ask(priv, nonce, at)
	if err != nil {
		t.Fatalf("GetKey after SubmitKey: %v", err)
	}
	enc, err := shamir.EncryptionKeyFromEd25519(priv)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := shamir.OpenWithKey(enc, &shamir.Ciphertext{R: got.EncryptedKey[:32], Sealed: got.EncryptedKey[32:]}, []byte("klefki"))
	if err != nil || string(plain) != string(passphrase) {
		t.Fatalf("the machine opened %q, %v", plain, err)
	}
	if _, err := ask(priv, nonce, at); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Errorf("the same request replayed: %v, want Unauthenticated", err)
	}
	if _, err := ask(priv, fresh(), time.Now()); grpcstatus.Code(err) != codes.NotFound {
		t.Errorf("a second GetKey: %v, want NotFound: a submitted key is delivered once", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ask(other, fresh(), time.Now()); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Errorf("signed by another key: %v, want Unauthenticated", err)
	}
	if _, err := ask(priv, fresh(), time.Now().Add(-fsm.MaxClockSkew-time.Minute)); err == nil {
		t.Errorf("a request from a clock far behind was answered")
	}

	// The operator API over QUIC, and reflection over TCP.
	if _, err := keyquorumv1.NewClusterServiceClient(c.grpcConn(3, true, true)).Status(ctx, &keyquorumv1.StatusRequest{}); err != nil {
		t.Fatalf("Status over QUIC: %v", err)
	}
	rc := grpc_reflection_v1.NewServerReflectionClient(c.grpcConn(1, false, true))
	stream, err := rc.ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "keyquorum.v1.MachineService") {
		t.Errorf("reflection lists %v", names)
	}
}
