package cluster

import (
	"slices"
	"strings"
	"sync"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// Gateways that keep keys assembled in memory (Keyless SSL) report them
// here, so that the node's status says what it holds, and watch the
// applied state to drop a key as soon as a revoke, a destroy or an access
// change applies.

// HeldKey is a key a gateway keeps in memory (api.HeldKey).
type HeldKey = api.HeldKey

// heldKeys are the keys this node's gateways report holding, by gateway.
type heldKeys struct {
	mu sync.Mutex
	by map[string][]HeldKey
}

// ReportHeld replaces the list of keys a gateway of this node holds
// assembled in memory.
func (n *Node) ReportHeld(gateway string, held []HeldKey) {
	n.held.mu.Lock()
	defer n.held.mu.Unlock()
	if n.held.by == nil {
		n.held.by = map[string][]HeldKey{}
	}
	n.held.by[gateway] = slices.Clone(held)
}

// Held is what this node's gateways hold assembled in memory, by name.
func (n *Node) Held() []HeldKey {
	n.held.mu.Lock()
	defer n.held.mu.Unlock()
	var out []HeldKey
	for _, l := range n.held.by {
		out = append(out, l...)
	}
	slices.SortFunc(out, func(a, b HeldKey) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Gateway, b.Gateway)
	})
	return out
}

// WatchApplied returns the index this node's state machine has applied
// and a channel closed at its next apply.
func (n *Node) WatchApplied() (uint64, <-chan struct{}) { return n.watch() }
