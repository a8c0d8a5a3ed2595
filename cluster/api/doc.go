// Package api is what crosses the wire between a node (package cluster)
// and its clients, whatever the protocol: the error kinds every gateway
// maps to its own status codes, the status, identity and start request of
// a node, the context Tang shares are sealed under, and a blind release
// (SealedRelease), which the client checks and opens itself. It holds no
// behaviour of the node, so the operator's client (package client) speaks
// to a cluster with it without linking Raft, memberlist or bolt.
package api
