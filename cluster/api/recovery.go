package api

import "github.com/keyquorum/keyquorum/fsm"

// The files of a rebuild from the recovery kit (docs/disaster-recovery.md,
// drill 2). An admin makes the plan (keyctl recovery plan) from the new
// nodes' identities; each officer deals their kit share to the plan's
// nodes (keyd recovery deal); the admin signs the rebuild with the
// officers' deals and issues the new nodes' certificates (keyctl recovery
// sign); each new node writes it into its data directory (keyd recovery
// rebuild).

// RebuildPlan is who the cluster is rebuilt on.
type RebuildPlan struct {
	ClusterID string `json:"cluster_id"`
	// Holders are the t holders of the lost cluster whose kit deals the
	// officers combine over: deals whose sub-shares opened for every
	// officer taking part (keyd recovery open says which did).
	Holders []uint32 `json:"holders"`
	// Threshold is t of the rebuilt cluster.
	Threshold int `json:"threshold"`
	// Nodes are the new nodes, with their share indexes.
	Nodes []*fsm.Node `json:"nodes"`
}

// RebuildOrder is what every new node is given: the admin-signed rebuild
// entry and what the node needs to join the cluster's network.
type RebuildOrder struct {
	Entry     *fsm.Signed       `json:"entry"`
	CACert    []byte            `json:"ca_cert"`
	GossipKey []byte            `json:"gossip_key"`
	NodeCerts map[string][]byte `json:"node_certs"` // PEM, by node ID
}
