package cluster

// staleReads, when true, makes readIndex answer with the node's own
// applied index instead of asking the leader: reads are served from
// whatever the node has, however stale. Only the deliberately broken
// build sets it (stale_reads.go, build tag keyquorum_stale_reads), so
// that the jepsen suite can show it catches non-linearizable reads.
var staleReads bool
