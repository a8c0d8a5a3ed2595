package fsm_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestLogAheadAppliesAsOneAtATime: a restarted node's log after its
// snapshot, its signatures all verified ahead against the restored state
// before the first Apply (FSM.VerifyLogAhead, as a node waiting for the
// leader's commit index does), gives the results and the state that
// applying the entries one at a time without it gives: an entry signed by
// an operator whom an earlier entry of the same log removed is refused,
// though its signature was verified ahead (the memo holds only "this
// signature by this key over these bytes is valid"); one by an operator
// added earlier in the log is applied; a bad signature and an unknown
// signer are refused.
func TestLogAheadAppliesAsOneAtATime(t *testing.T) {
	h := newHarness(t)
	ready(h)
	setup := len(h.log)
	entry := func(p principal, c *fsm.Command) {
		h.index++
		h.log = append(h.log, logEntry{h.index, h.at, h.entry(p, c)})
	}
	for i := range 300 { // more than a chunk of LogAhead's
		entry(op, createKeyCmd(fmt.Sprintf("db/op/%d", i)))
	}
	entry(admin, addOperatorCmd(operatorSpec(admin2, "carol", true)))
	entry(admin2, createKeyCmd("db/carol")) // a signer the restored state does not have
	entry(admin, removeOperatorCmd(op.ID))
	entry(op, createKeyCmd("db/op/removed")) // verified ahead, but op is gone: refused
	removed := h.log[len(h.log)-1]
	entry(stranger, createKeyCmd("db/stranger"))
	entry(admin, createKeyCmd("db/flipped"))
	var sg fsm.Signed
	if err := json.Unmarshal(h.log[len(h.log)-1].data, &sg); err != nil {
		t.Fatal(err)
	}
	sg.Signature[0] ^= 1
	h.log[len(h.log)-1].data = encode(t, &sg)
	for i := range 300 {
		entry(admin, createKeyCmd(fmt.Sprintf("db/admin/%d", i)))
	}

	replay := func(ahead bool) ([]string, [32]byte) {
		fsm.ForgetSignaturesForTest()
		f := fsm.New(h.checker)
		for _, e := range h.log[:setup] {
			if res := f.Apply(e.index, e.at, e.data); res.Error != nil {
				t.Fatalf("setup entry %d: %v", e.index, res.Error)
			}
		}
		rest := h.log[setup:]
		var a *fsm.LogAhead
		if ahead {
			byIndex := map[uint64][]byte{}
			for _, e := range rest {
				byIndex[e.index] = e.data
			}
			a = f.VerifyLogAhead(rest[0].index-1, rest[len(rest)-1].index, func(i uint64) ([]byte, bool) {
				d, ok := byIndex[i]
				return d, ok
			})
			defer a.Stop()
			a.Wait(removed.index) // verified up to it before the first Apply
			if !fsm.VerifiedAheadForTest(op.pub(), removed.data) {
				t.Fatal("the removed operator's entry was not verified ahead: the test shows nothing")
			}
		}
		var results []string
		for _, e := range rest {
			if a != nil {
				a.Wait(e.index)
			}
			r, _ := json.Marshal(f.Apply(e.index, e.at, e.data))
			results = append(results, string(r))
		}
		sum, err := f.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return results, sum
	}
	want, wantSum := replay(false)
	for _, i := range []int{303, 304, 305} {
		var res fsm.Result
		json.Unmarshal([]byte(want[i]), &res)
		if res.Error == nil || res.Error.Code != fsm.CodeBadSignature {
			t.Fatalf("one at a time, entry %d gave %s, want %s", i, want[i], fsm.CodeBadSignature)
		}
	}
	got, sum := replay(true)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("verified ahead: entry %d gave %s, one at a time %s", i, got[i], want[i])
		}
	}
	if sum != wantSum {
		t.Error("verified ahead: the state hash differs from one at a time's")
	}
}
