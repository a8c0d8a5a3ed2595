package fsm_test

import (
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestForgedSnapshotAddsAdmin is the attack of issue 9: anyone who can
// send a replica a Raft InstallSnapshot edits the state to make its own key
// an admin operator. The replica must refuse it and keep its state.
func TestForgedSnapshotAddsAdmin(t *testing.T) {
	h := newHarness(t)
	withKey(h)
	var st map[string]json.RawMessage
	if err := json.Unmarshal(h.snapshot(), &st); err != nil {
		t.Fatal(err)
	}
	var ops map[string]*fsm.Operator
	json.Unmarshal(st["operators"], &ops)
	ops[stranger.ID] = operatorSpec(stranger, "eve", true)
	st["operators"], _ = json.Marshal(ops)
	forged, _ := json.Marshal(st)

	victim := fsm.New(&fakeChecker{})
	err := victim.Restore(forged)
	var admin bool
	victim.Read(func(s *fsm.State) { admin = s.Operators[stranger.ID] != nil && s.Operators[stranger.ID].Admin })
	if err == nil || admin {
		t.Fatalf("a forged snapshot made %s an admin (Restore error: %v)", stranger.ID, err)
	}
}
