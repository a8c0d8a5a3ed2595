package grpc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

func TestMain(m *testing.M) {
	// quic-go warns once that it cannot enlarge the UDP buffers; on
	// loopback that does not matter.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	os.Exit(m.Run())
}

// --- certificates ---

type operator struct {
	id   string
	key  ed25519.PrivateKey
	cert tls.Certificate
}

type testPKI struct {
	ca     *cluster.CA
	server tls.Certificate
	admin  operator // a registered admin operator
	reader operator // a registered operator that may read nothing
	// refused certificates, each for a different reason
	noOperator tls.Certificate // the node role, of the cluster CA
	foreign    tls.Certificate // the operator role and admin's key, of another CA
	unknown    tls.Certificate // the operator role, of the cluster CA, for a key no operator has
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func issue(t testing.TB, ca *cluster.CA, key ed25519.PrivateKey, role, id string, hosts []string) tls.Certificate {
	t.Helper()
	certPEM, err := ca.Issue(key.Public().(ed25519.PublicKey), role, id, hosts)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := cluster.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}

func newOperator(t testing.TB, ca *cluster.CA) operator {
	key := newKey(t)
	id := fsm.PrincipalID(key.Public().(ed25519.PublicKey))
	return operator{id: id, key: key, cert: issue(t, ca, key, cluster.RoleOperator, id, nil)}
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := cluster.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := cluster.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, admin: newOperator(t, ca), reader: newOperator(t, ca)}
	p.server = issue(t, ca, newKey(t), cluster.RoleNode, "node-1", []string{"127.0.0.1"})
	p.noOperator = issue(t, ca, newKey(t), cluster.RoleNode, "node-2", nil)
	p.foreign = issue(t, other, p.admin.key, cluster.RoleOperator, p.admin.id, nil)
	unknown := newKey(t)
	p.unknown = issue(t, ca, unknown, cluster.RoleOperator, fsm.PrincipalID(unknown.Public().(ed25519.PublicKey)), nil)
	return p
}

// --- a fake cluster.Service with real behaviour for a few keys ---

// fakeService keeps keys in memory. Secrets are "sealed" as themselves:
// the gateway never looks inside. It verifies every signature, so a
// payload re-encoded on the way would be refused.
type fakeService struct {
	ops map[string]*fsm.Operator

	mu             sync.Mutex
	caPEM, nodePEM []byte
	index          uint64
	keys           map[string]*fsm.Key
	secrets        map[string][]byte
	received       [][]byte // payloads as Submit, Release and CompareAndSwap got them
	transitCalls   []transitCall
}

func newFakeService(p *testPKI) *fakeService {
	f := &fakeService{
		caPEM:   p.ca.CertPEM,
		nodePEM: []byte("node certificate"),
		ops:     map[string]*fsm.Operator{},
		keys:    map[string]*fsm.Key{},
		secrets: map[string][]byte{},
	}
	for _, o := range []struct {
		op    operator
		admin bool
	}{{p.admin, true}, {p.reader, false}} {
		pub := o.op.key.Public().(ed25519.PublicKey)
		f.ops[o.op.id] = &fsm.Operator{ID: o.op.id, Name: "op", PublicKey: pub, Admin: o.admin}
	}
	return f
}

func (f *fakeService) Identity() cluster.Identity { return cluster.Identity{NodeID: "node-1"} }

func (f *fakeService) Membership() ([]byte, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caPEM, f.nodePEM
}

func (f *fakeService) Start(context.Context, *cluster.StartRequest) error {
	return cluster.Errorf(cluster.KindInvalid, "already joined")
}

func (f *fakeService) Status(context.Context) (*cluster.Status, error) {
	return &cluster.Status{
		ClusterID: "c1", Node: "node-1", Leader: "node-2", Epoch: 3, N: 3, Threshold: 2, InitialNodes: 3,
		PublicKey: []byte{1, 2, 3}, Applied: 42,
		Resharing: &cluster.RoundStatus{Round: 40, Threshold: 2, Members: []string{"node-1", "node-2"}, Deals: 1, Needed: 2, Acks: 0},
		Members: []cluster.MemberStatus{
			{ID: "node-1", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", GossipAddr: "127.0.0.1:3", Index: 1, Holder: true, RaftState: "Follower", Applied: 42, Health: "alive", StateHash: "ab"},
			{ID: "node-2", Index: 2, Holder: true, Leaving: true, RaftState: "unreachable", Health: "suspect"},
		},
	}, nil
}

// verify checks a signed command the way a share holder does, and
// decodes it.
func (f *fakeService) verify(sg *fsm.Signed) (*fsm.Command, error) {
	op := f.ops[sg.Signer]
	if op == nil {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "unknown signer %s", sg.Signer)
	}
	if !ed25519.Verify(op.PublicKey, fsm.SigningInput(sg.Payload), sg.Signature) {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "bad signature")
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return nil, cluster.Errorf(cluster.KindInvalid, "payload: %v", err)
	}
	f.received = append(f.received, slices.Clone(sg.Payload))
	return &cmd, nil
}

// payload is the i-th payload the service got.
func (f *fakeService) payload(i int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received[i]
}

func (f *fakeService) Submit(_ context.Context, sg *fsm.Signed) (*fsm.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd, err := f.verify(sg)
	if err != nil {
		return nil, err
	}
	f.index++
	res := &fsm.Result{Index: f.index}
	name := cmd.RevokeKey + cmd.DestroyKey
	switch cmd.Type {
	case fsm.TypeCreateKey:
		ck := cmd.CreateKey
		if f.keys[ck.Name] != nil {
			return nil, cluster.Errorf(cluster.KindExists, "key %q exists", ck.Name)
		}
		k := &fsm.Key{Name: ck.Name, Type: ck.Type, Version: 1, State: fsm.KeyActive, CreatedAt: 100, UpdatedAt: 100,
			ExpiresAt: ck.ExpiresAt, KeyDetail: &fsm.KeyDetail{Public: ck.Public, AssembleTTL: ck.AssembleTTL, Access: ck.Access}}
		f.keys[ck.Name] = k
		f.secrets[ck.Name] = ck.Sealed
		res.Key = k.Metadata()
	case fsm.TypeRevokeKey, fsm.TypeDestroyKey:
		k := f.keys[name]
		if k == nil {
			return nil, cluster.Errorf(cluster.KindNotFound, "key %q does not exist", name)
		}
		k.Version++
		k.State = fsm.KeyRevoked
		if cmd.Type == fsm.TypeDestroyKey {
			k.State = fsm.KeyDestroyed
			delete(f.secrets, name)
		}
		res.Key = k.Metadata()
	}
	return res, nil
}

func (f *fakeService) mayRead(principal string) bool {
	return f.ops[principal] != nil && f.ops[principal].Admin
}

func (f *fakeService) Keys(_ context.Context, principal, after string, limit int) ([]*fsm.Key, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fsm.Key
	if f.mayRead(principal) {
		for _, k := range f.keys {
			if k.Name > after {
				out = append(out, k.Metadata())
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if limit < 0 {
		return nil, "", cluster.Errorf(cluster.KindInvalid, "a page limit must not be negative")
	}
	if limit == 0 {
		limit = 2 // small pages, so that a client must follow them
	}
	if len(out) > limit {
		return out[:limit], out[limit-1].Name, nil
	}
	return out, "", nil
}

func (f *fakeService) Key(_ context.Context, principal, name string) (*fsm.Key, error) {
	if kind, ok := strings.CutPrefix(name, "fail/"); ok {
		return nil, cluster.Errorf(cluster.Kind(kind), "injected %s", kind)
	}
	switch name {
	case "fail-plain":
		return nil, errors.New("disk on fire")
	case "panic":
		panic("handler bug")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[name]
	switch {
	case k == nil:
		return nil, cluster.Errorf(cluster.KindNotFound, "key %q does not exist", name)
	case !f.mayRead(principal):
		return nil, cluster.Errorf(cluster.KindDenied, "%s may not read key %q", principal, name)
	}
	return k.Metadata(), nil
}

// fakeRelease is the blind release the fake answers for a key whose
// "sealed" material is secret: every field set, so that the round trip
// shows each one crosses the wire.
func fakeRelease(name string, version uint64, secret []byte) *cluster.SealedRelease {
	return &cluster.SealedRelease{ClusterID: "test", Key: name, Version: version, Epoch: 3, Threshold: 2,
		Poly: [][]byte{[]byte("c0"), []byte("c1")}, R: []byte("R"), Sealed: slices.Clone(secret),
		Partials: []cluster.SealedPartial{{Index: 1, Node: "n1", R: []byte("r1"), Sealed: []byte("p1")}, {Index: 3, Node: "n3", R: []byte("r3"), Sealed: []byte("p3")},
			// A share seal (share mode): no R, which must come out as none.
			{Index: 4, Node: "n4", Sealed: bytes.Repeat([]byte("s"), shamir.ShareSealSize)}}}
}

func (f *fakeService) Release(_ context.Context, sg *fsm.Signed) (*cluster.SealedRelease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd, err := f.verify(sg)
	if err != nil {
		return nil, err
	}
	if cmd.Release == nil || cmd.Release.Op != fsm.OpGet && cmd.Release.Op != fsm.OpCAS {
		return nil, cluster.Errorf(cluster.KindInvalid, "not a release with op get or cas")
	}
	k := f.keys[cmd.Release.Key]
	if k == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "key %q does not exist", cmd.Release.Key)
	}
	if k.State != fsm.KeyActive {
		return nil, cluster.Errorf(cluster.KindDenied, "key %q is %s", k.Name, k.State)
	}
	return fakeRelease(k.Name, k.Version, f.secrets[k.Name]), nil
}

func (f *fakeService) CompareAndSwap(_ context.Context, replace *fsm.Signed) (*fsm.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd, err := f.verify(replace)
	if err != nil {
		return nil, err
	}
	rk := cmd.ReplaceKey
	k := f.keys[rk.Name]
	if k == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "key %q does not exist", rk.Name)
	}
	if k.Version != rk.ExpectVersion {
		return nil, cluster.Errorf(cluster.KindConflict, "key %q changed", rk.Name)
	}
	k.Version++
	f.secrets[k.Name] = rk.Sealed
	return k.Metadata(), nil
}

func (f *fakeService) Principal(_ context.Context, pub []byte) (*fsm.Operator, error) {
	op := f.ops[fsm.PrincipalID(pub)]
	if op == nil {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "no operator has the key of this certificate")
	}
	c := *op
	return &c, nil
}

// --- a fake Machines ---

type fakeMachines struct {
	// With block set, GetKey tells entered and waits for block to close.
	block, entered chan struct{}

	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey // registered machines
	submitted map[string][]byte
	sessions  map[string]Session
	by        string // the operator of the last submit
}

// register makes a machine known, with a key submitted already if enc is
// not nil.
func (m *fakeMachines) register(pub ed25519.PublicKey, enc []byte) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := keyquorumv1.MachineID(pub)
	m.keys[id] = pub
	if enc != nil {
		m.sessions[id] = Session{MachineID: id, PublicKey: pub}
		m.submitted[id] = enc
	}
	return id
}

func (m *fakeMachines) GetKey(_ context.Context, req *KeyRequest) (*KeyReply, error) {
	m.mu.Lock()
	block, entered := m.block, m.entered
	m.mu.Unlock()
	if block != nil {
		close(entered)
		<-block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pub := m.keys[req.MachineID]
	if pub == nil || !ed25519.Verify(pub, req.SigningInput(), req.Signature) {
		return nil, cluster.Errorf(cluster.KindUnauthenticated, "machine %s is not registered or the signature is wrong", req.MachineID)
	}
	m.sessions[req.MachineID] = Session{MachineID: req.MachineID, PublicKey: pub, LastAttempt: req.SignedAt, Source: req.Source}
	enc := m.submitted[req.MachineID]
	if enc == nil {
		return nil, cluster.Errorf(cluster.KindNotFound, "no key for machine %s yet", req.MachineID)
	}
	reply := &KeyReply{EncryptedKey: enc}
	if len(req.EphemeralPublicKey) > 0 {
		reply.Partials = []Partial{{Index: 2, Sealed: append([]byte("to:"), req.EphemeralPublicKey...)}}
	}
	return reply, nil
}

func (m *fakeMachines) ListSessions(context.Context, string) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Session
	for _, s := range m.sessions {
		out = append(out, s)
	}
	return out, nil
}

func (m *fakeMachines) SubmitKey(_ context.Context, machineID string, enc []byte, cmd *fsm.Signed) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[machineID]; !ok {
		return cluster.Errorf(cluster.KindNotFound, "machine %s is not waiting", machineID)
	}
	m.submitted[machineID] = slices.Clone(enc)
	m.by = cmd.Signer
	return nil
}

// --- the server on both transports ---

type transport string

const (
	overTCP  transport = "tcp"
	overQUIC transport = "quic"
)

var transports = []transport{overTCP, overQUIC}

type testEnv struct {
	pki      *testPKI
	svc      *fakeService
	machines *fakeMachines
	srv      *Server
	addr     map[transport]string
	// tcpClosed is closed when the server closes its TCP listener.
	tcpClosed chan struct{}
}

// notifyingListener tells when it is closed.
type notifyingListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// newEnv starts one Server on a TLS listener and a QUIC listener on
// 127.0.0.1. machines false gives the server nil Machines.
func newEnv(t *testing.T, withMachines bool, opts ...Option) *testEnv {
	t.Helper()
	p := newPKI(t)
	e := &testEnv{pki: p, svc: newFakeService(p), addr: map[transport]string{}, tcpClosed: make(chan struct{})}
	var m Machines
	if withMachines {
		e.machines = &fakeMachines{keys: map[string]ed25519.PublicKey{}, submitted: map[string][]byte{}, sessions: map[string]Session{}}
		m = e.machines
	}
	e.srv = NewServer(e.svc, m, nil, opts...)
	base := &tls.Config{Certificates: []tls.Certificate{p.server}}

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ql, err := quic.ListenAddr("127.0.0.1:0", ServerTLSConfig(base, ALPNQUIC), e.srv.QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.addr[overTCP], e.addr[overQUIC] = tcp.Addr().String(), ql.Addr().String()
	errc := make(chan error, 2)
	nl := &notifyingListener{Listener: tcp, closed: e.tcpClosed}
	go func() { errc <- e.srv.Serve(tls.NewListener(nl, ServerTLSConfig(base, ALPN))) }()
	go func() { errc <- e.srv.ServeQUIC(ql) }()
	t.Cleanup(func() {
		e.srv.Stop()
		for range 2 {
			if err := <-errc; err != nil {
				t.Errorf("Serve after Stop: %v", err)
			}
		}
	})
	return e
}

// dial connects over tr with a client certificate, or none when cert is
// nil.
func (e *testEnv) dial(t *testing.T, tr transport, cert *tls.Certificate) *gogrpc.ClientConn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.pki.ca.Cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	var conn *gogrpc.ClientConn
	var err error
	switch tr {
	case overTCP:
		conn, err = gogrpc.NewClient(e.addr[tr], gogrpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	case overQUIC:
		conn, err = DialQUIC(e.addr[tr], cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// --- helpers for calls ---

func sign(t *testing.T, op operator, cmd *fsm.Command) *keyquorumv1.SignedCommand {
	t.Helper()
	cmd.Nonce = make([]byte, 16)
	rand.Read(cmd.Nonce)
	cmd.IssuedAt = time.Now().UnixNano()
	sg, err := fsm.Sign(op.id, op.key, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &keyquorumv1.SignedCommand{Signer: sg.Signer, Payload: sg.Payload, Signature: sg.Signature}
}

// signRaw signs a payload as it is, so a test can send JSON that no Go
// encoder would produce.
func signRaw(op operator, payload string) *keyquorumv1.SignedCommand {
	return &keyquorumv1.SignedCommand{Signer: op.id, Payload: []byte(payload), Signature: ed25519.Sign(op.key, fsm.SigningInput([]byte(payload)))}
}

// wantKind checks a call's error: its gRPC code is CodeOf(kind) and the
// kind comes back through ErrorFromStatus.
func wantKind(t *testing.T, what string, err error, kind cluster.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s", what, kind)
	}
	if got := status.Code(err); got != CodeOf(kind) {
		t.Errorf("%s: code %v, want %v (%v)", what, got, CodeOf(kind), err)
	}
	if got := cluster.KindOf(ErrorFromStatus(err)); got != kind {
		t.Errorf("%s: kind %q, want %q (%v)", what, got, kind, err)
	}
}

// --- tests ---

func TestClusterServiceRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := newEnv(t, true)
			ctx := context.Background()
			admin := e.pki.admin
			c := keyquorumv1.NewClusterServiceClient(e.dial(t, tr, &admin.cert))

			st, err := c.Status(ctx, &keyquorumv1.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if st.ClusterId != "c1" || st.Leader != "node-2" || st.Threshold != 2 || st.Applied != 42 || len(st.Members) != 2 ||
				st.Members[0].StateHash != "ab" || !st.Members[1].Leaving || st.Resharing.GetNeeded() != 2 || !bytes.Equal(st.PublicKey, []byte{1, 2, 3}) {
				t.Errorf("status: %v", st)
			}

			// A create_key whose JSON no Go encoder would write: spaces,
			// fields out of order. The fake verifies the signature, and the
			// bytes must arrive as they were signed.
			secret := []byte("first secret")
			payload := fmt.Sprintf(`{ "create_key" : {"type":"secret","name":"db","sealed":"%s","r":"AQ==",
				"access":{"gateways":["kxd"],"hosts":[]}} , "issued_at": %d, "nonce":"AAECAwQFBgcICQoLDA0ODw==", "type":"create_key"}`,
				base64.StdEncoding.EncodeToString(secret), time.Now().UnixNano())
			res, err := c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: signRaw(admin, payload)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Index != 1 || res.Key.GetName() != "db" || res.Key.GetVersion() != 1 || res.Key.GetState() != fsm.KeyActive {
				t.Errorf("submit: %v", res)
			}
			if h := res.Key.GetAccess().GetHosts(); h == nil || len(h.Hosts) != 0 {
				t.Errorf("an empty host list (no host allowed) became %v", h)
			}
			if got := e.svc.payload(0); string(got) != payload {
				t.Errorf("the payload was changed on the way:\n%s\nbecame\n%s", payload, got)
			}

			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "db", Type: fsm.KeyTypeSecret}})})
			wantKind(t, "create an existing key", err, cluster.KindExists)

			keys, err := c.ListKeys(ctx, &keyquorumv1.ListKeysRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(keys.Keys) != 1 || keys.Keys[0].Name != "db" || keys.Keys[0].Access.GetGateways()[0] != "kxd" {
				t.Errorf("list: %v", keys)
			}
			shown, err := c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "db"})
			if err != nil || shown.Key.GetName() != "db" || shown.Key.GetType() != fsm.KeyTypeSecret {
				t.Errorf("show: %v, %v", shown, err)
			}
			_, err = c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "nope"})
			wantKind(t, "show a missing key", err, cluster.KindNotFound)
			_, err = c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{})
			wantKind(t, "show without a name", err, cluster.KindInvalid)

			// A release is blind: the node relays the sealed release, every
			// field of it, and never the secret.
			rel, err := c.Release(ctx, &keyquorumv1.ReleaseRequest{Request: sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpGet}})})
			if err != nil || len(rel.GetSecret()) != 0 || !reflect.DeepEqual(sealedReleaseFromProto(rel.GetSealed()), fakeRelease("db", 1, secret)) {
				t.Fatalf("release: %v, %v", rel, err)
			}

			// Compare-and-swap: the client compared in a blind release; the
			// node commits the replace at the version compared, once.
			oldSum := sha256.Sum256(secret)
			swap := &fsm.ReplaceKey{Name: "db", ExpectVersion: 1, OldSHA256: oldSum[:], R: []byte{1}, Sealed: []byte("second secret")}
			casReq := func() *keyquorumv1.CompareAndSwapRequest {
				return &keyquorumv1.CompareAndSwapRequest{Replace: sign(t, admin, &fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: swap})}
			}
			cas, err := c.CompareAndSwap(ctx, casReq())
			if err != nil || cas.Key.GetVersion() != 2 {
				t.Fatalf("cas: %v, %v", cas, err)
			}
			_, err = c.CompareAndSwap(ctx, casReq())
			wantKind(t, "a stale compare-and-swap", err, cluster.KindConflict)
			_, err = c.CompareAndSwap(ctx, &keyquorumv1.CompareAndSwapRequest{})
			wantKind(t, "a compare-and-swap without replace", err, cluster.KindInvalid)
			oldClient := casReq()
			oldClient.Release = sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpCAS, ReplaceKey: swap}})
			_, err = c.CompareAndSwap(ctx, oldClient)
			wantKind(t, "a compare-and-swap that asks the node to compare", err, cluster.KindInvalid)
			_, err = c.CompareAndSwap(ctx, &keyquorumv1.CompareAndSwapRequest{Replace: sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpCAS, ReplaceKey: swap}})})
			wantKind(t, "a compare-and-swap with a release for replace", err, cluster.KindInvalid)
			rel, err = c.Release(ctx, &keyquorumv1.ReleaseRequest{Request: sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpGet}})})
			if err != nil || string(rel.GetSealed().GetSealed()) != "second secret" || rel.GetSealed().GetVersion() != 2 {
				t.Fatalf("release after cas: %v, %v", rel, err)
			}

			// Revoke: releases are denied afterwards; destroy.
			res, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "db"})})
			if err != nil || res.Key.GetState() != fsm.KeyRevoked {
				t.Fatalf("revoke: %v, %v", res, err)
			}
			_, err = c.Release(ctx, &keyquorumv1.ReleaseRequest{Request: sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpGet}})})
			wantKind(t, "release a revoked key", err, cluster.KindDenied)
			res, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "db"})})
			if err != nil || res.Key.GetState() != fsm.KeyDestroyed {
				t.Fatalf("destroy: %v, %v", res, err)
			}

			// Submit takes operator commands only, signed by the caller.
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpGet}})})
			wantKind(t, "submit a release", err, cluster.KindInvalid)
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: swap})})
			wantKind(t, "submit a replace_key", err, cluster.KindInvalid)
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, admin, &fsm.Command{Type: fsm.TypeDeal})})
			wantKind(t, "submit a node command", err, cluster.KindInvalid)
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{})
			wantKind(t, "submit nothing", err, cluster.KindInvalid)
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: &keyquorumv1.SignedCommand{Signer: admin.id, Payload: []byte("{not json")}})
			wantKind(t, "submit a payload that is not JSON", err, cluster.KindInvalid)
			_, err = c.Submit(ctx, &keyquorumv1.SubmitRequest{Command: sign(t, e.pki.reader, &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "db"})})
			wantKind(t, "submit a command another operator signed", err, cluster.KindUnauthenticated)
			_, err = c.Release(ctx, &keyquorumv1.ReleaseRequest{Request: sign(t, e.pki.reader, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db", Op: fsm.OpGet}})})
			wantKind(t, "release with another operator's request", err, cluster.KindUnauthenticated)

			// The other operator, with its own certificate, may read nothing.
			rc := keyquorumv1.NewClusterServiceClient(e.dial(t, tr, &e.pki.reader.cert))
			keys, err = rc.ListKeys(ctx, &keyquorumv1.ListKeysRequest{})
			if err != nil || len(keys.Keys) != 0 {
				t.Errorf("list as a reader of nothing: %v, %v", keys, err)
			}
			_, err = rc.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "db"})
			wantKind(t, "show a key one may not read", err, cluster.KindDenied)
		})
	}
}

// TestListKeysPages: ListKeys answers one page at a time, in name order,
// with a token to continue that reaches every key exactly once; a
// negative page size is refused, and a reader of nothing gets no page.
func TestListKeysPages(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.svc.mu.Lock()
	for _, name := range []string{"e", "a", "d", "b", "c"} {
		e.svc.keys[name] = &fsm.Key{Name: name, Type: fsm.KeyTypeSecret, Version: 1, State: fsm.KeyActive}
	}
	e.svc.mu.Unlock()
	c := keyquorumv1.NewClusterServiceClient(e.dial(t, overTCP, &e.pki.admin.cert))
	for _, size := range []int32{0, 1, 3, 10} {
		var got []string
		var pages int
		for token := ""; ; pages++ {
			res, err := c.ListKeys(ctx, &keyquorumv1.ListKeysRequest{PageSize: size, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(res.Keys); size > 0 && n > int(size) {
				t.Errorf("page size %d: a page of %d", size, n)
			}
			for _, k := range res.Keys {
				got = append(got, k.Name)
			}
			if token = res.NextPageToken; token == "" {
				break
			}
			if pages > 10 {
				t.Fatalf("page size %d: the tokens do not end", size)
			}
		}
		if fmt.Sprint(got) != "[a b c d e]" {
			t.Errorf("page size %d: %v", size, got)
		}
		if size == 1 && pages != 4 {
			t.Errorf("page size 1: %d pages after the first, want 4", pages)
		}
	}
	res, err := c.ListKeys(ctx, &keyquorumv1.ListKeysRequest{PageSize: 2, PageToken: "b"})
	if err != nil || len(res.Keys) != 2 || res.Keys[0].Name != "c" || res.NextPageToken != "d" {
		t.Errorf("page after b: %v, %v", res, err)
	}
	_, err = c.ListKeys(ctx, &keyquorumv1.ListKeysRequest{PageSize: -1})
	wantKind(t, "a negative page size", err, cluster.KindInvalid)
	rc := keyquorumv1.NewClusterServiceClient(e.dial(t, overTCP, &e.pki.reader.cert))
	if res, err := rc.ListKeys(ctx, &keyquorumv1.ListKeysRequest{PageToken: "a"}); err != nil || len(res.Keys) != 0 || res.NextPageToken != "" {
		t.Errorf("a reader of nothing: %v, %v", res, err)
	}
}

func TestMachineServiceRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := newEnv(t, true)
			ctx := context.Background()
			mkey := newKey(t)
			id := e.machines.register(mkey.Public().(ed25519.PublicKey), nil)

			// The machine has no certificate.
			mc := keyquorumv1.NewMachineServiceClient(e.dial(t, tr, nil))
			tm, err := mc.GetTime(ctx, &keyquorumv1.GetTimeRequest{})
			if err != nil || tm.UnixNano == 0 {
				t.Fatalf("time: %v, %v", tm, err)
			}
			ephemeral := []byte("ephemeral public key")
			getKey := func() (*keyquorumv1.GetKeyResponse, error) {
				nonce := make([]byte, 16)
				rand.Read(nonce)
				sig := ed25519.Sign(mkey, keyquorumv1.GetKeySigningInput(id, nonce, tm.UnixNano, ephemeral))
				return mc.GetKey(ctx, &keyquorumv1.GetKeyRequest{MachineId: id, Nonce: nonce, SignedAt: tm.UnixNano, Signature: sig, EphemeralPublicKey: ephemeral})
			}
			_, err = getKey()
			wantKind(t, "get a key before any was submitted", err, cluster.KindNotFound)
			_, err = mc.GetKey(ctx, &keyquorumv1.GetKeyRequest{MachineId: "SHA256:nope", Nonce: make([]byte, 16), SignedAt: 1, Signature: make([]byte, 64)})
			wantKind(t, "get a key with a malformed machine ID", err, cluster.KindInvalid)
			_, err = mc.GetKey(ctx, &keyquorumv1.GetKeyRequest{MachineId: id, Nonce: make([]byte, 4), SignedAt: 1, Signature: make([]byte, 64)})
			wantKind(t, "get a key with a short nonce", err, cluster.KindInvalid)
			_, err = mc.ListSessions(ctx, &keyquorumv1.ListSessionsRequest{})
			wantKind(t, "list sessions without a certificate", err, cluster.KindUnauthenticated)
			_, err = mc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: []byte("x")})
			wantKind(t, "submit a key without a certificate", err, cluster.KindUnauthenticated)

			oc := keyquorumv1.NewMachineServiceClient(e.dial(t, tr, &e.pki.admin.cert))
			sessions, err := oc.ListSessions(ctx, &keyquorumv1.ListSessionsRequest{})
			if err != nil || len(sessions.Sessions) != 1 {
				t.Fatalf("sessions: %v, %v", sessions, err)
			}
			s := sessions.Sessions[0]
			host, _, _ := net.SplitHostPort(s.SourceAddress)
			if s.MachineId != id || !bytes.Equal(s.PublicKey, mkey.Public().(ed25519.PublicKey)) || s.LastAttempt != tm.UnixNano || host != "127.0.0.1" {
				t.Errorf("session: %v", s)
			}
			// SubmitKey carries the operator's signed submit_key: the node
			// relays it and cannot submit for anyone.
			submitCmd := func(op operator, enc string) *keyquorumv1.SignedCommand {
				return sign(t, op, &fsm.Command{Type: fsm.TypeSubmitKey, SubmitKey: &fsm.SubmittedKey{
					Machine: fsm.PrincipalID(mkey.Public().(ed25519.PublicKey)), Sealed: []byte(enc)}})
			}
			_, err = oc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: []byte("sealed passphrase")})
			wantKind(t, "submit a key without the operator's signed command", err, cluster.KindInvalid)
			_, err = oc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: []byte("sealed passphrase"), Command: submitCmd(e.pki.reader, "sealed passphrase")})
			wantKind(t, "submit a key with another operator's command", err, cluster.KindUnauthenticated)
			_, err = oc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: []byte("sealed passphrase"),
				Command: sign(t, e.pki.admin, &fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: id, Uses: 1}})})
			wantKind(t, "submit a key with another command", err, cluster.KindInvalid)
			if _, err := oc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id, EncryptedKey: []byte("sealed passphrase"), Command: submitCmd(e.pki.admin, "sealed passphrase")}); err != nil {
				t.Fatal(err)
			}
			e.machines.mu.Lock()
			by := e.machines.by
			e.machines.mu.Unlock()
			if by != e.pki.admin.id {
				t.Errorf("SubmitKey was made for %q, not the operator of the certificate", by)
			}
			_, err = oc.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{MachineId: id})
			wantKind(t, "submit an empty key", err, cluster.KindInvalid)

			got, err := getKey()
			if err != nil {
				t.Fatal(err)
			}
			if string(got.EncryptedKey) != "sealed passphrase" || len(got.Partials) != 1 || got.Partials[0].Index != 2 || string(got.Partials[0].Sealed) != "to:ephemeral public key" {
				t.Errorf("key: %v", got)
			}
		})
	}
}

func TestMachinesNilIsUnimplemented(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	c := keyquorumv1.NewMachineServiceClient(e.dial(t, overTCP, &e.pki.admin.cert))
	calls := map[string]func() error{
		"GetTime": func() error { _, err := c.GetTime(ctx, &keyquorumv1.GetTimeRequest{}); return err },
		"GetKey": func() error {
			_, err := c.GetKey(ctx, &keyquorumv1.GetKeyRequest{})
			return err
		},
		"ListSessions": func() error { _, err := c.ListSessions(ctx, &keyquorumv1.ListSessionsRequest{}); return err },
		"SubmitKey":    func() error { _, err := c.SubmitKey(ctx, &keyquorumv1.SubmitKeyRequest{}); return err },
	}
	for name, call := range calls {
		err := call()
		if status.Code(err) != codes.Unimplemented || !strings.Contains(status.Convert(err).Message(), "not enabled") {
			t.Errorf("%s: %v, want Unimplemented saying the flow is not enabled", name, err)
		}
	}
}

func TestRefusedCertificates(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	cases := []struct {
		name string
		cert *tls.Certificate
		want string
	}{
		{"no certificate", nil, "client certificate of the cluster CA is required"},
		{"node certificate", &e.pki.noOperator, "not an operator certificate"},
		{"another CA", &e.pki.foreign, "certificate signed by unknown authority"},
		{"unknown operator", &e.pki.unknown, "no operator has the key"},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(string(tr)+"/"+tc.name, func(t *testing.T) {
				conn := e.dial(t, tr, tc.cert)
				_, err := keyquorumv1.NewClusterServiceClient(conn).Status(ctx, &keyquorumv1.StatusRequest{})
				wantKind(t, "status", err, cluster.KindUnauthenticated)
				if !strings.Contains(status.Convert(err).Message(), tc.want) {
					t.Errorf("message %q does not say %q", status.Convert(err).Message(), tc.want)
				}
				_, err = keyquorumv1.NewMachineServiceClient(conn).ListSessions(ctx, &keyquorumv1.ListSessionsRequest{})
				wantKind(t, "list sessions", err, cluster.KindUnauthenticated)
				stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
				if err == nil {
					_, err = stream.Recv()
				}
				wantKind(t, "reflection", err, cluster.KindUnauthenticated)
				// The machine's calls need no certificate.
				if _, err := keyquorumv1.NewMachineServiceClient(conn).GetTime(ctx, &keyquorumv1.GetTimeRequest{}); err != nil {
					t.Errorf("GetTime: %v", err)
				}
			})
		}
	}
}

func TestNotInitialized(t *testing.T) {
	e := newEnv(t, true)
	e.svc.mu.Lock()
	e.svc.caPEM = nil
	e.svc.mu.Unlock()
	_, err := keyquorumv1.NewClusterServiceClient(e.dial(t, overTCP, &e.pki.admin.cert)).Status(context.Background(), &keyquorumv1.StatusRequest{})
	wantKind(t, "status of a node outside a cluster", err, cluster.KindNotInitialized)
}

func TestCodeOf(t *testing.T) {
	want := map[cluster.Kind]codes.Code{
		cluster.KindInvalid:              codes.InvalidArgument,
		cluster.KindNotFound:             codes.NotFound,
		cluster.KindExists:               codes.AlreadyExists,
		cluster.KindDenied:               codes.PermissionDenied,
		cluster.KindUnauthenticated:      codes.Unauthenticated,
		cluster.KindConflict:             codes.Aborted,
		cluster.KindNoQuorum:             codes.Unavailable,
		cluster.KindUnknownOutcome:       codes.Unknown,
		cluster.KindNotInitialized:       codes.FailedPrecondition,
		cluster.KindInternal:             codes.Internal,
		cluster.KindClockSkew:            codes.Unauthenticated,
		cluster.KindPendingApproval:      codes.PermissionDenied,
		cluster.KindTokenExpired:         codes.PermissionDenied,
		cluster.KindTokenRevoked:         codes.PermissionDenied,
		cluster.KindTokenWidened:         codes.PermissionDenied,
		cluster.KindTokenLacksCapability: codes.PermissionDenied,
		cluster.KindTokenUsedUp:          codes.PermissionDenied,
		cluster.KindWrongKey:             codes.InvalidArgument,
		cluster.KindTampered:             codes.InvalidArgument,
	}
	if len(want) != len(cluster.Kinds) {
		t.Fatal("a kind is missing from the table")
	}
	for _, k := range cluster.Kinds {
		if got := CodeOf(k); got != want[k] {
			t.Errorf("CodeOf(%s) = %v, want %v", k, got, want[k])
		}
		err := StatusError(cluster.Errorf(k, "message of %s", k))
		if status.Code(err) != want[k] {
			t.Errorf("StatusError(%s): code %v", k, status.Code(err))
		}
		back := ErrorFromStatus(err)
		var ce *cluster.Error
		if !errors.As(back, &ce) || ce.Kind != k || ce.Message != "message of "+string(k) {
			t.Errorf("ErrorFromStatus(StatusError(%s)) = %#v", k, back)
		}
	}
	if CodeOf("no such kind") != codes.Internal {
		t.Error("an unknown kind is not Internal")
	}
}

// TestVocabGRPCCodesAreGRPCs: the table's gRPC codes (numbers, so that
// package vocab links no gRPC) are gRPC's own.
func TestVocabGRPCCodesAreGRPCs(t *testing.T) {
	for v, c := range map[vocab.GRPCCode]codes.Code{
		vocab.GRPCUnknown: codes.Unknown, vocab.GRPCInvalidArgument: codes.InvalidArgument,
		vocab.GRPCNotFound: codes.NotFound, vocab.GRPCAlreadyExists: codes.AlreadyExists,
		vocab.GRPCPermissionDenied: codes.PermissionDenied, vocab.GRPCFailedPrecondition: codes.FailedPrecondition,
		vocab.GRPCAborted: codes.Aborted, vocab.GRPCInternal: codes.Internal,
		vocab.GRPCUnavailable: codes.Unavailable, vocab.GRPCUnauthenticated: codes.Unauthenticated,
	} {
		if codes.Code(v) != c {
			t.Errorf("vocab's %d is %v, want %v", v, codes.Code(v), c)
		}
	}
}

func TestStatusErrorOfOtherErrors(t *testing.T) {
	if StatusError(nil) != nil || ErrorFromStatus(nil) != nil {
		t.Error("nil did not stay nil")
	}
	if k := cluster.KindOf(ErrorFromStatus(StatusError(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)))); k != cluster.KindUnknownOutcome {
		t.Errorf("an expired context is %s", k)
	}
	if k := cluster.KindOf(ErrorFromStatus(StatusError(errors.New("disk on fire")))); k != cluster.KindInternal {
		t.Errorf("a plain error is %s", k)
	}
	if k := cluster.KindOf(ErrorFromStatus(StatusError(fmt.Errorf("wrapped: %w", cluster.Errorf(cluster.KindDenied, "no"))))); k != cluster.KindDenied {
		t.Errorf("a wrapped cluster error is %s", k)
	}
	passed := status.Error(codes.Unimplemented, "not here")
	if StatusError(passed) != passed {
		t.Error("a status error did not pass unchanged")
	}
	// Statuses without the kind, as gRPC itself or a proxy makes them.
	for code, kind := range map[codes.Code]cluster.Kind{
		codes.Unimplemented:    cluster.KindInvalid,
		codes.NotFound:         cluster.KindNotFound,
		codes.Unauthenticated:  cluster.KindUnauthenticated,
		codes.Unavailable:      cluster.KindUnknownOutcome,
		codes.DeadlineExceeded: cluster.KindUnknownOutcome,
		codes.Internal:         cluster.KindUnknownOutcome,
	} {
		if k := cluster.KindOf(ErrorFromStatus(status.Error(code, "x"))); k != kind {
			t.Errorf("%v without a kind is %s, want %s", code, k, kind)
		}
	}
}

func TestErrorKindsOverTheWire(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	for _, tr := range transports {
		c := keyquorumv1.NewClusterServiceClient(e.dial(t, tr, &e.pki.admin.cert))
		for _, k := range cluster.Kinds {
			_, err := c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "fail/" + string(k)})
			wantKind(t, string(tr)+" "+string(k), err, k)
			if msg := status.Convert(err).Message(); msg != "injected "+string(k) {
				t.Errorf("%s %s: message %q", tr, k, msg)
			}
		}
		_, err := c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "fail-plain"})
		wantKind(t, string(tr)+" a plain error", err, cluster.KindInternal)
		_, err = c.ShowKey(ctx, &keyquorumv1.ShowKeyRequest{Name: "panic"})
		wantKind(t, string(tr)+" a panic", err, cluster.KindInternal)
		if _, err := c.Status(ctx, &keyquorumv1.StatusRequest{}); err != nil {
			t.Errorf("%s: the server does not answer after a handler panicked: %v", tr, err)
		}
	}
}

func TestReflectionListsServices(t *testing.T) {
	e := newEnv(t, true)
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ctx := context.Background()
			stream, err := reflectionpb.NewServerReflectionClient(e.dial(t, tr, &e.pki.admin.cert)).ServerReflectionInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
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
			for _, want := range []string{"keyquorum.v1.ClusterService", "keyquorum.v1.MachineService"} {
				if !slices.Contains(names, want) {
					t.Errorf("reflection lists %v, not %s", names, want)
				}
			}
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "keyquorum.v1.ClusterService"}}); err != nil {
				t.Fatal(err)
			}
			resp, err = stream.Recv()
			if err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
				t.Errorf("no descriptor for ClusterService: %v, %v", resp, err)
			}
			stream.CloseSend()
		})
	}
}

func TestPlainListenerServesNothing(t *testing.T) {
	p := newPKI(t)
	srv := NewServer(newFakeService(p), nil, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := gogrpc.NewClient(ln.Addr().String(), gogrpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = keyquorumv1.NewMachineServiceClient(conn).GetTime(context.Background(), &keyquorumv1.GetTimeRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call in plaintext got %v, want Unavailable", err)
	}
}

func TestQUICRefusesFurtherStreams(t *testing.T) {
	e := newEnv(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(e.pki.ca.Cert)
	ctx := context.Background()
	qc, err := quic.DialAddr(ctx, e.addr[overQUIC], &tls.Config{RootCAs: roots, NextProtos: []string{ALPNQUIC}, Certificates: []tls.Certificate{e.pki.admin.cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	if _, err := qc.OpenStreamSync(ctx); err != nil { // the stream HTTP/2 would use
		t.Fatal(err)
	}
	second, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_, err = second.Read(make([]byte, 1))
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != quicStreamRefused || !se.Remote {
		t.Errorf("the second stream: %v, want it reset by the server with code %d", err, quicStreamRefused)
	}
}

func TestServerTLSConfig(t *testing.T) {
	base := &tls.Config{ServerName: "x"}
	c := ServerTLSConfig(base, ALPNQUIC)
	if c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.RequestClientCert || !slices.Equal(c.NextProtos, []string{ALPNQUIC}) || c.ServerName != "x" {
		t.Errorf("config: min %x, client auth %v, protos %v", c.MinVersion, c.ClientAuth, c.NextProtos)
	}
	if base.NextProtos != nil || base.ClientAuth != tls.NoClientCert {
		t.Error("the base config was changed")
	}
	strict := ServerTLSConfig(&tls.Config{ClientAuth: tls.RequireAnyClientCert}, ALPN)
	if strict.ClientAuth != tls.RequireAnyClientCert {
		t.Error("a stricter client auth of the base was weakened")
	}
}

// TestShutdownWaitsAndStops holds a call over QUIC in its handler while
// Shutdown begins: the call completes with its answer (the QUIC connection
// is not closed under it), and afterwards the server takes no calls.
func TestShutdownWaitsAndStops(t *testing.T) {
	e := newEnv(t, true)
	mkey := newKey(t)
	id := e.machines.register(mkey.Public().(ed25519.PublicKey), []byte("sealed passphrase"))
	block, entered := make(chan struct{}), make(chan struct{})
	e.machines.mu.Lock()
	e.machines.block, e.machines.entered = block, entered
	e.machines.mu.Unlock()

	c := keyquorumv1.NewMachineServiceClient(e.dial(t, overQUIC, nil))
	nonce := make([]byte, 16)
	rand.Read(nonce)
	req := &keyquorumv1.GetKeyRequest{MachineId: id, Nonce: nonce, SignedAt: 1, Signature: ed25519.Sign(mkey, keyquorumv1.GetKeySigningInput(id, nonce, 1, nil))}
	type result struct {
		resp *keyquorumv1.GetKeyResponse
		err  error
	}
	called := make(chan result, 1)
	go func() {
		resp, err := c.GetKey(context.Background(), req)
		called <- result{resp, err}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	<-e.tcpClosed // Shutdown has begun: it closes the listeners first
	close(block)
	r := <-called
	if r.err != nil || string(r.resp.GetEncryptedKey()) != "sealed passphrase" {
		t.Errorf("the call in progress during Shutdown: %v, %v", r.resp, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	after := keyquorumv1.NewMachineServiceClient(e.dial(t, overTCP, nil))
	if _, err := after.GetTime(context.Background(), &keyquorumv1.GetTimeRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a call after Shutdown: %v", err)
	}
}

func TestGetKeySigningInputIsUnambiguous(t *testing.T) {
	a := keyquorumv1.GetKeySigningInput("SHA256:a", []byte("nonce-nonce-nonc"), 7, []byte("e"))
	b := keyquorumv1.GetKeySigningInput("SHA256:an", []byte("once-nonce-nonc"), 7, []byte("e"))
	c := keyquorumv1.GetKeySigningInput("SHA256:a", []byte("nonce-nonce-nonc"), 8, []byte("e"))
	if bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("different requests have the same signing input")
	}
	if !bytes.HasPrefix(a, []byte("keyquorum/machine/get-key/v1\x00")) {
		t.Error("no domain")
	}
}
