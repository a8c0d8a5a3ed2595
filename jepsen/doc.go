// Package jepsen is keyquorum's partition and chaos suite: it runs real
// keyd processes, each in its own network namespace, drives them through
// the public HTTPS API (client.Client) while a nemesis injects
// faults, and then checks what the clients saw.
//
// # The machine
//
// A run owns a set of network namespaces whose names start with "kqj-":
// kqj-ctl holds a bridge (kqj-br, 10.77.0.1/24 by default) and the
// process that drives the clients; kqj-s1, kqj-s2, ... each hold one node
// slot, with an eth0 at 10.77.0.(10+slot) whose peer is a port of the
// bridge. Nothing of the run lives in the host's namespace: no address,
// no route, no firewall rule. Faults are made inside the namespaces:
// partitions are iptables DROP rules in the nodes' namespaces (client
// traffic from the bridge address is never dropped), slow links are a
// tc qdisc on both ends of each node's veth, kills and pauses are
// signals to the keyd processes. Deleting the namespaces undoes all of
// it, which is what Teardown does, also for what a crashed run left.
//
// A run is two processes: the outer one (RunIsolated) sets up the
// namespaces, starts the inner one inside kqj-ctl with "ip netns exec",
// and tears everything down when it ends; the inner one (RunInner) forms
// the cluster, runs the workloads and the nemesis, heals, checks and
// writes the report.
//
// # Nemeses
//
// partition (two halves), isolate-leader, ring (overlapping majorities;
// with three nodes one link is cut and the node between the two others
// is a bridge), kill (kill -9 of one node, the leader, a majority or all,
// restarted at heal), pause (SIGSTOP of the same choices, SIGCONT at
// heal), member (remove a member, let
// the cluster reshare without it, then join a fresh node, which reshares
// again), slow (tc netem delay if the kernel has it, else a tbf rate
// limit), and the faults operators meet: disk-full (one node's data disk,
// a tmpfs of its own, filled to the last byte), snapshot-crash (a lagging
// node killed while it installs a snapshot), rolling-restart (every node
// restarted in turn, each caught up before the next) and clock (one
// node's wall clock far ahead, in keyd built with -tags
// keyquorum_clock_offset), and promotion (a member replaced, with a second
// fault while the fresh node waits as a non-voter for the autopilot to
// promote it). A run uses one of them or, with "mixed", a
// random schedule of all of them. Every choice comes from the run's seed, so a seed
// reproduces its schedule.
//
// # Workloads and checks
//
//   - register: compare-and-swap of secrets per key (keysrv's operation:
//     the SHA-256 of the old secret and a new secret, every written value
//     unique) with releases of the secret and reads of the key's version
//     (GET /v1/keys/NAME); each key's history is checked for
//     linearizability with porcupine. A write that timed out is an
//     unknown outcome: it may take effect at any time after it began.
//   - set: creates keys; after the faults heal, every key whose creation
//     was acknowledged must be released, with its secret, from every
//     node, and no key whose creation was refused may exist.
//   - revoke: releases racing a revocation; no release that began after
//     the revocation was acknowledged may succeed, and after healing
//     every node reports the key revoked.
//   - sign: signatures by quorum with an ed25519-frost key racing its
//     revocation; no signature for a request that began after the
//     revocation was acknowledged, and every signature verifies with
//     crypto/ed25519 under the key's public key.
//
// At the end every member's applied index and state machine hash must be
// equal, and no node's log may hold "panic:", "WARNING: DATA RACE" or
// "fatal error:". An operation may run into the client's deadline only
// while a node is paused or a link slowed: otherwise a node must answer,
// if only "no quorum", within its request timeout.
package jepsen
