package fsm_test

import (
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestTransitExport: a transit key is created non-exportable unless its
// create says so; no command changes the flag afterwards (a rotation
// keeps it). Every holder refuses an export: of a non-exportable key as
// denied, without a rule for export as denied, and of an exportable key
// as not built (invalid) — the wrapped export itself is not built yet.
func TestTransitExport(t *testing.T) {
	exportable := transitKeyCmd("enc/x")
	exportable.CreateKey.Transit.Exportable = true
	setup := func(h *harness) {
		withTransit(h)
		h.must(admin, exportable)
		h.must(admin, rotateCmd("enc/x", 0x53))
		h.must(admin, configureCmd("enc/x", 2))
		h.must(admin, putRuleCmd("op-export", op.ID, "enc/*", fsm.OpExport))
	}
	h := newHarness(t)
	setup(h)
	st := h.state()
	if st.Keys["enc/a"].Transit.Exportable || !st.Keys["enc/x"].Transit.Exportable {
		t.Fatalf("exportable: enc/a %v, enc/x %v; want false, true", st.Keys["enc/a"].Transit.Exportable, st.Keys["enc/x"].Transit.Exportable)
	}
	export := func(key string) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpExport, Ephemeral: operatorEph}}
	}
	cases := []struct {
		name string
		by   principal
		key  string
		code fsm.Code
	}{
		{"a non-exportable key", op, "enc/a", fsm.CodeDenied},
		{"a non-exportable key, by admin", admin, "enc/a", fsm.CodeDenied},
		{"an exportable key without a rule for export", reader, "enc/x", fsm.CodeDenied},
		{"an exportable key: not built", op, "enc/x", fsm.CodeInvalid},
		{"a key that does not exist", op, "enc/none", fsm.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			then(setup, func(h *harness) { h.must(admin, addOperatorCmd(operatorSpec(reader, "dave", false))) })(h)
			_, _, err := authorize(h, h.signed(tc.by, export(tc.key)), t0)
			if codeOfErr(err) != tc.code {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
}
