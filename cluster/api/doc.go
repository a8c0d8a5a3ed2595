// Package api is what crosses the wire between a node (package cluster)
// and its clients, whatever the protocol: the error kinds (names for those
// of package vocab, whose one table gives each gateway its status
// codes), the status, identity and start request of a node, the context
// Tang shares are sealed under, the check of a blind release
// (OpenRelease) and of holders' proofs of possession (PossessionCheck),
// which the client runs itself. It holds no
// behaviour of the node, so the operator's client (package client) speaks
// to a cluster with it without linking Raft, memberlist or bolt.
package api
