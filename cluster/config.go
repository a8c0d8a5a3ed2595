package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
)

// Defaults, tuned for nodes on one LAN, so that releases resume within
// 500 ms of a leader's death (issue 10): a follower that hears nothing
// from the leader for a random 150-300 ms (Raft's heartbeat timeout, HT
// to 2 HT) stands; with pre-vote (on in hashicorp/raft v1.7, never
// disabled here) it first asks whether the others lost the leader too,
// so a follower that was only slow, or is cut off alone, does not raise
// the term and depose a working leader. The leader sends heartbeats every
// HT/5 to 2 HT/5 (30-60 ms: its own heartbeat timeout is twice the
// configured one, commits.go), a cost an idle leader pays whatever it
// does; it steps down when it has not heard from a quorum for the lease
// (HT). A leader that stops gracefully hands its leadership over first
// (consensus.handOff), so a planned restart costs no election timeout.
// SetRaftTiming derives the election timeout and the lease (both HT) from
// the heartbeat timeout.
const (
	DefaultHeartbeatTimeout = 150 * time.Millisecond
	DefaultRequestTimeout   = 3 * time.Second
	DefaultShutdownTimeout  = 10 * time.Second
	// DefaultRetryJoinBackoff is the longest wait between two rounds of a
	// retry-join; the first rounds are a second apart.
	DefaultRetryJoinBackoff = 30 * time.Second
)

// Config is one node's configuration.
type Config struct {
	// NodeID names the node in Raft and in the cluster's state.
	NodeID string
	// DataDir holds the node's identity, Raft log, snapshots and shares.
	DataDir string
	// RaftAddr is host:port for Raft and node-to-node calls (one TLS port,
	// protocols told apart by ALPN). Peers dial it as given.
	RaftAddr string
	// GossipAddr is host:port for memberlist (UDP and TCP).
	GossipAddr string
	// APIAddr is host:port where the node's gateway serves clients; the
	// node advertises it to peers and clients.
	APIAddr string

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// RequestTimeout bounds one release, read or write end to end, so a
	// node without quorum answers "no quorum" instead of hanging.
	RequestTimeout time.Duration

	// Raft snapshots: taken every SnapshotInterval once SnapshotThreshold
	// entries were appended since the last, keeping TrailingLogs entries
	// for followers that lag. Zero means Raft's default.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// CheckpointEvery is how often, in log indexes, the state machine
	// takes a checkpoint for the holders to certify (fsm.FSM's field of
	// the same name); 0 means fsm.DefaultCheckpointEvery. Every node of a
	// cluster must use the same value.
	CheckpointEvery uint64

	// Network carries the node port; nil means TCP.
	Network Network
	// JoinToken is what an unjoined node requires of a start request
	// (keyd --join-token): whoever reaches the node first cannot start it
	// into a cluster without it. When empty, the node makes a random one
	// and keeps it in JoinTokenPath(DataDir) until it joins.
	JoinToken string

	// PromoteAfter is how long a new member stays a Raft non-voter
	// answering the leader without a break, counted from its first
	// answer, before the leader promotes it, once it has also caught up
	// and kept up (promote.go); 0 promotes it as soon as it has.
	PromoteAfter time.Duration

	// RetryJoin, for a node not in a cluster yet, are where it asks to
	// join by itself with JoinToken (autojoin.go): "host:port" (a name
	// stands for every address it resolves to) or "srv:NAME" (the targets
	// of NAME's SRV records). JoinCAFingerprint (api.CAFingerprint) is the
	// cluster's: the node joins no other. JoinPeer carries the requests.
	RetryJoin         []string
	JoinCAFingerprint string
	JoinPeer          JoinPeer
	// RetryJoinBackoff is the longest wait between two rounds of asking
	// (DefaultRetryJoinBackoff when 0).
	RetryJoinBackoff time.Duration

	// commitTimeout replaces the commit timeout (commits.go) when not
	// zero: tests set it long to show that commands do not wait for it.
	commitTimeout time.Duration

	Logger *slog.Logger
	// AuditLog is the audit log's path; empty means DefaultAuditFile in
	// DataDir. AuditBestEffort lets the node go on releasing when it
	// cannot write the log; by default it refuses (auditing.go).
	AuditLog        string
	AuditBestEffort bool

	// Metrics are where the node records what it measures; nil means a
	// new set (metrics.New).
	Metrics *metrics.Set
}

// DefaultConfig returns a configuration with the default timeouts; the
// caller sets the node ID, data directory and addresses.
func DefaultConfig() Config {
	c := Config{RequestTimeout: DefaultRequestTimeout, Logger: slog.Default()}
	c.SetRaftTiming(DefaultHeartbeatTimeout)
	return c
}

// SetRaftTiming sets Raft's heartbeat and election timeouts and the
// leader lease to heartbeat, the proportions of the defaults. A longer
// one (keyd --heartbeat-timeout) suits hosts that starve a node of CPU for
// longer than a LAN's defaults allow, at the price of a slower failover.
//
// The lease is the whole heartbeat timeout, the most Raft allows, because
// a leader heartbeats at half a follower's pace (leaderHeartbeatFactor):
// with the lease at two thirds, a leader stalled for 40 ms between two
// heartbeats 60 ms apart would miss it and step down (it did, idle, on a
// machine at a load of 11). At the whole timeout a step-down needs a
// stall of 90 ms, against 70 ms with heartbeats twice as often and the
// lease at two thirds. Reads do not rely on the lease: a read index is
// confirmed by a round of heartbeats (read.go).
func (c *Config) SetRaftTiming(heartbeat time.Duration) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = heartbeat, heartbeat, heartbeat
}

// validateRetryJoin checks what a node that is not in a cluster yet needs
// to join by itself; a node in a cluster ignores RetryJoin.
func (c *Config) validateRetryJoin() error {
	if c.JoinToken == "" || c.JoinCAFingerprint == "" || c.JoinPeer == nil {
		return errors.New("retry-join needs the join token and the cluster's CA fingerprint")
	}
	if _, _, err := api.ParseJoinToken(c.JoinToken); err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	return nil
}

func (c *Config) validate() error {
	if c.NodeID == "" {
		return errors.New("node ID is empty")
	}
	if c.DataDir == "" {
		return errors.New("data directory is empty")
	}
	for name, addr := range map[string]string{"raft": c.RaftAddr, "gossip": c.GossipAddr, "API": c.APIAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s address %q: %w", name, addr, err)
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return errors.New("leader lease timeout must not exceed the heartbeat timeout")
	}
	if c.RequestTimeout <= 0 {
		return errors.New("request timeout must be positive")
	}
	if c.RetryJoinBackoff == 0 {
		c.RetryJoinBackoff = DefaultRetryJoinBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New()
	}
	if c.Network == nil {
		c.Network = tcpNetwork{}
	}
	return nil
}
