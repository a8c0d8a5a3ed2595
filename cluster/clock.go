package cluster

import "time"

// now is the node's wall clock, which every decision that depends on the
// time of day reads: a signed request's freshness, a key's expiry, a
// nonce's lifetime, the issue time of the node's own commands. It is
// time.Now, except in the jepsen suite's build (clock_offset.go, build
// tag keyquorum_clock_offset), where it runs ahead by an offset the suite
// changes while the node runs, to put one node's clock far ahead. Never
// ship that build.
var now = time.Now
