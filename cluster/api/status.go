package api

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// Status is one node's view of the cluster.
type Status struct {
	ClusterID string `json:"cluster_id"`
	Node      string `json:"node"` // the node that answered
	Leader    string `json:"leader"`
	Epoch     uint64 `json:"epoch"`
	N         int    `json:"n"` // share holders of the epoch
	Threshold int    `json:"threshold"`
	// InitialNodes is how many members the first key waits for.
	InitialNodes int            `json:"initial_nodes"`
	PublicKey    []byte         `json:"public_key"`
	Applied      uint64         `json:"applied"`
	Resharing    *RoundStatus   `json:"resharing,omitempty"`
	Members      []MemberStatus `json:"members"`
	// FailureTolerance is how many more share holders may fail before
	// releases stop: the holders the answering node reaches, less the
	// threshold (negative: releases have stopped). QuorumTolerance is the
	// same for writes: the Raft voters it reaches, less a majority of the
	// voters.
	FailureTolerance int `json:"failure_tolerance"`
	QuorumTolerance  int `json:"quorum_tolerance"`
	// RemoveDeadAfter is the autopilot's period, 0 while it is off.
	RemoveDeadAfter time.Duration `json:"remove_dead_after,omitempty"`
	// Recovery is the recovery kit, nil when the cluster has none.
	Recovery *RecoveryKitStatus `json:"recovery,omitempty"`
}

// RecoveryKitStatus is the recovery kit as the state has it
// (docs/disaster-recovery.md).
type RecoveryKitStatus struct {
	Officers  int    `json:"officers"`  // m
	Threshold int    `json:"threshold"` // k
	Epoch     uint64 `json:"epoch"`     // the epoch whose holders dealt it
	Dealt     int    `json:"dealt"`     // holders that dealt it
	Needed    int    `json:"needed"`    // deals that make it usable (t of Epoch)
	Usable    bool   `json:"usable"`
}

// MemberStatus is one member as the answering node sees it.
type MemberStatus struct {
	ID         string `json:"id"`
	APIAddr    string `json:"api_addr"`
	RaftAddr   string `json:"raft_addr"`
	GossipAddr string `json:"gossip_addr"`
	Index      uint32 `json:"index"`
	Holder     bool   `json:"holder"`
	Leaving    bool   `json:"leaving"`
	// Pending says the member was admitted once the cluster had its key
	// and waits for its promotion: the leader makes it a Raft voter after
	// its stable period, then the round that gives it a share starts.
	Pending   bool   `json:"pending,omitempty"`
	RaftState string `json:"raft_state"` // as the member reports it, or "unreachable"
	Applied   uint64 `json:"applied"`
	Health    string `json:"health"` // from gossip: alive, suspect, dead, or unknown
	// Voter says whether the member votes in Raft (a node that has just
	// joined enters as a non-voter until the autopilot promotes it).
	Voter bool `json:"voter"`
	// SignKey is the member's Ed25519 identity key, which Tang shares are
	// sealed to.
	SignKey []byte `json:"sign_key"`
	// StateHash is the SHA-256 of the member's state machine, hex: members
	// at the same Applied index must have the same hash.
	StateHash string `json:"state_hash"`
	// Held are the keys the member's gateways keep assembled in memory.
	Held []HeldKey `json:"held,omitempty"`
	// Diverged, when set, says why the member serves no share: it found
	// that its log differs from the leader's, and an operator must rebuild
	// it (docs/operations.md, "A diverged replica").
	Diverged string `json:"diverged,omitempty"`
}

// HeldKey is a key a node's gateway keeps assembled in memory (a Keyless
// SSL key within its assemble_ttl), until Until at the latest: the node
// drops it then, or as soon as it applies a revoke, a destroy, a new
// version or an access change.
type HeldKey struct {
	Name    string    `json:"name"`
	Gateway string    `json:"gateway"`
	Version uint64    `json:"version"`
	Until   time.Time `json:"until"`
}

// RoundStatus describes a resharing round in progress.
type RoundStatus struct {
	Round     uint64   `json:"round"`
	Fresh     bool     `json:"fresh"`
	Threshold int      `json:"threshold"`
	Members   []string `json:"members"`
	Deals     int      `json:"deals"`
	Needed    int      `json:"needed"`
	Acks      int      `json:"acks"`
	// Disqualified are the dealers an upheld complaint left out; Aborted
	// says why the round cannot complete (an admin's restart_reshare
	// starts a new one).
	Disqualified []uint32 `json:"disqualified,omitempty"`
	Aborted      string   `json:"aborted,omitempty"`
}

// Identity is what an operator needs to admit a node.
type Identity struct {
	NodeID     string `json:"node_id"`
	SignKey    []byte `json:"sign_key"`
	EncKey     []byte `json:"enc_key"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	GossipAddr string `json:"gossip_addr"`
	Joined     bool   `json:"joined"`
}

// StartRequest starts an unjoined node into a cluster. An operator's tool
// sends it after issuing the node's certificate.
type StartRequest struct {
	ClusterID string `json:"cluster_id"`
	CACert    []byte `json:"ca_cert"`
	NodeCert  []byte `json:"node_cert"`
	GossipKey []byte `json:"gossip_key"`
	// ClusterKey, when the operator has pinned it, is the cluster public
	// key: the node installs no snapshot for another key.
	ClusterKey []byte `json:"cluster_key,omitempty"`
	// JoinToken is the token the node was started with (keyd --join-token,
	// or the one it wrote to its data directory): a node refuses a start
	// request without it, so whoever reaches an unjoined node first cannot
	// start it into a cluster of their own.
	JoinToken string `json:"join_token"`
	// JoinCACert and JoinCAKey, when the operator gave the cluster a join
	// CA (keyctl cluster init --auto-join), let the node admit nodes that
	// join by themselves with a join token (keyd --retry-join).
	JoinCACert []byte `json:"join_ca_cert,omitempty"`
	JoinCAKey  []byte `json:"join_ca_key,omitempty"`
	// Init, for the first node only, is the operator-signed init command:
	// the node bootstraps Raft alone and applies it as the first entry.
	// Other nodes start empty and wait for the leader to add them.
	Init *fsm.Signed `json:"init,omitempty"`
}

// TangShareContext binds a Tang share sealed to a node to the cluster and
// the key's exchange key id. keyctl seals with it; holders open with it.
func TangShareContext(clusterID, kid string) []byte {
	return []byte(vocab.LabelTangShare + "\x00" + clusterID + "\x00" + kid)
}

// RSAShareInfo binds a threshold RSA share sealed to a node (shamir.Seal
// to its identity key) to the cluster, the key's name and public key, and
// the share's index. keyctl seals with it; holders open with it.
func RSAShareInfo(clusterID, name string, public []byte, index uint32) []byte {
	h := sha256.Sum256(public)
	info := []byte(vocab.LabelRSAShare + "\x00" + clusterID + "\x00" + name + "\x00")
	info = append(info, h[:]...)
	return binary.BigEndian.AppendUint32(info, index)
}
