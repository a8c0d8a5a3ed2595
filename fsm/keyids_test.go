package fsm_test

import (
	"fmt"
	"testing"
	"unsafe"

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

// TestKeyIDsResolveThroughACheckpoint: the ID index finds each key by its
// ID, and a destroyed key's ID whose name a new key took names nothing,
// after creates (create_keys), a destroy and a create again under the
// name, a change by ID (a copy of the key in its place), a certified
// checkpoint and changes after it, and a restore of the snapshot (the
// checkpoint's keys decoded, the entries after it applied again).
func TestKeyIDsResolveThroughACheckpoint(t *testing.T) {
	h, c := newCryptoHarness(t)
	threeHolders(h)
	idOf := func(res *fsm.Result, i int) string { return res.Items[i].Key.ID }
	bulk := h.must(admin, createKeysCmd("ids/a", "ids/b", "ids/c"))
	oldA, oldB, idC := idOf(bulk, 0), idOf(bulk, 1), idOf(bulk, 2)
	h.must(admin, destroyKeyCmd(oldB))
	newB := h.must(admin, createKeyCmd("ids/b")).Key.ID
	h.must(admin, revokeKeyCmd(idC))
	for s := h.state(); len(s.Pending) == 0 || s.Pending[len(s.Pending)-1].Epoch != s.Epoch; s = h.state() {
		h.must(admin, createKeyCmd(fmt.Sprintf("ids/fill%d", h.index)))
	}
	h.attestPending(c)
	// After the checkpoint: its keys are a clone the state shares.
	h.must(admin, destroyKeyCmd("ids/a"))
	newA := h.must(admin, createKeyCmd("ids/a")).Key.ID
	idD := h.must(admin, createKeysCmd("ids/d")).Items[0].Key.ID
	want := map[string]string{oldA: "", oldB: "", newA: "ids/a", newB: "ids/b", idC: "ids/c", idD: "ids/d"}
	check := func(what string, f *fsm.FSM) {
		t.Helper()
		f.Read(func(s *fsm.State) {
			for id, name := range want {
				k := s.ResolveKey(id)
				switch {
				case name == "" && k != nil:
					t.Errorf("%s: the destroyed key's ID %s names %q, want nothing", what, id, k.Name)
				case name != "" && (k == nil || k.Name != name || k.ID != id || k != s.Keys[name]):
					t.Errorf("%s: ID %s resolves to %+v, want the key %q in the state", what, id, k, name)
				}
			}
			if k := s.ResolveKey(idC); k != nil && k.State != fsm.KeyRevoked {
				t.Errorf("%s: ID %s resolves to the key as it was before its revoke (%s)", what, idC, k.State)
			}
		})
	}
	check("applied", h.f)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := newCryptoFSM(c)
	g.PinClusterKey(clusterKey(h))
	if _, err := g.RestoreSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	check("restored", g)
}

// TestCreateKeysIDsShareAString: the IDs of one create_keys entry's keys
// are substrings of one string, one after the other, not a string each
// (35 bytes a key of the heap where a string of its own takes 48).
func TestCreateKeysIDsShareAString(t *testing.T) {
	h := newHarness(t)
	ready(h)
	res := h.must(admin, createKeysCmd("ids/a", "ids/b", "ids/c"))
	h.f.Read(func(s *fsm.State) {
		for i := 1; i < len(res.Items); i++ {
			prev, k := s.Keys[res.Items[i-1].Key.Name], s.Keys[res.Items[i].Key.Name]
			if unsafe.StringData(k.ID) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(prev.ID)), len(prev.ID))) {
				t.Fatalf("the ID of %s is not right after the ID of %s in one string", k.Name, prev.Name)
			}
		}
	})
}
