// Package client is the Go client of a keyquorum cluster for operators
// and applications: keyctl, keyd dev, keybench, jepsen and the e2e tests
// use it.
//
// A Client calls one node's REST v1 API over HTTPS with an operator's
// certificate and key (Credentials), and does the client's side of the
// cryptography: secrets are sealed here to the cluster public key pinned
// in the Credentials (CreateSecret, CreateSealed, CompareAndSwap), releases
// are combined here from partials the holders sealed to a fresh ephemeral
// key (Get, CompareAndSwap's comparison), and a Tang key is dealt here to
// the share holders t members confirm (CreateTang, Confirm), so no node
// sees any of them whole, and no node alone chooses what they are sealed
// to (pin.go).
// InitCluster and Client.JoinNode form a cluster: they make the CA and
// issue node and operator certificates (package cluster/pki), only to a
// node whose identity the operator vouched for (JoinOptions) and that was
// started with the join token they present (CreateJoinToken).
// Package client/kxddir reads a kxd data directory for import, and
// client/jose makes Tang advertisements.
//
// It links neither Raft nor gossip nor bolt: what it shares with a node
// is in packages fsm, shamir, cluster/api and cluster/pki.
package client
