package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// Node is one keyquorum node. Until it is started into a cluster it only
// answers Identity and Start; afterwards it runs its consensus (Raft and
// the node port, consensus.go), gossip, the operations' node-to-node
// calls and the background work of resharing, checkpoints and erasure.
type Node struct {
	cfg  Config
	log  *slog.Logger
	idMu sync.Mutex // guards id's encryption keys
	id   *identity
	fsm  *fsm.FSM
	// replicated is the consensus as the operations see it; cons is the
	// same, for starting and stopping it.
	replicated
	cons   *consensus
	shares *shareStore
	nonces *nonceCache

	mu      sync.Mutex
	rt      *runtime // nil until started
	stopped bool
	// joinToken is what a start request must carry; empty once joined.
	joinToken string
	// entering serializes joining: by a start request or by the node's
	// own retry-join (autojoin.go), whichever comes first.
	entering sync.Mutex
	// stopJoining ends the retry-join loop, and joining is done when it
	// has returned.
	stopJoining context.CancelFunc
	joining     sync.WaitGroup

	holderReads roundBatch[readIndexResult]
	// holderPick orders the holders this node asks as coordinator.
	holderPick holderPicker

	held heldKeys // what the gateways keep assembled in memory
	// signing are the assembled ECDSA keys this node holds as the
	// coordinator of signatures (assembledsign.go).
	signing signingKeys

	unlockHolds unlockHolds // the machines' unlocks held until a decision (unlockhold.go)

	// Signing by quorum (frost.go): this holder's nonces, its answers to
	// signing requests, and as a coordinator its stock of the holders'
	// commitments. frostShareHook, set only by tests, changes this
	// holder's signature shares (a holder that lies).
	frostPool      frostNonces
	frostSigned    frostAnswers
	frostStock     frostCommitments
	frostShareHook func([]byte) []byte
	// rsaShareHook, set only by tests, changes this holder's threshold
	// RSA shares (a holder that lies). It is the node's, not the
	// process's: the tests run clusters in parallel, whose nodes share
	// their IDs.
	rsaShareHook atomic.Pointer[func(share []byte) []byte]
	// transitHook, set only by tests, changes this holder's transit
	// partials (a holder that lies).
	transitHook func([]api.TransitItemPartial)
	// transitExportHook, set only by tests, changes the share this
	// holder seals to an export's caller (a lying holder).
	transitExportHook func(share []byte) []byte

	serving *ServingCert // the gateways' TLS certificate
	ports   *heldPorts   // the node port and the gossip port, from NewNode to Shutdown

	metrics *metrics.Set
	audit   *auditTrail
	// promoteHeld, set only by tests, keeps this node, as leader, from
	// proposing promote_node (a leader that withholds promotions).
	promoteHeld atomic.Bool
	// autopilotHeld counts the dead members this node, as leader, found
	// down for the period and did not remove (autopilot.go).
	autopilotHeld atomic.Int64
}

// runtime is what the node runs once it is in a cluster, besides the
// consensus (which it starts and stops with it).
type runtime struct {
	m      *membership
	gossip *memberlist.Memberlist
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewNode binds the node's node port and gossip port (heldPorts) and
// opens its data directory, creating its identity on first use. A node
// that was started into a cluster before starts its runtime again at
// once.
func NewNode(cfg Config) (_ *Node, err error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger.With("node", cfg.NodeID)
	ports, err := bindPorts(cfg, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ports.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	id, err := loadOrCreateIdentity(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	shares, err := openShareStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	f := fsm.New(dealChecker{})
	f.TokenWrites = WriteTokenCheck
	f.CheckpointEvery = cfg.CheckpointEvery
	cons := newConsensus(cfg, log, id.NodeID, f)
	n := &Node{cfg: cfg, log: log, id: id, fsm: f, replicated: cons, cons: cons,
		shares: shares, nonces: newNonceCache(now()), metrics: cfg.Metrics, ports: ports}
	n.metrics.SetState(n.stateMetrics)
	if err := n.openAudit(); err != nil {
		return nil, err
	}
	if n.serving, err = NewServingCert(id.SignKey, id.NodeID, n.Membership); err != nil {
		return nil, err
	}
	var m membership
	switch err := readJSON(filepath.Join(cfg.DataDir, membershipFile), &m); {
	case err == nil:
		if err := n.startRuntime(&m); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	default:
		if len(cfg.RetryJoin) > 0 {
			if err := cfg.validateRetryJoin(); err != nil {
				return nil, fmt.Errorf("config: %w", err)
			}
		}
		if n.joinToken, err = loadJoinToken(&cfg); err != nil {
			return nil, err
		}
		if len(cfg.RetryJoin) > 0 {
			n.startRetryJoin()
		}
	}
	return n, nil
}

// Identity is what an operator needs to admit a node (api.Identity).
type Identity = api.Identity

// Identity returns the node's public identity.
func (n *Node) Identity() Identity {
	n.mu.Lock()
	joined := n.rt != nil
	n.mu.Unlock()
	n.idMu.Lock()
	encPub := n.id.EncPub
	n.idMu.Unlock()
	return Identity{NodeID: n.id.NodeID, SignKey: n.id.SignKey.Public().(ed25519.PublicKey), EncKey: encPub,
		RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, GossipAddr: n.cfg.GossipAddr, Joined: joined}
}

// ServingCert is the certificate every gateway of the node serves TLS
// with: the node's certificate of the cluster CA once it has joined, a
// self-signed one for its key before.
func (n *Node) ServingCert() *ServingCert { return n.serving }

// StartRequest starts an unjoined node into a cluster (api.StartRequest).
type StartRequest = api.StartRequest

// Membership returns the CA certificate and the node certificate, or
// nils while the node is unjoined.
func (n *Node) Membership() (caCert, nodeCert []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rt == nil {
		return nil, nil
	}
	return n.rt.m.CACert, n.rt.m.NodeCert
}

// Start joins the node to a cluster. It is refused once the node is in
// one.
func (n *Node) Start(ctx context.Context, req *StartRequest) error {
	n.mu.Lock()
	err := n.checkJoinToken(req.JoinToken)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	m := &membership{ClusterID: req.ClusterID, CACert: req.CACert, NodeCert: req.NodeCert, GossipKey: req.GossipKey, ClusterKey: req.ClusterKey,
		JoinCACert: req.JoinCACert, JoinCAKey: req.JoinCAKey}
	if err := n.enter(m); err != nil {
		return err
	}
	if req.Init == nil {
		return nil
	}
	return n.bootstrap(ctx, req.Init)
}

// enter checks what the node was given to join a cluster, keeps it and
// starts the runtime, once: a node in a cluster enters no other.
func (n *Node) enter(m *membership) error {
	if m.ClusterID == "" {
		return Errorf(KindInvalid, "start request has no cluster ID")
	}
	if len(m.GossipKey) != 32 {
		return Errorf(KindInvalid, "gossip key must be 32 bytes, got %d", len(m.GossipKey))
	}
	cert, err := ParseCertPEM(m.NodeCert)
	if err != nil {
		return Errorf(KindInvalid, "node certificate: %v", err)
	}
	if role, id, err := CertRole(cert); err != nil || role != RoleNode || id != n.id.NodeID {
		return Errorf(KindInvalid, "node certificate is not a node certificate for %q", n.id.NodeID)
	}
	if !n.id.SignKey.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return Errorf(KindInvalid, "node certificate is not for this node's key")
	}
	if len(m.JoinCACert) > 0 || len(m.JoinCAKey) > 0 {
		if err := checkJoinCA(m); err != nil {
			return Errorf(KindInvalid, "join CA: %v", err)
		}
	}
	n.entering.Lock()
	defer n.entering.Unlock()
	n.mu.Lock()
	if n.rt != nil {
		n.mu.Unlock()
		return Errorf(KindConflict, "node %q is already in cluster %s", n.id.NodeID, n.rt.m.ClusterID)
	}
	n.mu.Unlock()
	if err := writeJSON(filepath.Join(n.cfg.DataDir, membershipFile), m); err != nil {
		return err
	}
	if err := n.startRuntime(m); err != nil {
		return err
	}
	n.mu.Lock()
	n.joinToken = ""
	n.mu.Unlock()
	if err := os.Remove(JoinTokenPath(n.cfg.DataDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Warn("removing the spent join token file", "err", err)
	}
	return nil
}

func (n *Node) bootstrap(ctx context.Context, init *fsm.Signed) error {
	if err := n.cons.bootstrap(); err != nil {
		return err
	}
	res, err := n.propose(ctx, init)
	if err != nil {
		return err
	}
	if res.Error != nil {
		return fromFSM(res.Error)
	}
	return nil
}

func (n *Node) runtime() *runtime {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rt
}

// joined returns the runtime or a not-initialized error.
func (n *Node) joined() (*runtime, error) {
	if rt := n.runtime(); rt != nil {
		return rt, nil
	}
	return nil, Errorf(KindNotInitialized, "node %q is not part of a cluster yet: run keyctl cluster init or join", n.id.NodeID)
}

func (n *Node) startRuntime(m *membership) (err error) {
	if len(m.ClusterKey) != 0 {
		n.fsm.PinClusterKey(m.ClusterKey) // before Raft restores a snapshot
	}
	if len(m.Founding) != 0 {
		n.fsm.PinFounding(m.Founding) // before Raft applies its log again
	}
	t, err := newNodeTLS(m, n.id)
	if err != nil {
		return err
	}
	t.member = n.isMember
	rt := &runtime{m: m}
	if err := n.cons.start(n.ports.node, t, n.membersOnly(t, n.rpcHandler())); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			rt.close()
			n.cons.stop()
		}
	}()
	if rt.gossip, err = n.startGossip(m); err != nil {
		return fmt.Errorf("starting gossip on %s: %w", n.cfg.GossipAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.cancel = cancel
	n.mu.Lock()
	n.rt = rt
	n.mu.Unlock()
	for _, loop := range []func(context.Context, *runtime){n.driveResharing, n.watchRounds, n.joinGossip, n.watchRemoval, n.attestCheckpoints, n.keepClusterKey, n.eraseDestroyed, n.autopilot, n.forgetStaleValues} {
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			loop(ctx, rt)
		}()
	}
	return nil
}

// startGossip starts memberlist on the gossip port the node holds.
func (n *Node) startGossip(m *membership) (*memberlist.Memberlist, error) {
	host, port, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	c := memberlist.DefaultLANConfig()
	c.Name = n.id.NodeID
	c.Transport = n.ports.gossip
	c.BindAddr, c.BindPort = host, p
	c.AdvertiseAddr, c.AdvertisePort = host, p
	c.SecretKey = m.GossipKey
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.LogOutput = io.Discard
	return memberlist.Create(c)
}

// Shutdown stops the node: a leader first hands its leadership to
// another voter, then it leaves gossip, stops Raft and closes its ports
// and stores, within ctx's deadline.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.stopJoining != nil {
		n.stopJoining()
	}
	n.joining.Wait()
	n.mu.Lock()
	rt := n.rt
	n.rt, n.stopped = nil, true
	n.mu.Unlock()
	n.signing.dropAll(n)
	if rt == nil {
		n.ports.close()
		n.closeAudit()
		return nil
	}
	done := make(chan struct{})
	go func() {
		n.cons.handOff()
		rt.close()
		n.cons.stop()
		n.ports.close()
		n.closeAudit()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown of node %s: %w", n.id.NodeID, ctx.Err())
	}
}

func (rt *runtime) close() {
	if rt.cancel != nil {
		rt.cancel()
	}
	rt.wg.Wait()
	if rt.gossip != nil {
		rt.gossip.Leave(time.Second)
		rt.gossip.Shutdown()
	}
}

// nodeCommand signs a command with the node's key.
func (n *Node) nodeCommand(cmd *fsm.Command) (*fsm.Signed, error) {
	cmd.Nonce = make([]byte, 16)
	if _, err := rand.Read(cmd.Nonce); err != nil {
		return nil, err
	}
	cmd.IssuedAt = now().UnixNano()
	return fsm.Sign(n.id.NodeID, n.id.SignKey, cmd)
}

// submit proposes and turns a refusal into an error.
func (n *Node) submit(ctx context.Context, sg *fsm.Signed) (*fsm.Result, error) {
	res, err := n.propose(ctx, sg)
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return res, fromFSM(res.Error)
	}
	return res, nil
}
