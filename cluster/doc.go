// Package cluster is one keyquorum node: Raft (hashicorp/raft with
// raft-boltdb) replicating the fsm state machine, memberlist gossip for
// health, the node-to-node protocol, and the operations every gateway
// adapts (the Service interface).
//
// # Ports
//
// A node has one TLS port for Raft and node-to-node calls, told apart by
// ALPN; both ends present certificates of the cluster CA with the node
// role and check the peer's on dial and on accept. Gossip has its own
// port, encrypted with the cluster's gossip key. Gateways listen on ports
// of their own.
//
// # Consensus and operations
//
// A Node's consensus (consensus.go, read.go) is Raft with its stores and
// the node port's transport, leadership, read indexes, proposals and the
// node-to-node calls. The operations (releases and exchanges, machines,
// resharing, checkpoints, erasure, status) use it only through a small
// interface (replicated). An operation that needs t share holders follows
// one coordinator protocol (coordinator.go): an authorized read at a read
// index, then a gather from the holders; each holder runs one set of
// checks (holder.go).
//
// # Consistency
//
// Every write goes through Raft. Reads that authorize something (a
// release, a listing) use a read index: the leader records the last
// index its state machine has applied and confirms its leadership with a
// round of heartbeats; the reader waits until its state machine has
// applied that index. A share holder does not trust the coordinator's
// read index: it gets its own from the leader and waits for it before it
// checks the rules itself (holder.go), so once a revoke is acknowledged no
// release that starts afterwards succeeds on any node. Requests are
// bounded by Config.RequestTimeout: a node without a quorum answers
// KindNoQuorum instead of hanging (docs/architecture.md).
//
// # Keys
//
// Secrets are sealed to the cluster public key by threshold ElGamal (see
// package shamir); a release gathers t partial decryptions, each with a
// DLEQ proof. For an operator's or a machine's request the holders seal
// them to the requester's ephemeral key and the requester checks and
// combines them; only for a gateway node's own request does the
// coordinator (docs/coordinator.md). The cluster secret is never
// rebuilt. Shares live only in shares.json in the data directory, are
// changed only by resharing rounds driven through the log, and are erased
// when an epoch ends.
package cluster
