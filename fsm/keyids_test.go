package fsm_test

import (
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestKeyIDs: a key gets an ID at creation that never changes, is
// accepted wherever a name is, and never names the next key created
// under a destroyed key's name.
func TestKeyIDs(t *testing.T) {
	h := newHarness(t)
	releaseState(h)
	res := h.must(admin, createKeyCmd("db/ided"))
	id := res.Key.ID
	if !fsm.IsKeyID(id) || len(id) != len(fsm.KeyIDPrefix)+32 {
		t.Fatalf("key ID %q: want %s and 32 hex digits", id, fsm.KeyIDPrefix)
	}
	if err := fsm.CheckKeyName(id); err == nil {
		t.Fatalf("key ID %q is also a valid name: a reference would be ambiguous", id)
	}
	// By ID: a release, access rules, revoke.
	req, k, ferr := authorize(h, h.signed(op, releaseCmd(id, fsm.OpGet)), t0)
	if ferr != nil || k.Name != "db/ided" || req.Key != "db/ided" {
		t.Fatalf("release by ID: key %v, request for %q, error %v", k, req.Key, ferr)
	}
	// Rules match names, never IDs: an operator without a rule for the
	// name is refused by ID too.
	if _, _, ferr := authorize(h, h.signed(reader, releaseCmd(id, fsm.OpGet)), t0); codeOfErr(ferr) != fsm.CodeDenied {
		t.Fatalf("a release by ID the rules refuse for the name: %v, want denied", ferr)
	}
	if r := h.must(admin, revokeKeyCmd(id)); r.Key.State != fsm.KeyRevoked || r.Key.ID != id {
		t.Fatalf("revoke by ID: %+v", r.Key)
	}
	h.must(admin, destroyKeyCmd(id))
	again := h.must(admin, createKeyCmd("db/ided")).Key
	if again.ID == id || again.ID == "" {
		t.Fatalf("the key created again under the name has ID %q, the destroyed one had %q", again.ID, id)
	}
	var byOld, byNew *fsm.Key
	h.f.Read(func(s *fsm.State) { byOld, byNew = s.ResolveKey(id), s.ResolveKey(again.ID) })
	if byOld != nil || byNew == nil || byNew.Name != "db/ided" {
		t.Fatalf("old ID resolves to %v, new to %v: the old ID must name nothing", byOld, byNew)
	}
	// IDs survive a snapshot and its restore (the index is rebuilt).
	g := newHarness(t)
	if err := fsm.LoadStateForTest(g.f, h.snapshot()); err != nil {
		t.Fatal(err)
	}
	g.f.Read(func(s *fsm.State) { byNew = s.ResolveKey(again.ID) })
	if byNew == nil || byNew.Name != "db/ided" {
		t.Fatalf("after a restore the ID resolves to %v", byNew)
	}
	if res := h.do(op, revokeKeyCmd("id:00000000000000000000000000000000")); codeOf(res) != fsm.CodeNotFound {
		t.Fatalf("an unknown ID: %v, want not found", res.Error)
	}
}

func codeOfErr(e *fsm.Error) fsm.Code {
	if e == nil {
		return ""
	}
	return e.Code
}
