package fsm_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Regression tests for bugs found in package fsm, each asserting the
// documented behaviour.

// TestRefusedEntryDoesNotPrune: Apply prunes expired nonces and moves
// LastPrune (FSM.Apply calls FSM.prune) before it knows whether
// the entry will be refused, so a refused entry changes the state beyond
// the applied index, against the contract of Apply (its doc comment) and of
// the package (doc.go).
func TestRefusedEntryDoesNotPrune(t *testing.T) {
	for _, later := range []time.Duration{2 * time.Minute, 2*fsm.MaxClockSkew + 2*time.Minute} {
		h := newHarness(t)
		ready(h)
		before := h.snapshot()
		h.at = t0.Add(later)
		if res := h.do(op, addNodeCmd(nodeSpec(2))); codeOf(res) != fsm.CodeDenied {
			t.Fatalf("add_node by a non-admin: %v", res.Error)
		}
		assertUnchanged(t, before, h.snapshot())
	}
}

// TestFailedCombineLeavesStateUnchanged: when CombinePublic fails,
// transition.deal takes back the deal it appended with
// r.Deals[:len(r.Deals)-1]; if the round had no deal, Deals was nil and is
// now an empty slice, so the snapshot says "deals":[] instead of
// "deals":null and the refused entry changed the state's encoding (and
// Hash).
func TestFailedCombineLeavesStateUnchanged(t *testing.T) {
	h := newHarness(t)
	initialized(h)
	h.checker.combineErr = errors.New("cannot combine")
	before := h.snapshot()
	if res := h.do(node(1), dealCmd(h.round(), 1, "ok")); codeOf(res) != fsm.CodeInvalid {
		t.Fatalf("deal when CombinePublic fails: %v, want %q", res.Error, fsm.CodeInvalid)
	}
	assertUnchanged(t, before, h.snapshot())
}

// TestEntryTimeGoingBackDoesNotReopenReplays: freshness and nonce expiry
// are judged by the entry time, which the leader chooses (FSM.Apply's at), and
// Apply accepts it going backwards. Once a later entry has pruned a
// command's nonce (FSM.prune), an entry time set back near the command's
// IssuedAt makes the command fresh again with its nonce forgotten: the old
// entry applies a second time. A compromised leader, or one whose clock is
// more than MaxClockSkew behind the previous leader's, can so replay any
// signed command it has seen: here a rule an admin granted and then
// deleted comes back. The threat model (docs/threat-model.md) says a compromised
// leader can stop the cluster but not grant; making the time Apply uses
// monotonic (never before the latest entry time seen) closes this.
func TestEntryTimeGoingBackDoesNotReopenReplays(t *testing.T) {
	h := newHarness(t)
	ready(h)
	grant := h.entry(admin, putRuleCmd("r", op.ID, "db/*", fsm.OpGet))
	if res := h.apply(grant); res.Error != nil {
		t.Fatal(res.Error)
	}
	h.at = t0.Add(time.Minute)
	h.must(admin, deleteRuleCmd("r"))
	h.at = t0.Add(2*fsm.MaxClockSkew + 2*time.Minute)
	// A later entry prunes the grant's nonce; then the next leader's clock,
	// or a lie, says t0 again.
	h.must(admin, createKeyCmd("db/x"))
	h.at = t0
	if res := h.apply(grant); codeOf(res) != fsm.CodeClockSkew {
		t.Errorf("the grant applied again at its own time: %v, want %q", res.Error, fsm.CodeClockSkew)
	}
	if allowed(h, op, fsm.OpGet, "db/x") {
		t.Errorf("a deleted rule is back in force")
	}
}

// TestDKGWaitsForTheInitialNodes: a cluster founded for three nodes makes
// no key until the third has joined, so no node ever holds a share of a
// sharing with fewer holders than planned (with one, the founder would
// hold the secret itself).
func TestDKGWaitsForTheInitialNodes(t *testing.T) {
	h := newHarness(t)
	c := initCmd()
	c.Init.InitialNodes = 3
	h.must(admin, c)
	if r := h.state().Reshare; r != nil {
		t.Fatalf("a round started with one of three initial nodes: %+v", r)
	}
	h.admit(nodeSpec(2))
	if r := h.state().Reshare; r != nil {
		t.Fatalf("a round started with two of three initial nodes: %+v", r)
	}
	if res := h.do(admin, createKeyCmd("db/k")); codeOf(res) != fsm.CodeState {
		t.Fatalf("create before the cluster key: %v, want %q", res.Error, fsm.CodeState)
	}
	h.admit(nodeSpec(3))
	r := h.state().Reshare
	if r == nil || !r.Fresh || len(r.Members) != 3 || r.Needed != 3 || r.Threshold != 2 {
		t.Fatalf("with three nodes: round %+v, want a fresh 2-of-3 round needing 3 deals", r)
	}
	h.dealAll()
	if s := h.state(); s.Epoch != 1 || s.Threshold != 2 || len(s.Holders()) != 3 {
		t.Fatalf("after the DKG: epoch %d, t %d, %d holders; want 1, 2, 3", s.Epoch, s.Threshold, len(s.Holders()))
	}
}

func TestInitialNodesBounds(t *testing.T) {
	for _, n := range []int{0, -1, fsm.MaxNodes + 1} {
		h := newHarness(t)
		c := initCmd()
		c.Init.InitialNodes = n
		if res := h.do(admin, c); codeOf(res) != fsm.CodeInvalid {
			t.Errorf("initial nodes %d: %v, want %q", n, res.Error, fsm.CodeInvalid)
		}
	}
}

func TestAtMostMaxNodes(t *testing.T) {
	h := newHarness(t)
	h.must(admin, initCmd())
	for i := 2; i <= fsm.MaxNodes; i++ {
		h.must(admin, addNodeCmd(nodeSpec(i)))
	}
	if res := h.do(admin, addNodeCmd(nodeSpec(fsm.MaxNodes+1))); codeOf(res) != fsm.CodeState {
		t.Fatalf("node %d: %v, want %q", fsm.MaxNodes+1, res.Error, fsm.CodeState)
	}
}

// TestSetEncKeyLeavesTheRoundInProgress: a node's new encryption key is
// used by the next round; the round in progress keeps the key it started
// with, so deals already made can still be opened.
func TestSetEncKeyLeavesTheRoundInProgress(t *testing.T) {
	h := newHarness(t)
	h.must(admin, initCmd())
	h.dealAll()
	h.admit(nodeSpec(2))
	old := h.state().Reshare.Member("node-1").EncKey
	fresh := bytes.Repeat([]byte{7}, 32)
	h.must(node(1), &fsm.Command{Type: fsm.TypeSetEncKey, SetEncKey: fresh})
	s := h.state()
	if !bytes.Equal(s.Nodes["node-1"].EncKey, fresh) {
		t.Fatalf("node key not replaced")
	}
	if !bytes.Equal(s.Reshare.Member("node-1").EncKey, old) {
		t.Fatalf("the round in progress changed its member's key")
	}
	h.admit(nodeSpec(3))
	if got := h.state().Reshare.Member("node-1").EncKey; !bytes.Equal(got, fresh) {
		t.Fatalf("the next round uses %x, want the new key", got)
	}
	for _, bad := range [][]byte{nil, make([]byte, 31)} {
		if res := h.do(node(1), &fsm.Command{Type: fsm.TypeSetEncKey, SetEncKey: bad}); codeOf(res) != fsm.CodeInvalid {
			t.Errorf("key of %d bytes: %v, want %q", len(bad), res.Error, fsm.CodeInvalid)
		}
	}
	if res := h.do(admin, &fsm.Command{Type: fsm.TypeSetEncKey, SetEncKey: fresh}); codeOf(res) != fsm.CodeBadSignature {
		t.Errorf("an operator set a node key: %v, want %q", res.Error, fsm.CodeBadSignature)
	}
}

// TestUnverifiedEntryDoesNotMoveTheClock (issue 9, hole 7): the state
// machine's clock followed the leader's entry time before the entry was
// verified, so one junk entry stamped ten years ahead made every later
// operator command fail as clock_skew: a single lying leader froze every
// revoke, removal and rule change for good.
func TestUnverifiedEntryDoesNotMoveTheClock(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createKeyCmd("db/x"))
	h.at = t0.Add(10 * 365 * 24 * time.Hour)
	// Well formed, signed by nobody the cluster knows.
	if res := h.do(stranger, createKeyCmd("db/y")); res.Error == nil {
		t.Fatal("a stranger's entry was accepted")
	}
	h.at = t0
	if res := h.do(admin, revokeKeyCmd("db/x")); res.Error != nil {
		t.Fatalf("a revoke after a junk entry from the future: %v", res.Error)
	}
}

// TestNodeSignedEntryDoesNotMoveTheClock: a compromised node signs a
// command it may sign (a resharing deal) issued ten years ahead, and a
// compromised leader stamps it so: the command is judged at that time, but
// only operators' signed issue times move the clock, so operators' commands
// still apply afterwards.
func TestNodeSignedEntryDoesNotMoveTheClock(t *testing.T) {
	h := newHarness(t)
	initialized(h)
	future := 10 * 365 * 24 * time.Hour
	h.at = t0.Add(future)
	if res := h.do(node(1), issued(dealCmd(h.round(), 1, "ok"), future)); res.Error != nil {
		t.Fatalf("the deal from the future: %v", res.Error)
	}
	h.at = t0
	if res := h.do(admin, addOperatorCmd(operatorSpec(admin2, "bob", true))); res.Error != nil {
		t.Fatalf("an operator command after a node's entry from the future: %v", res.Error)
	}
}
