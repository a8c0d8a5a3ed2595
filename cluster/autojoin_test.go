package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// memJoinPeer carries join requests to the nodes registered with it, by
// their API address, checking the CA fingerprint first as
// client.JoinPeer does over HTTPS. sent counts the requests that reached
// a node.
type memJoinPeer struct {
	mu    sync.Mutex
	nodes map[string]*Node
	sent  atomic.Int64
	// intercept, if set, answers an address instead of a node.
	intercept func(addr string, req *fsm.AutoJoin) (*api.AutoJoinReply, error, bool)
}

// serve registers tn's node (again after a restart) at its API address.
func (p *memJoinPeer) serve(tns ...*testNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nodes == nil {
		p.nodes = map[string]*Node{}
	}
	for _, tn := range tns {
		p.nodes[tn.cfg.APIAddr] = tn.n
	}
}

func (p *memJoinPeer) Join(ctx context.Context, addr, caFingerprint string, req *fsm.AutoJoin) (*api.AutoJoinReply, error) {
	if p.intercept != nil {
		if r, err, ok := p.intercept(addr, req); ok {
			return r, err
		}
	}
	p.mu.Lock()
	n := p.nodes[addr]
	p.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("nothing answers at %s", addr)
	}
	ca, err := n.ClusterCA()
	if err != nil {
		return nil, err
	}
	if fp, _ := api.CAFingerprint(ca.CACert); !api.SameFingerprint(caFingerprint, fp) {
		return nil, fmt.Errorf("%s is of another cluster", addr)
	}
	p.sent.Add(1)
	return n.AutoJoin(ctx, req)
}

// autoJoinCluster founds a cluster on node1 with a join CA, as keyctl
// cluster init --auto-join does, for a key made once initial nodes are
// members. It returns the CA fingerprint.
func autoJoinCluster(t *testing.T, initial int) (*testCluster, string) {
	t.Helper()
	c := newEmptyCluster(t)
	first := c.addNode()
	join, err := c.ca.NewJoinCA()
	if err != nil {
		t.Fatal(err)
	}
	req := c.startRequest(first)
	req.JoinCACert = join.CertPEM
	if req.JoinCAKey, err = join.KeyPEM(); err != nil {
		t.Fatal(err)
	}
	req.Init = c.sign(&fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{
		ClusterID: c.clusterID, CACert: c.ca.CertPEM,
		Operator:     &fsm.Operator{ID: c.opID, Name: "admin", PublicKey: c.opKey.Public().(ed25519.PublicKey)},
		Node:         c.nodeRecord(first),
		InitialNodes: initial,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := first.n.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	c.waitSettled(0)
	fp, err := api.CAFingerprint(c.ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp
}

// joinToken makes a join token and has the cluster hold it with its key,
// as keyctl cluster token create does.
func (c *testCluster) joinToken() string {
	c.t.Helper()
	token, id, hash, err := api.NewJoinToken()
	if err != nil {
		c.t.Fatal(err)
	}
	_, secret, _ := api.ParseJoinToken(token)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateJoinToken, CreateJoinToken: &fsm.JoinToken{ID: id, Hash: hash,
		Key: api.JoinTokenKey(secret).Public().(ed25519.PublicKey), ExpiresAt: time.Now().Add(time.Hour).UnixNano()}}); err != nil {
		c.t.Fatal(err)
	}
	return token
}

// retryJoinNode starts a node that joins by itself: a join token, the CA
// fingerprint, and the addresses to ask.
func (c *testCluster) retryJoinNode(apiAddr, token, fp string, peer JoinPeer, retryJoin ...string) *testNode {
	c.t.Helper()
	prev := c.configure
	c.configure = func(cfg *Config) {
		if apiAddr != "" {
			cfg.APIAddr = apiAddr
		}
		cfg.JoinToken, cfg.JoinCAFingerprint, cfg.JoinPeer = token, fp, peer
		cfg.RetryJoin = retryJoin
		cfg.RetryJoinBackoff = 2 * time.Second
	}
	defer func() { c.configure = prev }()
	return c.addNode()
}

// waitMember waits until every running node sees tn a member and the key
// is settled past epoch after.
func (c *testCluster) waitAutoJoined(tn *testNode, after uint64) *Status {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		in := false
		if tn.n.runtime() != nil {
			tn.n.fsm.Read(func(s *fsm.State) { in = s.Nodes[tn.id()] != nil })
		}
		return in, fmt.Sprintf("%s has not joined", tn.id())
	})
	return c.waitSettled(after)
}

// TestRetryJoinFormsAndKeepsTheCluster: node1 is initialized once; node2
// and node3 are started with nothing but a join token each, the CA
// fingerprint and every node's address, and join by themselves; the
// cluster makes its key among the three and releases. A node restarted
// with the same flags keeps its membership and spends no token; a node
// removed-and-gone is replaced by a fourth that joins the same way
// through any member.
func TestRetryJoinFormsAndKeepsTheCluster(t *testing.T) {
	t.Parallel()
	c, fp := autoJoinCluster(t, 3)
	peer := &memJoinPeer{}
	peer.serve(c.nodes[0])
	addrs := freePorts(t, 2)
	every := []string{c.nodes[0].cfg.APIAddr, addrs[0], addrs[1]}
	var joiners []*testNode
	for _, a := range addrs {
		tn := c.retryJoinNode(a, c.joinToken(), fp, peer, every...)
		peer.serve(tn)
		joiners = append(joiners, tn)
	}
	for _, tn := range joiners {
		c.waitAutoJoined(tn, 0)
	}
	st := c.waitSettled(0)
	if st.Epoch == 0 || len(st.Members) != 3 {
		t.Fatalf("after the auto-joins: epoch %d with %d members, want a key among 3", st.Epoch, len(st.Members))
	}
	secret := randomBytes(t, 32)
	c.createSecret("db/auto", secret)

	if got := c.mustRelease(joiners[1], "db/auto"); string(got) != string(secret) {
		t.Fatal("the cluster formed by retry-join released another secret")
	}

	// A restart does not rejoin: the node is back in with its share, and
	// no token was asked for.
	sent := peer.sent.Load()
	c.stop(joiners[0])
	c.restart(joiners[0])
	peer.serve(joiners[0])
	c.waitAutoJoined(joiners[0], st.Epoch-1)
	if got := c.mustRelease(joiners[0], "db/auto"); string(got) != string(secret) {
		t.Fatal("the restarted node's cluster released another secret")
	}
	if peer.sent.Load() != sent {
		t.Fatalf("the restarted node asked to join again (%d requests, was %d)", peer.sent.Load(), sent)
	}
	if after := c.status(joiners[0]); after.Epoch != st.Epoch || len(after.Members) != 3 {
		t.Fatalf("after the restart: epoch %d with %d members, want %d with 3", after.Epoch, len(after.Members), st.Epoch)
	}
}

// TestRetryJoinRefusesAForgedAnswer: whatever answers at a retry-join
// address, with a certificate for the joining node's key from a CA of its
// own (a cluster of its own, a join CA of its own), does not start the
// node: it checks the answer against the CA fingerprint it was given, and
// joins the real cluster from the next address.
func TestRetryJoinRefusesAForgedAnswer(t *testing.T) {
	t.Parallel()
	c, fp := autoJoinCluster(t, 1)
	rogueCA, err := NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	forged := freePorts(t, 1)[0]
	var forgedAsked atomic.Int64
	peer := &memJoinPeer{}
	peer.serve(c.nodes[0])
	peer.intercept = func(addr string, req *fsm.AutoJoin) (*api.AutoJoinReply, error, bool) {
		if addr != forged {
			return nil, nil, false
		}
		forgedAsked.Add(1)
		join, _ := rogueCA.NewJoinCA()
		cert, _ := join.IssueChain(ed25519.PublicKey(req.Node.SignKey), RoleNode, req.Node.ID, nil)
		key, _ := join.KeyPEM()
		return &api.AutoJoinReply{ClusterID: "rogue", CACert: rogueCA.CertPEM, NodeCert: cert,
			GossipKey: make([]byte, 32), JoinCACert: join.CertPEM, JoinCAKey: key}, nil, true
	}
	tn := c.retryJoinNode("", c.joinToken(), fp, peer, forged, c.nodes[0].cfg.APIAddr)
	c.waitAutoJoined(tn, 0)
	if forgedAsked.Load() == 0 {
		t.Fatal("the forged address was never asked")
	}
	if m := tn.n.runtime().m; m.ClusterID != c.clusterID || sha256.Sum256(m.CACert) != sha256.Sum256(c.ca.CertPEM) {
		t.Fatalf("the node entered cluster %s", m.ClusterID)
	}
}

// TestAutoJoinRequestAdmitsOnlyItsNode: a member that received a node's
// request (or a compromised one, or whoever saw it on its way) cannot
// admit a node of its own with it: the token's signature covers the
// node's record. The forged request is refused before any entry, and the
// token still admits the node it was meant for.
func TestAutoJoinRequestAdmitsOnlyItsNode(t *testing.T) {
	t.Parallel()
	c, fp := autoJoinCluster(t, 1)
	token := c.joinToken()
	victim := c.addNode()
	req, err := victim.n.joinRequest(token)
	if err != nil {
		t.Fatal(err)
	}
	mallory := c.addNode()
	stolen := *req
	stolen.Node = c.nodeRecord(mallory)
	stolen.NodeSig = ed25519.Sign(mallory.n.id.SignKey, fsm.AutoJoinMessage(req.Token, stolen.Node))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// The state machine's index: Raft's own counts the barriers that tell
	// the followers of earlier commands (tellCommits).
	applied, _ := c.nodes[0].n.cons.watch()
	if _, err := c.nodes[0].n.AutoJoin(ctx, &stolen); KindOf(err) != KindDenied {
		t.Fatalf("the request with another node's record: %v, want %s", err, KindDenied)
	}
	if got, _ := c.nodes[0].n.cons.watch(); got != applied {
		t.Fatalf("the forged request cost entries: applied index %d, was %d", got, applied)
	}
	reply, err := c.nodes[0].n.AutoJoin(ctx, req)
	if err != nil {
		t.Fatalf("the victim's own request: %v", err)
	}
	// Its answer was lost: asked again, the member answers again without
	// a new entry.
	again, err := c.nodes[0].n.AutoJoin(ctx, req)
	if err != nil || again.ClusterID != reply.ClusterID {
		t.Fatalf("the same request again: %v", err)
	}
	victim.n.cfg.JoinCAFingerprint = fp
	if err := victim.n.enterAdmitted(reply); err != nil {
		t.Fatalf("the victim entering with the answer: %v", err)
	}
	c.waitAutoJoined(victim, 0)
}

// fakeDNS answers A and SRV lookups from tables.
type fakeDNS struct {
	hosts map[string][]string
	srv   map[string][]*net.SRV
}

func (d fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := d.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (d fakeDNS) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	if s, ok := d.srv[name]; ok {
		return name, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// TestResolveRetryJoin: static addresses stand for themselves, a name
// for each of its A records, "srv:NAME" for each SRV target at its port;
// repeats are asked once, and a name that does not resolve is reported
// without stopping the others.
func TestResolveRetryJoin(t *testing.T) {
	t.Parallel()
	dns := fakeDNS{
		hosts: map[string][]string{"keyd.svc": {"10.0.0.1", "10.0.0.2"}, "keyd-0.keyd.svc": {"10.0.0.1"}, "keyd-1.keyd.svc": {"10.0.0.3"}},
		srv: map[string][]*net.SRV{"_api._tcp.keyd.svc": {
			{Target: "keyd-0.keyd.svc.", Port: 8740}, {Target: "keyd-1.keyd.svc.", Port: 9740}}},
	}
	got, errs := resolveRetryJoin(context.Background(), dns,
		[]string{"192.0.2.7:8740", "keyd.svc:8740", "srv:_api._tcp.keyd.svc", "gone.svc:8740", "no-port", "[2001:db8::1]:8740"})
	want := []string{"192.0.2.7:8740", "10.0.0.1:8740", "10.0.0.2:8740", "10.0.0.3:9740", "[2001:db8::1]:8740"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	if len(errs) != 2 {
		t.Fatalf("errors %v, want the unresolved name and the address without a port", errs)
	}
}
