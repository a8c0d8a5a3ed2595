package fsm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

func createKeysCmd(names ...string) *fsm.Command {
	var cs []*fsm.CreateKey
	for _, name := range names {
		cs = append(cs, createKeyCmd(name).CreateKey)
	}
	return &fsm.Command{Type: fsm.TypeCreateKeys, CreateKeys: cs}
}

// TestCreateKeysChecksEachKeyAsAlone: one create_keys entry creates
// each key a create_key of it would, and refuses each key a create_key
// would refuse, with that key's error, leaving the others created.
func TestCreateKeysChecksEachKeyAsAlone(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createKeyCmd("app/old"))
	h.must(admin, putRuleCmd("r1", op.ID, "app/*", fsm.OpCreate))

	res := h.must(op, createKeysCmd("app/a", "app/old", "db/x", "bad name", "app/a", "app/b"))
	want := []fsm.Code{"", fsm.CodeExists, fsm.CodeDenied, fsm.CodeInvalid, fsm.CodeExists, ""}
	if len(res.Items) != len(want) {
		t.Fatalf("%d items, want %d", len(res.Items), len(want))
	}
	for i, w := range want {
		it := res.Items[i]
		switch {
		case w == "" && (it.Error != nil || it.Key == nil || it.Key.Version != 1):
			t.Errorf("item %d: %+v, want it created", i, it)
		case w != "" && (it.Error == nil || it.Error.Code != w || it.Key != nil):
			t.Errorf("item %d: %+v, want %s", i, it, w)
		}
		if it.Key != nil && (it.Key.Sealed != nil || it.Key.R != nil) {
			t.Errorf("item %d carries the sealed material", i)
		}
	}
	s := h.state()
	for name, exists := range map[string]bool{"app/a": true, "app/b": true, "app/old": true, "db/x": false, "bad name": false} {
		if (s.Keys[name] != nil) != exists {
			t.Errorf("key %q exists: %v, want %v", name, !exists, exists)
		}
	}
}

// TestCreateKeysRefusedWhole: a create_keys that creates nothing is
// refused (the state and the nonce as they were: it may be corrected and
// sent again), with every key's error; one with no key, or more than
// MaxCreateKeys, is refused.
func TestCreateKeysRefusedWhole(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createKeyCmd("app/old"))
	before := h.state()
	res := h.do(admin, createKeysCmd("app/old", "bad name"))
	if res.Error == nil || res.Error.Code != fsm.CodeExists || len(res.Items) != 2 || res.Items[1].Error.Code != fsm.CodeInvalid {
		t.Fatalf("a create_keys that creates nothing: %+v, want refused as exists with both items' errors", res)
	}
	after := h.state()
	after.Applied, after.Chain = before.Applied, before.Chain // every entry moves these, refused or not
	if a, _ := json.Marshal(after); !bytes.Equal(a, mustJSON(t, before)) {
		t.Errorf("a refused create_keys changed the state")
	}
	many := make([]string, fsm.MaxCreateKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf("k/%d", i)
	}
	for name, c := range map[string]*fsm.Command{"none": createKeysCmd(), "too many": createKeysCmd(many...)} {
		if res := h.do(admin, c); res.Error == nil || res.Error.Code != fsm.CodeInvalid {
			t.Errorf("%s: %+v, want invalid", name, res.Error)
		}
	}
	if res := h.do(admin, createKeysCmd(many[:fsm.MaxCreateKeys]...)); res.Error != nil {
		t.Errorf("MaxCreateKeys keys: %v", res.Error)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
