package fsm_test

import (
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestTransitExport: a transit key is created non-exportable unless its
// create says so; no command changes the flag afterwards (a rotation
// keeps it). Every holder refuses an export of a non-exportable key
// (denied, even for admin), without a rule for export (denied), of a
// destroyed or expired key (denied), without a version or with other
// items (invalid), and allows an exportable key's export to a caller with
// the rule.
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
	if st.Keys["enc/a"].Transit().Exportable || !st.Keys["enc/x"].Transit().Exportable {
		t.Fatalf("exportable: enc/a %v, enc/x %v; want false, true", st.Keys["enc/a"].Transit().Exportable, st.Keys["enc/x"].Transit().Exportable)
	}
	export := func(key string, edit func(*fsm.ReleaseRequest)) *fsm.Command {
		r := &fsm.ReleaseRequest{Key: key, Op: fsm.OpExport, Ephemeral: operatorEph, Version: 1}
		if edit != nil {
			edit(r)
		}
		return &fsm.Command{Type: fsm.TypeRelease, Release: r}
	}
	cases := []struct {
		name    string
		by      principal
		key     string
		edit    func(*fsm.ReleaseRequest)
		destroy bool
		code    fsm.Code
	}{
		{"a non-exportable key", op, "enc/a", nil, false, fsm.CodeDenied},
		{"a non-exportable key, by admin", admin, "enc/a", nil, false, fsm.CodeDenied},
		{"an exportable key without a rule for export", reader, "enc/x", nil, false, fsm.CodeDenied},
		{"an exportable key", op, "enc/x", nil, false, ""},
		{"an exportable key, its second version", op, "enc/x", func(r *fsm.ReleaseRequest) { r.Version = 2 }, false, ""},
		{"without a version", op, "enc/x", func(r *fsm.ReleaseRequest) { r.Version = 0 }, false, fsm.CodeInvalid},
		{"with points", op, "enc/x", func(r *fsm.ReleaseRequest) { r.Points = []fsm.TransitPoint{{Version: 1, Point: make([]byte, 32)}} }, false, fsm.CodeInvalid},
		{"without an ephemeral key", op, "enc/x", func(r *fsm.ReleaseRequest) { r.Ephemeral = nil }, false, fsm.CodeInvalid},
		{"a destroyed key", op, "enc/x", nil, true, fsm.CodeDenied},
		{"a key that does not exist", op, "enc/none", nil, false, fsm.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			then(setup, func(h *harness) { h.must(admin, addOperatorCmd(operatorSpec(reader, "dave", false))) })(h)
			if tc.destroy {
				h.must(admin, destroyKeyCmd("enc/x"))
			}
			_, _, err := authorize(h, h.signed(tc.by, export(tc.key, tc.edit)), t0)
			if codeOfErr(err) != tc.code {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
}
