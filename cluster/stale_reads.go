//go:build keyquorum_stale_reads

package cluster

// A deliberately broken build for the jepsen suite's own test: every read
// index is the node's local applied index, so a node cut off from the
// leader serves its stale state as if it were current, and share holders
// asked with such an index do not wait either. Never ship it.
func init() { staleReads = true }
