// Package fsm is keyquorum's replicated state machine: keys and their
// sealed material, rules, operators, nodes with their share indexes, and the
// cluster key's public commitments and epoch.
//
// It is pure and deterministic. Apply takes the bytes of one Raft log entry,
// the entry's index and the time the leader appended it, and returns a
// Result; it does no I/O, reads no clock and draws no randomness, so every
// replica that applies the same log reaches the same State. The only
// cryptography it needs beyond Ed25519 signature checks (the public checks
// of key-resharing deals) is injected as a DealChecker, so the package
// imports nothing of the project but its vocabulary (package vocab: error
// kinds, labels, machine IDs).
//
// Every log entry is a Signed command. Operator commands are verified
// against the operator keys the state holds; node commands (deals,
// resharing acknowledgements and complaints, reshare.go) against the node
// keys. A leader that is
// compromised can therefore refuse to commit, but cannot grant itself a
// rule, add a node or forge a deal: every replica re-checks the signature
// when it applies the entry.
//
// # Reading the state
//
// FSM.Read calls a function with the state under a read lock. The
// function changes nothing. After it returns, its caller may keep the
// slices it read (byte strings such as keys and certificates, lists such
// as the public polynomial or a round's members), and nothing else: maps,
// and the structs that maps and pointers lead to, are changed in place by
// later entries. Slices are safe to keep because no transition writes into
// a slice of the state: one that changes a slice puts a new slice in its
// place (slices.Clone before slices.DeleteFunc or an element's write;
// appending past a slice's end is allowed, since no reader sees beyond its
// own length, so a reader that appends copies first). The package's tests
// check it on every entry their harness applies (slices_test.go). A key
// (*Key) is never changed in place either: a transition puts a changed
// copy in its place (editKey), so that a checkpoint's copy-on-write clone
// of the keys stays as it was (checkpoint.go); the harness checks that too.
//
// Contract with the Raft adapter: Apply never fails for storage reasons (it
// holds everything in memory); a rejected command is a Result with an Error,
// and the state is unchanged by it. StateBytes is a deterministic encoding
// of the whole state (what a snapshot's checkpoint carries); Hash is a hash
// of the state kept up to date as entries apply (statehash.go), which
// checkpoints certify. A snapshot is untrusted input
// (checkpoint.go): Snapshot returns the last checkpoint of the state that t
// share holders certified, with their partials, and the entries applied
// since; Restore replaces the state only after verifying the certificate
// against the cluster key and replaying the entries through Apply.
package fsm
