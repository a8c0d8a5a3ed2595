package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/fsm"
)

// The consensus is one node's part of the replicated log: Raft on the
// node port (the port's transport, the log and snapshot stores), the
// leadership a read index needs, linearizable reads (read.go), proposals,
// and the node-to-node calls. It knows nothing of keys, shares or
// gateways: the operations (releases, machines, resharing, erasure, the
// gateways' calls) are Node's, and use it only through replicated.

// replicated is what the operations need of the consensus.
type replicated interface {
	// readIndex is an index from a confirmed leader; waitApplied returns
	// once this node's state machine has applied it. Together they are a
	// linearizable read of fsm.
	readIndex(ctx context.Context) (uint64, error)
	waitApplied(ctx context.Context, index uint64) error
	// watch returns the applied index and a channel closed at the next
	// apply.
	watch() (uint64, <-chan struct{})
	// propose commits a signed command through the leader.
	propose(ctx context.Context, sg *fsm.Signed) (*fsm.Result, error)
	// call posts a JSON body to a member's node port.
	call(ctx context.Context, addr, path string, body, out any) (sent bool, err error)
	// raftState, appliedIndex, commitIndex, leader and servers report
	// Raft's view (servers: the voters of its configuration).
	raftState() raft.RaftState
	appliedIndex() uint64
	commitIndex() uint64
	leader() (addr, id string)
	servers() []raft.Server
	// eraseOldCopies takes a snapshot and erases the log, the snapshots
	// and the free pages older than it from the disk (erase.go).
	eraseOldCopies() (uint64, error)
}

var _ replicated = (*consensus)(nil)

// consensus is the replicated log of one node.
type consensus struct {
	cfg    Config
	log    *slog.Logger
	nodeID string
	fsm    *fsm.FSM
	rfsm   *raftFSM

	leaderReady atomic.Bool   // this node is leader and has committed an entry of its term
	becameReady chan struct{} // signalled when leaderReady turns true (tellCommits)
	// now is the clock of the promotion's stable period (tests set it);
	// stable holds, on the leader, what it has seen of each non-voter
	// (reconcileMembers, promote.go); promoted is signalled once the
	// leader has made a non-voter a voter, for the autopilot's
	// promote_node.
	now      func() time.Time
	stableMu sync.Mutex
	stable   map[raft.ServerID]*nonVoterWatch
	promoted chan struct{}
	verify   roundBatch[error]
	// readIndexes counts the read indexes this node confirmed as leader.
	readIndexes atomic.Uint64
	// diverged is set, for good, once this replica's chain hash differed
	// from the leader's (chain.go).
	diverged atomic.Pointer[divergence]
	// chainChecks counts the comparisons of this replica's chain hash
	// with the leader's that could be made (both knew theirs).
	chainChecks atomic.Uint64

	mu     sync.Mutex
	run    *raftRun // nil until started and once stopped
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// raftRun is what runs once the node is in a cluster.
type raftRun struct {
	tls       *nodeTLS
	routes    *portRoutes // the node port's connections, for this run
	store     *logStore
	logs      *logCache // store's last entries: what Raft reads back
	snaps     *raft.FileSnapshotStore
	transport *termGuard
	raft      *raft.Raft
	rpcServer *http.Server // HTTP/2, for callers of an earlier version
	calls     *callClient
	callsIn   *callServer
}

func newConsensus(cfg Config, log *slog.Logger, nodeID string, f *fsm.FSM) *consensus {
	return &consensus{cfg: cfg, log: log, nodeID: nodeID, fsm: f, rfsm: newRaftFSM(f, log, cfg.Metrics), now: time.Now,
		stable: map[raft.ServerID]*nonVoterWatch{}, promoted: make(chan struct{}, 1), becameReady: make(chan struct{}, 1)}
}

// current is the running Raft, or nil.
func (c *consensus) current() *raftRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run
}

// running returns the running Raft or a not-initialized error.
func (c *consensus) running() (*raftRun, error) {
	if run := c.current(); run != nil {
		return run, nil
	}
	return nil, Errorf(KindNotInitialized, "node %q is not part of a cluster yet: run keyctl cluster init or join", c.nodeID)
}

// start serves the node port, which the node bound when it was made, with
// t, opens the Raft stores in the data directory and Raft, and serves
// handler's node-to-node calls on the port.
func (c *consensus) start(port *portMux, t *nodeTLS, handler http.Handler) (err error) {
	run := &raftRun{tls: t}
	defer func() {
		if err != nil {
			run.close(c.log)
		}
	}()
	network := c.cfg.Network
	run.routes = port.open(t)
	advertise, err := net.ResolveTCPAddr("tcp", c.cfg.RaftAddr)
	if err != nil {
		return err
	}
	hlog := raftLogger(c.log)
	dir := filepath.Join(c.cfg.DataDir, raftDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if run.store, err = openLogStore(filepath.Join(dir, "raft.db")); err != nil {
		return fmt.Errorf("opening raft log: %w", err)
	}
	run.logs = newLogCache(run.store)
	run.transport = newTermGuard(raft.NewNetworkTransportWithLogger(&streamLayer{chanListener: run.routes.raft, tls: t, network: network, advertise: advertise}, 3, raftCallTimeout, hlog),
		raftCallTimeout, run.logs, c.cfg.HeartbeatTimeout, c.log)
	c.rfsm.logs.Store(run.store)
	if run.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog); err != nil {
		return err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.nodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = c.cfg.HeartbeatTimeout
	rc.ElectionTimeout = c.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = c.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = commitTimeout
	if c.cfg.commitTimeout > 0 {
		rc.CommitTimeout = c.cfg.commitTimeout
	}
	if c.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	}
	if c.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.cfg.SnapshotInterval
	}
	if c.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.TrailingLogs
	}
	if run.raft, err = raft.NewRaft(rc, c.rfsm, run.logs, run.store, run.snaps, run.transport); err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	run.transport.start(run.raft)
	rpcTLS := t.clientConfig(alpnRPC)
	run.calls = &callClient{network: network, tls: t.clientConfig(alpnCallFollow, alpnCall), legacy: &http.Client{Transport: &http.Transport{
		TLSClientConfig: rpcTLS,
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialTLS(ctx, network, addr, rpcTLS)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}}
	run.callsIn = &callServer{handler: handler, log: c.log}
	go run.callsIn.serve(run.routes.call)
	run.rpcServer = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	go run.rpcServer.Serve(tlsConnListener{run.routes.rpc})
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.run, c.cancel = run, cancel
	c.mu.Unlock()
	for _, loop := range []func(context.Context, *raftRun){c.watchLeadership, c.reconcileMembers, c.dropRemovedPeers, c.countLeaderChanges, c.tellCommits} {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			loop(ctx, run)
		}()
	}
	return nil
}

// handOff transfers leadership to another voter when this node is the
// leader, so that the cluster has a leader again as soon as the other
// voter has won its vote, not a heartbeat timeout after this node is
// gone. It is best effort: a node that cannot (no other voter, none
// caught up in time) stops as leader, and the others elect one.
func (c *consensus) handOff() {
	run := c.current()
	if run == nil || run.raft.State() != raft.Leader {
		return
	}
	if len(run.raft.GetConfiguration().Configuration().Servers) < 2 {
		return
	}
	if err := run.raft.LeadershipTransfer().Error(); err != nil {
		c.log.Warn("handing leadership over before stopping", "err", err)
		return
	}
	c.log.Info("handed leadership over before stopping")
}

// stop stops Raft and closes the port and the stores.
func (c *consensus) stop() {
	c.mu.Lock()
	run, cancel := c.run, c.cancel
	c.run, c.cancel = nil, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	if run != nil {
		run.close(c.log)
	}
}

func (run *raftRun) close(log *slog.Logger) {
	if run.raft != nil {
		if err := run.raft.Shutdown().Error(); err != nil {
			log.Warn("raft shutdown", "err", err)
		}
	}
	if run.rpcServer != nil {
		run.rpcServer.Close()
	}
	if run.callsIn != nil {
		run.callsIn.close()
	}
	if run.transport != nil {
		run.transport.Close()
	}
	if run.routes != nil {
		run.routes.close()
	}
	if run.store != nil {
		run.store.Close()
	}
	if run.calls != nil {
		run.calls.close()
	}
}

// watchLeadership marks the node ready to serve read indexes once it is
// leader and has committed an entry of its own term (a barrier), as a read
// index needs, and paces Raft's heartbeats for the node's role
// (paceHeartbeats).
func (c *consensus) watchLeadership(ctx context.Context, run *raftRun) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-run.raft.LeaderCh():
		case <-tick.C:
		}
		leader := run.raft.State() == raft.Leader
		c.paceHeartbeats(run, leader)
		if !leader {
			c.leaderReady.Store(false)
			continue
		}
		if !c.leaderReady.Load() && run.raft.Barrier(c.cfg.RequestTimeout).Error() == nil {
			c.leaderReady.Store(run.raft.State() == raft.Leader)
			select {
			case c.becameReady <- struct{}{}:
			default:
			}
		}
	}
}

// reconcileMembers runs on the leader: it makes Raft's servers the nodes
// that the state machine lists. Nodes are added to the state by signed
// commands, so a server exists only if an operator (or a join token)
// admitted it; a node leaves when the resharing without it completes. A
// new node enters as a non-voter, after the leader has prepared its log
// so that the node catches up from a snapshot (prepareCatchUp,
// joinsnap.go), and is promoted to voter once it has answered this
// leader for Config.PromoteAfter without a break, caught up with the log
// and keeping up (the autopilot's stable period, promote.go): a node that
// never comes up, or flaps, does not count in the quorum. Only once it is
// a voter does the autopilot loop propose promote_node, which starts the
// resharing that gives it a share (autopilot.go); the leader wakes it as
// soon as Raft has made the node a voter. It acts only once the leader is
// ready (watchLeadership):
// before its barrier, a new leader's state machine may still be replaying
// the log, and would list fewer nodes than the cluster has.
func (c *consensus) reconcileMembers(ctx context.Context, run *raftRun) {
	for {
		_, changed := c.rfsm.watch()
		c.stableMu.Lock()
		wait := time.Second
		if run.raft.State() == raft.Leader && c.leaderReady.Load() {
			wait = min(wait, c.reconcileOnce(ctx, run))
		} else {
			clear(c.stable)
		}
		c.stableMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// reconcileOnce is one pass of reconcileMembers. It returns how soon the
// next should run: a non-voter is looked at every nonVoterPoll, so that
// its stable period has no break unseen and a join is not up to a poll of
// a second longer than the stable period asks.
func (c *consensus) reconcileOnce(ctx context.Context, run *raftRun) time.Duration {
	next := time.Duration(1<<63 - 1)
	want := map[raft.ServerID]raft.ServerAddress{}
	initialized := false
	var applied uint64
	c.fsm.Read(func(s *fsm.State) {
		initialized = s.Initialized()
		applied = s.Applied
		for id, node := range s.Nodes {
			want[raft.ServerID(id)] = raft.ServerAddress(node.RaftAddr)
		}
	})
	if !initialized {
		return next
	}
	f := run.raft.GetConfiguration()
	if f.Error() != nil {
		return next
	}
	have := map[raft.ServerID]raft.ServerSuffrage{}
	for _, s := range f.Configuration().Servers {
		have[s.ID] = s.Suffrage
		if _, ok := want[s.ID]; !ok && s.ID != raft.ServerID(c.nodeID) {
			if err := run.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("removing raft server", "peer", s.ID, "err", err)
			} else {
				c.log.Info("removed raft server", "peer", s.ID)
			}
		}
	}
	for id, addr := range want {
		suffrage, ok := have[id]
		switch {
		case !ok:
			var others []string
			for _, s := range f.Configuration().Servers {
				if s.ID != raft.ServerID(c.nodeID) && s.ID != id {
					others = append(others, string(s.Address))
				}
			}
			c.prepareCatchUp(ctx, run, others) // joinsnap.go
			if err := run.raft.AddNonvoter(id, addr, 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("adding raft non-voter", "peer", id, "err", err)
			} else {
				c.log.Info("added raft non-voter", "peer", id, "addr", addr)
			}
			next = min(next, nonVoterPoll)
		case suffrage == raft.Nonvoter:
			promote, poll := c.watchNonVoter(ctx, run, id, string(addr), applied) // promote.go
			next = min(next, poll)
			if !promote {
				continue
			}
			since := c.stable[id].since
			if err := run.raft.AddVoter(id, addr, 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("promoting raft non-voter", "peer", id, "err", err)
				continue
			}
			c.log.Info("promoted raft non-voter to voter", "peer", id, "stable_for", c.now().Sub(since))
			delete(c.stable, id)
			select {
			case c.promoted <- struct{}{}:
			default:
			}
		}
	}
	// The leader removes itself last, once the others are in order.
	if _, ok := want[raft.ServerID(c.nodeID)]; !ok {
		if _, in := have[raft.ServerID(c.nodeID)]; in {
			if err := run.raft.RemoveServer(raft.ServerID(c.nodeID), 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("removing self from raft", "err", err)
			}
		}
	}
	return next
}

// bootstrap makes this node the one voter of a new cluster.
func (c *consensus) bootstrap() error {
	run, err := c.running()
	if err != nil {
		return err
	}
	cfg := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(c.nodeID), Address: raft.ServerAddress(c.cfg.RaftAddr)}}}
	if err := run.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("bootstrapping raft: %w", err)
	}
	return nil
}

func (c *consensus) watch() (uint64, <-chan struct{}) { return c.rfsm.watch() }

func (c *consensus) raftState() raft.RaftState {
	if run := c.current(); run != nil {
		return run.raft.State()
	}
	return raft.Shutdown
}

func (c *consensus) appliedIndex() uint64 {
	if run := c.current(); run != nil {
		return run.raft.AppliedIndex()
	}
	return 0
}

func (c *consensus) commitIndex() uint64 {
	if run := c.current(); run != nil {
		return run.raft.CommitIndex()
	}
	return 0
}

func (c *consensus) leader() (addr, id string) {
	if run := c.current(); run != nil {
		a, i := run.raft.LeaderWithID()
		return string(a), string(i)
	}
	return "", ""
}

func (c *consensus) servers() []raft.Server {
	run := c.current()
	if run == nil {
		return nil
	}
	f := run.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// propose commits a signed command through the leader and returns the
// state machine's result. It retries only while the entry has surely not
// reached a leader, so errors are definite (KindNoQuorum: no leader took
// it) unless a leader took it and did not confirm it (KindUnknownOutcome).
func (c *consensus) propose(ctx context.Context, sg *fsm.Signed) (*fsm.Result, error) {
	run, err := c.running()
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(sg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	for {
		res, err := c.proposeOnce(ctx, run, data)
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, Errorf(KindNoQuorum, "no leader accepted the write within %v (%v)", c.cfg.RequestTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notTaken tells whether Raft refused an entry before logging it, so that
// it surely did not happen: this node is not the leader, its queue stayed
// full, or it is handing its leadership over (which ends in another
// leader, or in this one leading on).
func notTaken(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}

// errRetry marks a failure worth another try against the next leader.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }

func retryable(err error) bool {
	var r errRetry
	return errors.As(err, &r)
}

func (c *consensus) proposeOnce(ctx context.Context, run *raftRun, data []byte) (*fsm.Result, error) {
	addr, id := run.raft.LeaderWithID()
	switch {
	case id == "":
		return nil, errRetry{errors.New("no leader known")}
	case string(id) == c.nodeID:
		start := time.Now()
		f := run.raft.Apply(data, time.Until(deadline(ctx)))
		if err := f.Error(); err != nil {
			switch {
			case notTaken(err):
				return nil, errRetry{err}
			case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
				// The entry may still commit under the next leader: sending
				// it again would only be refused as a replay.
				return nil, Errorf(KindUnknownOutcome, "leadership was lost before the write was confirmed: it may or may not have happened")
			}
			return nil, err
		}
		c.cfg.Metrics.RaftCommitSeconds.Observe(time.Since(start).Seconds())
		return f.Response().(*fsm.Result), nil
	default:
		var out fsm.Result
		sent, err := c.callWith(ctx, run, string(addr), "/internal/v1/apply", json.RawMessage(data), &out)
		switch {
		case err == nil:
			return &out, nil
		case KindOf(err) == kindNotLeader, !sent:
			return nil, errRetry{err}
		case KindOf(err) == KindInternal:
			return nil, Errorf(KindUnknownOutcome, "the leader did not answer the write (%v): it may or may not have happened", err)
		}
		return nil, err
	}
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(DefaultRequestTimeout)
}
