package fsm_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestBatchAppliesAsOneAtATime: entries applied in a batch, their
// signatures verified ahead against the state the batch starts from
// (FSM.NewBatch), give the results and the state that applying them one
// at a time gives, each checked against the state the one before it
// left: an operator removed earlier in the batch cannot sign a later
// entry, though their signature verified against the starting state; one
// added earlier in the batch can; a bad signature or an unknown signer is
// refused.
func TestBatchAppliesAsOneAtATime(t *testing.T) {
	h := newHarness(t)
	ready(h)
	setup := len(h.log)
	entry := func(p principal, c *fsm.Command) {
		h.index++
		h.log = append(h.log, logEntry{h.index, h.at, h.entry(p, c)})
	}
	for i := range 20 { // more than a chunk of a batch's verification ahead
		entry(op, createKeyCmd(fmt.Sprintf("db/op/%d", i)))
	}
	entry(admin, addOperatorCmd(operatorSpec(admin2, "carol", true)))
	entry(admin2, createKeyCmd("db/carol")) // a signer the starting state does not have
	entry(admin, removeOperatorCmd(op.ID))
	entry(op, createKeyCmd("db/op/removed")) // verified ahead, but op is gone: refused
	entry(stranger, createKeyCmd("db/stranger"))
	entry(admin, createKeyCmd("db/flipped"))
	var sg fsm.Signed
	if err := json.Unmarshal(h.log[len(h.log)-1].data, &sg); err != nil {
		t.Fatal(err)
	}
	sg.Signature[0] ^= 1
	h.log[len(h.log)-1].data = encode(t, &sg)
	for i := range 20 {
		entry(admin, createKeyCmd(fmt.Sprintf("db/admin/%d", i)))
	}

	replay := func(batch int) ([]string, [32]byte) {
		fsm.ForgetSignaturesForTest()
		f := fsm.New(h.checker)
		for _, e := range h.log[:setup] {
			if res := f.Apply(e.index, e.at, e.data); res.Error != nil {
				t.Fatalf("setup entry %d: %v", e.index, res.Error)
			}
		}
		var results []string
		rest := h.log[setup:]
		for lo := 0; lo < len(rest); lo += batch {
			es := rest[lo:min(lo+batch, len(rest))]
			var entries []fsm.Entry
			for _, e := range es {
				entries = append(entries, fsm.Entry{Index: e.index, Time: e.at.UnixNano(), Data: e.data})
			}
			b := f.NewBatch(entries)
			for i, e := range es {
				b.Ahead(i)
				r, _ := json.Marshal(f.Apply(e.index, e.at, e.data))
				results = append(results, string(r))
			}
		}
		sum, err := f.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return results, sum
	}
	want, wantSum := replay(1)
	for i, code := range map[int]fsm.Code{23: fsm.CodeBadSignature, 24: fsm.CodeBadSignature, 25: fsm.CodeBadSignature} {
		var res fsm.Result
		json.Unmarshal([]byte(want[i]), &res)
		if res.Error == nil || res.Error.Code != code {
			t.Fatalf("one at a time, entry %d gave %s, want %s", i, want[i], code)
		}
	}
	for _, batch := range []int{2, 16, 64} {
		got, sum := replay(batch)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("batches of %d: entry %d gave %s, one at a time %s", batch, i, got[i], want[i])
			}
		}
		if sum != wantSum {
			t.Errorf("batches of %d: the state hash differs from one at a time's", batch)
		}
	}
}
