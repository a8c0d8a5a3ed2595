package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// An in-process keyquorum cluster for tests: every node is a real *Node
// with Raft and shares on disk under t.TempDir(), the node port on real TLS
// and memberlist on loopback ports chosen free at run time. The harness
// forms the cluster the way an operator's tool does (see
// client/bootstrap.go), but calls the nodes directly instead of
// over HTTP.

// settleTimeout bounds waiting for the cluster to reach a state (a key
// epoch, a removal, an erased share). It is generous: the race detector
// and other tests share two cores, and it is a deadline, not a
// measurement.
const settleTimeout = 90 * time.Second

// opTimeout bounds one operation of a test (a release, a write).
const opTimeout = 20 * time.Second

type testCluster struct {
	t         testing.TB
	clusterID string
	ca        *CA
	gossipKey []byte
	opKey     ed25519.PrivateKey
	opID      string
	nodes     []*testNode
	logs      *testLog
	dir       string // the nodes' data directories are in it
	configure func(*Config)
	// recovery, when set before initFirst, asks for a recovery kit.
	recovery *fsm.RecoveryKitRequest

	// ephemerals are the private keys of the release requests signed
	// by releaseRequest, by signed payload: the test is the client that
	// opens the blind release.
	ephMu      sync.Mutex
	ephemerals map[string]*shamir.X25519Key
}

// testNode is one node's configuration, which outlives the *Node it runs
// as: restart opens a new *Node on the same directory, ports and ID.
type testNode struct {
	cfg     Config
	n       *Node
	running bool
}

func (tn *testNode) id() string { return tn.cfg.NodeID }

// testLog sends the nodes' logs to t.Log until the test ends, so they are
// shown with a failure and not otherwise.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// newTestCluster founds a cluster of n nodes: node1 is started with the
// signed init command, then each other node is started and admitted with a
// signed add_node, waiting each time for the key epoch to settle.
func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	return newTestClusterWith(t, n, nil)
}

// newTestClusterWith is newTestCluster with every node's configuration
// changed by configure.
func newTestClusterWith(t testing.TB, n int, configure func(*Config)) *testCluster {
	t.Helper()
	c := newEmptyCluster(t)
	c.configure = configure
	for i := 1; i <= n; i++ {
		c.addNode()
	}
	c.initFirst(n)
	for _, tn := range c.nodes[1:] {
		c.join(tn)
	}
	return c
}

// newEmptyCluster makes the cluster's credentials (CA, gossip key, admin
// operator key) and registers the shutdown of every node it will start.
func newEmptyCluster(t testing.TB) *testCluster {
	t.Helper()
	idBytes := make([]byte, 8)
	gossip := make([]byte, 32)
	rand.Read(idBytes)
	rand.Read(gossip)
	clusterID := hex.EncodeToString(idBytes)
	ca, err := NewCA(clusterID)
	if err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, clusterID: clusterID, ca: ca, gossipKey: gossip, opKey: key,
		opID: fsm.PrincipalID(pub), logs: &testLog{t: t}, dir: t.TempDir()}
	// Cleanups run last in, first out: the nodes are down before the log
	// closes and their directories are removed.
	t.Cleanup(c.logs.close)
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, tn := range c.nodes {
			if tn.running {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.shutdown(tn)
				}()
			}
		}
		wg.Wait()
	})
	return c
}

// addNode creates an unjoined node with its own data directory and free
// ports.
func (c *testCluster) addNode() *testNode {
	c.t.Helper()
	ports := freePorts(c.t, 3)
	cfg := DefaultConfig()
	cfg.NodeID = fmt.Sprintf("node%d", len(c.nodes)+1)
	cfg.DataDir = filepath.Join(c.dir, cfg.NodeID)
	cfg.RaftAddr, cfg.GossipAddr, cfg.APIAddr = ports[0], ports[1], ports[2]
	cfg.RequestTimeout = 2 * time.Second
	// Many in-process nodes share this 2-core machine with other test
	// binaries: Raft's LAN timing (config.go) would see starvation as a
	// dead leader and churn. The tests run the timing that tolerates it;
	// keybench and the jepsen suite run keyd's defaults.
	cfg.SetRaftTiming(500 * time.Millisecond)
	cfg.Logger = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if c.configure != nil {
		c.configure(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		c.t.Fatalf("NewNode %s: %v", cfg.NodeID, err)
	}
	tn := &testNode{cfg: cfg, n: n, running: true}
	c.nodes = append(c.nodes, tn)
	return tn
}

// freePorts is FreeLoopbackPorts for a test: the tests run in parallel, so
// their nodes' ports must never meet another test's or an outgoing
// connection's.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	ports, err := FreeLoopbackPorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func (c *testCluster) nodeRecord(tn *testNode) *fsm.Node {
	id := tn.n.Identity()
	return &fsm.Node{ID: id.NodeID, RaftAddr: id.RaftAddr, APIAddr: id.APIAddr, GossipAddr: id.GossipAddr,
		SignKey: id.SignKey, EncKey: id.EncKey}
}

// startRequest issues the node's certificate, as the operator's tool does.
func (c *testCluster) startRequest(tn *testNode) *StartRequest {
	c.t.Helper()
	id := tn.n.Identity()
	cert, err := c.ca.Issue(ed25519.PublicKey(id.SignKey), RoleNode, id.NodeID, []string{"localhost", "127.0.0.1"})
	if err != nil {
		c.t.Fatal(err)
	}
	tn.n.mu.Lock()
	token := tn.n.joinToken
	tn.n.mu.Unlock()
	req := &StartRequest{ClusterID: c.clusterID, CACert: c.ca.CertPEM, NodeCert: cert, GossipKey: c.gossipKey, JoinToken: token}
	// keyctl sends the cluster key its operator pinned, once there is one
	// (client.JoinNode): the node checks its first snapshot against it.
	for _, m := range c.nodes {
		if m != tn && m.running && m.n.runtime() != nil {
			m.n.fsm.Read(func(s *fsm.State) { req.ClusterKey = bytes.Clone(s.PublicKey()) })
			break
		}
	}
	return req
}

// sign signs a command as the admin operator, with a fresh nonce.
func (c *testCluster) sign(cmd *fsm.Command) *fsm.Signed {
	c.t.Helper()
	return signWith(c.t, c.opID, c.opKey, cmd)
}

func signWith(t testing.TB, signer string, key ed25519.PrivateKey, cmd *fsm.Command) *fsm.Signed {
	t.Helper()
	cmd.Nonce = make([]byte, 16)
	if _, err := rand.Read(cmd.Nonce); err != nil {
		t.Fatal(err)
	}
	cmd.IssuedAt = time.Now().UnixNano()
	sg, err := fsm.Sign(signer, key, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// initFirst starts node1 with the signed init command, for a cluster
// whose key is made once initial nodes are members (as keyctl cluster init
// --nodes), and waits until node1 is in it.
func (c *testCluster) initFirst(initial int) {
	c.t.Helper()
	first := c.nodes[0]
	init := c.sign(&fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{
		ClusterID: c.clusterID, CACert: c.ca.CertPEM,
		Operator:     &fsm.Operator{ID: c.opID, Name: "admin", PublicKey: c.opKey.Public().(ed25519.PublicKey)},
		Node:         c.nodeRecord(first),
		InitialNodes: initial,
		Recovery:     c.recovery,
	}})
	req := c.startRequest(first)
	req.Init = init
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := first.n.Start(ctx, req); err != nil {
		c.t.Fatalf("starting %s with init: %v", first.id(), err)
	}
	c.waitSettled(0)
}

// join starts an unjoined node, admits it with a signed add_node and waits
// until the cluster has reshared to include it.
func (c *testCluster) join(tn *testNode) {
	c.t.Helper()
	before := c.status(c.anyRunning(tn)).Epoch
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := tn.n.Start(ctx, c.startRequest(tn)); err != nil {
		c.t.Fatalf("starting %s: %v", tn.id(), err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(tn)}); err != nil {
		c.t.Fatalf("adding %s: %v", tn.id(), err)
	}
	// The node sees itself a member once Raft has made it a voter and it
	// has caught up with the log.
	c.waitFor(settleTimeout, func() (bool, string) {
		in := false
		tn.n.fsm.Read(func(s *fsm.State) { in = s.Nodes[tn.id()] != nil })
		return in, fmt.Sprintf("%s does not see itself a member", tn.id())
	})
	c.waitVoter(tn)
	c.waitSettled(before)
}

// waitVoter waits until the leader has promoted tn to a Raft voter.
func (c *testCluster) waitVoter(tn *testNode) {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, s := range c.leader().n.servers() {
			if string(s.ID) == tn.id() && s.Suffrage == raft.Voter {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s is not a voter yet", tn.id())
	})
}

// running lists the nodes that run.
func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.running {
			out = append(out, tn)
		}
	}
	return out
}

// anyRunning returns a running, joined node other than those excluded.
func (c *testCluster) anyRunning(exclude ...*testNode) *testNode {
	c.t.Helper()
	for _, tn := range c.running() {
		if !slices.Contains(exclude, tn) && tn.n.runtime() != nil {
			return tn
		}
	}
	c.t.Fatal("no running node")
	return nil
}

func (c *testCluster) status(tn *testNode) *Status {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	st, err := tn.n.Status(ctx)
	if err != nil {
		c.t.Fatalf("status of %s: %v", tn.id(), err)
	}
	return st
}

// members lists the nodes of the cluster: the running nodes that are in
// the state's member list as node tn sees it.
func (c *testCluster) members() []*testNode {
	var out []*testNode
	for _, tn := range c.running() {
		if tn.n.runtime() == nil {
			continue
		}
		in := false
		tn.n.fsm.Read(func(s *fsm.State) { in = s.Nodes[tn.id()] != nil })
		if in {
			out = append(out, tn)
		}
	}
	return out
}

// waitSettled waits until the cluster key is settled for the current
// member set, as every running member (or each of nodes, if given) sees
// it: no resharing round in progress, the same epoch everywhere, a share
// in the store of every holder, and the epoch past after, unless the
// cluster is still waiting for its initial members to make its first key.
// It returns the last member's status.
func (c *testCluster) waitSettled(after uint64, nodes ...*testNode) *Status {
	c.t.Helper()
	var settled *Status
	c.waitFor(settleTimeout, func() (bool, string) {
		on := nodes
		if len(on) == 0 {
			on = c.members()
		}
		var why []string
		var last *Status
		for _, tn := range on {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := tn.n.Status(ctx)
			cancel()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", tn.id(), err)
			}
			waiting := s.Epoch == 0 && len(s.Members) < s.InitialNodes
			switch {
			case s.Epoch <= after && !waiting:
				why = append(why, fmt.Sprintf("%s at epoch %d", tn.id(), s.Epoch))
			case s.Resharing != nil:
				why = append(why, fmt.Sprintf("%s sees resharing round %d (%d/%d deals, %d acks)",
					tn.id(), s.Resharing.Round, s.Resharing.Deals, s.Resharing.Needed, s.Resharing.Acks))
			case last != nil && (s.Epoch != last.Epoch || len(s.Members) != len(last.Members)):
				why = append(why, fmt.Sprintf("%s at epoch %d with %d members, %s at epoch %d with %d",
					tn.id(), s.Epoch, len(s.Members), last.Node, last.Epoch, len(last.Members)))
			}
			last = s
			holder := false
			tn.n.fsm.Read(func(fs *fsm.State) { holder = fs.Nodes[tn.id()] != nil && fs.Nodes[tn.id()].Holder })
			if holder && tn.n.shares.current(s.Epoch) == nil {
				why = append(why, fmt.Sprintf("%s has no share of epoch %d yet", tn.id(), s.Epoch))
			}
		}
		if last == nil {
			return false, "no running member"
		}
		settled = last
		return len(why) == 0, strings.Join(why, "; ")
	})
	return settled
}

// waitFor polls cond until it holds or the timeout passes; the test fails
// with cond's last explanation. If KEYQUORUM_TEST_STACKS names a file, the
// stacks of every goroutine go there first, to see where a node is stuck.
func (c *testCluster) waitFor(timeout time.Duration, cond func() (bool, string)) bool {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			if path := os.Getenv("KEYQUORUM_TEST_STACKS"); path != "" {
				f, _ := os.Create(path)
				pprof.Lookup("goroutine").WriteTo(f, 2)
				f.Close()
			}
			c.t.Fatalf("gave up after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submit signs a command as the admin operator and commits it through a
// running member.
func (c *testCluster) submit(cmd *fsm.Command) (*fsm.Result, error) {
	c.t.Helper()
	return c.submitSigned(c.sign(cmd))
}

// A write that surely reached no leader (an election outlasted the
// nodes' RequestTimeout, as on a loaded machine) is sent again, as a
// client would, for up to settleTimeout.
func (c *testCluster) submitSigned(sg *fsm.Signed) (*fsm.Result, error) {
	c.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		res, err := c.anyRunning().n.Submit(ctx, sg)
		cancel()
		if err == nil || KindOf(err) != KindNoQuorum || !strings.Contains(err.Error(), "no leader accepted the write") || time.Now().After(deadline) {
			return res, err
		}
		c.t.Logf("%v: sending it again", err)
	}
}

// seal seals a secret client-side to the cluster public key, as keyctl
// does: no node sees the plaintext.
func (c *testCluster) seal(name string, secret []byte) *shamir.Ciphertext {
	c.t.Helper()
	st := c.status(c.anyRunning())
	if len(st.PublicKey) == 0 {
		c.t.Fatal("the cluster has no public key yet")
	}
	ct, err := shamir.Seal(rand.Reader, st.PublicKey, fsm.SealInfo(c.clusterID, name), secret)
	if err != nil {
		c.t.Fatal(err)
	}
	return ct
}

// createSecret seals and stores a secret; the test fails if the cluster
// refuses it.
func (c *testCluster) createSecret(name string, secret []byte) *fsm.Key {
	c.t.Helper()
	ct := c.seal(name, secret)
	res, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}})
	if err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
	return res.Key
}

// releaseRequest signs a release request for a secret, op get, with a
// fresh ephemeral key, as an operator's client does.
func (c *testCluster) releaseRequest(name string) *fsm.Signed {
	c.t.Helper()
	return c.signRelease(&fsm.ReleaseRequest{Key: name, Op: fsm.OpGet})
}

// signRelease signs req with a fresh ephemeral key, which it remembers for
// openRelease.
func (c *testCluster) signRelease(req *fsm.ReleaseRequest) *fsm.Signed {
	c.t.Helper()
	priv, err := shamir.NewX25519Key(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Ephemeral = priv.PublicKey()
	sg := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: req})
	c.ephMu.Lock()
	defer c.ephMu.Unlock()
	if c.ephemerals == nil {
		c.ephemerals = map[string]*shamir.X25519Key{}
	}
	c.ephemerals[string(sg.Payload)] = priv
	return sg
}

// clusterKey is the cluster public key, as a client pins it.
func (c *testCluster) clusterKey() []byte {
	c.t.Helper()
	return poly(c.anyRunning()).Commits[0]
}

// openRelease opens a blind release of the request sg as the client
// does: with sg's ephemeral key and the pinned cluster key.
func (c *testCluster) openRelease(sg *fsm.Signed, sr *SealedRelease) ([]byte, error) {
	c.t.Helper()
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		c.t.Fatal(err)
	}
	c.ephMu.Lock()
	priv := c.ephemerals[string(sg.Payload)]
	c.ephMu.Unlock()
	if priv == nil {
		c.t.Fatal("openRelease: the request was not signed by signRelease")
	}
	return api.OpenRelease(sr, c.clusterID, cmd.Release.Key, c.clusterKey(), sg.Payload, priv)
}

// release releases a secret through node tn with a freshly signed request.
func (c *testCluster) release(tn *testNode, name string) ([]byte, error) {
	c.t.Helper()
	return c.releaseSigned(tn, c.releaseRequest(name))
}

func (c *testCluster) releaseSigned(tn *testNode, sg *fsm.Signed) ([]byte, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sr, err := tn.n.Release(ctx, sg)
	if err != nil {
		return nil, err
	}
	return c.openRelease(sg, sr)
}

// mustRelease releases a secret and fails the test on an error.
func (c *testCluster) mustRelease(tn *testNode, name string) []byte {
	c.t.Helper()
	b, err := c.release(tn, name)
	if err != nil {
		c.t.Fatalf("releasing %q through %s: %v (kind %s)", name, tn.id(), err, KindOf(err))
	}
	return b
}

// revoke revokes a key through node tn and returns once tn acknowledged it.
func (c *testCluster) revoke(tn *testNode, name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := tn.n.Submit(ctx, c.sign(&fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: name})); err != nil {
		c.t.Fatalf("revoking %q through %s: %v", name, tn.id(), err)
	}
}

// holdApplies makes tn acknowledge log entries but apply none (a holder
// that lags), until the returned function is called, or the test ends.
func (c *testCluster) holdApplies(tn *testNode) (resume func()) {
	tn.n.cons.rfsm.hold.Lock()
	var once sync.Once
	resume = func() { once.Do(tn.n.cons.rfsm.hold.Unlock) }
	c.t.Cleanup(resume)
	return resume
}

// stop shuts a node down.
func (c *testCluster) stop(tn *testNode) {
	c.t.Helper()
	if err := c.shutdown(tn); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) shutdown(tn *testNode) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tn.running = false
	return tn.n.Shutdown(ctx)
}

// restart opens the node again with NewNode on the same directory and
// configuration; a node that was in a cluster rejoins it at once.
func (c *testCluster) restart(tn *testNode) {
	c.t.Helper()
	if tn.running {
		c.t.Fatalf("%s is running", tn.id())
	}
	n, err := NewNode(tn.cfg)
	if err != nil {
		c.t.Fatalf("reopening %s: %v", tn.id(), err)
	}
	tn.n, tn.running = n, true
}

// leader returns the running node that is the Raft leader, waiting for
// one.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var l *testNode
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.members() {
			if tn.n.raftState() == raft.Leader && tn.n.cons.leaderReady.Load() {
				l = tn
				return true, ""
			}
		}
		return false, "no ready leader"
	})
	return l
}

// storedKey is a key with its sealed material as node tn's state holds it.
func storedKey(t testing.TB, tn *testNode, name string) *fsm.Key {
	t.Helper()
	var k *fsm.Key
	tn.n.fsm.Read(func(s *fsm.State) {
		if key := s.Keys[name]; key != nil {
			c := *key
			k = &c
		}
	})
	if k == nil {
		t.Fatalf("%s has no key %q", tn.id(), name)
	}
	return k
}

// poly is the current epoch's public polynomial as node tn sees it.
func poly(tn *testNode) *shamir.PublicPoly {
	var p shamir.PublicPoly
	tn.n.fsm.Read(func(s *fsm.State) { p.Commits = slices.Clone(s.Poly) })
	return &p
}

// readShareFile reads a shares.json as it is on disk (in a node's data
// directory or a copy of it).
func readShareFile(t *testing.T, dir string) shareFile {
	t.Helper()
	var f shareFile
	if err := readJSON(filepath.Join(dir, sharesFile), &f); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return f
}

// copyDir copies a directory tree, as a thief of a disk would.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	// A running node's Raft renames and removes snapshot files (NAME.tmp)
	// as the copy walks: one gone when the walk reaches it is not copied.
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
