package fsm_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// busy: every part of the state in use. Three holders, rules, keys in
// every state, and a resharing round in progress with one deal of two.
func busy(h *harness) {
	threeHolders(h)
	h.must(admin, addOperatorCmd(operatorSpec(admin2, "carol", true)))
	h.must(admin, putRuleCmd("db", op.ID, "db/*", fsm.OpGet, fsm.OpCreate, fsm.OpCAS))
	h.must(admin, putRuleCmd("web", op.ID, "web/x", fsm.OpRead))
	h.must(admin, createKeyCmd("db/a"))
	h.must(op, createKeyCmd("db/b"))
	h.must(admin, createKeyCmd("db/revoked"))
	h.must(admin, revokeKeyCmd("db/revoked"))
	h.must(admin, createKeyCmd("db/destroyed"))
	h.must(admin, destroyKeyCmd("db/destroyed"))
	h.must(op, replaceKeyCmd("db/b", 1))
	h.admit(nodeSpec(4))
	h.must(node(1), dealCmd(h.round(), 1, "ok"))
}

// TestRefusedCommandLeavesStateUnchanged applies one refusal after another
// to a busy state: each must leave the snapshot as it was, apart from the
// applied index, which must be the refused entry's.
func TestRefusedCommandLeavesStateUnchanged(t *testing.T) {
	h := newHarness(t)
	busy(h)
	round := h.round()
	lastAccepted := h.log[len(h.log)-1].data
	refusals := []struct {
		name  string
		entry func() []byte
		code  fsm.Code
	}{
		{"not JSON", func() []byte { return []byte{0xff, 0x00} }, fsm.CodeInvalid},
		{"JSON null", func() []byte { return []byte("null") }, fsm.CodeInvalid},
		{"init again", func() []byte { return h.entry(admin, initCmd()) }, fsm.CodeState},
		{"add node by a non-admin", func() []byte { return h.entry(op, addNodeCmd(nodeSpec(5))) }, fsm.CodeDenied},
		{"add a node whose address is taken", func() []byte {
			n := nodeSpec(5)
			n.APIAddr = nodeSpec(2).APIAddr
			return h.entry(admin, addNodeCmd(n))
		}, fsm.CodeExists},
		{"remove an unknown node", func() []byte { return h.entry(admin, removeNodeCmd("node-9")) }, fsm.CodeNotFound},
		{"add an operator who exists", func() []byte { return h.entry(admin, addOperatorCmd(operatorSpec(op, "bob", true))) }, fsm.CodeExists},
		{"remove an operator by a non-admin", func() []byte { return h.entry(op, removeOperatorCmd(admin2.ID)) }, fsm.CodeDenied},
		{"put a rule with an unknown operation", func() []byte { return h.entry(admin, putRuleCmd("db", op.ID, "db/*", "all")) }, fsm.CodeInvalid},
		{"delete an unknown rule", func() []byte { return h.entry(admin, deleteRuleCmd("nope")) }, fsm.CodeNotFound},
		{"create a key whose name is taken", func() []byte { return h.entry(op, createKeyCmd("db/a")) }, fsm.CodeExists},
		{"create a key named ../x", func() []byte { return h.entry(admin, createKeyCmd("../x")) }, fsm.CodeInvalid},
		{"replace at the wrong version", func() []byte { return h.entry(op, replaceKeyCmd("db/b", 1)) }, fsm.CodeConflict},
		{"replace a revoked key", func() []byte { return h.entry(admin, replaceKeyCmd("db/revoked", 1)) }, fsm.CodeState},
		{"revoke without a rule", func() []byte { return h.entry(op, revokeKeyCmd("db/a")) }, fsm.CodeDenied},
		{"destroy a destroyed key", func() []byte { return h.entry(admin, destroyKeyCmd("db/destroyed")) }, fsm.CodeState},
		{"a forged deal", func() []byte { return h.entry(node(2), dealCmd(round, 2, "forged")) }, fsm.CodeInvalid},
		{"a second deal", func() []byte { return h.entry(node(1), dealCmd(round, 1, "ok")) }, fsm.CodeExists},
		{"a deal from a non-dealer", func() []byte { return h.entry(node(4), dealCmd(round, 4, "ok")) }, fsm.CodeDenied},
		{"an ack before qualification", func() []byte { return h.entry(node(4), ackCmd(round)) }, fsm.CodeState},
		{"a stale command", func() []byte {
			return h.entry(admin, issued(createKeyCmd("db/new"), -fsm.MaxClockSkew-time.Second))
		}, fsm.CodeClockSkew},
		{"a forged signature", func() []byte { return signedWith(admin.ID, op, createKeyCmd("db/new"))(h) }, fsm.CodeBadSignature},
		{"a replayed entry", func() []byte { return lastAccepted }, fsm.CodeReplay},
	}
	for _, r := range refusals {
		before := h.snapshot()
		res := h.apply(r.entry())
		if codeOf(res) != r.code {
			t.Errorf("%s: %v, want %q", r.name, res.Error, r.code)
		}
		after := h.snapshot()
		assertUnchanged(t, before, after)
		if s := h.state(); s.Applied != h.index {
			t.Errorf("%s: applied %d, want the refused entry's index %d", r.name, s.Applied, h.index)
		}
	}
}

func TestNonces(t *testing.T) {
	t.Run("a nonce is spent for its signer, whatever the command", func(t *testing.T) {
		h := newHarness(t)
		ready(h)
		n := h.nonce()
		h.must(admin, with(createKeyCmd("db/x"), func(c *fsm.Command) { c.Nonce = n }))
		refusedWith(t, h, admin, with(createKeyCmd("db/y"), func(c *fsm.Command) { c.Nonce = n }), fsm.CodeReplay)
		refusedWith(t, h, admin, with(revokeKeyCmd("db/x"), func(c *fsm.Command) { c.Nonce = n }), fsm.CodeReplay)
		// Another signer's nonces are its own.
		h.must(admin, putRuleCmd("r", op.ID, "db/*", fsm.OpCreate))
		h.must(op, with(createKeyCmd("db/y"), func(c *fsm.Command) { c.Nonce = n }))
	})
	t.Run("a refused command does not spend its nonce", func(t *testing.T) {
		h := newHarness(t)
		withKey(h)
		n := h.nonce()
		refusedWith(t, h, admin, with(replaceKeyCmd("db/a", 7), func(c *fsm.Command) { c.Nonce = n }), fsm.CodeConflict)
		refusedWith(t, h, admin, with(replaceKeyCmd("db/a", 1), func(c *fsm.Command) {
			c.Nonce, c.IssuedAt = n, t0.Add(-time.Hour).UnixNano()
		}), fsm.CodeClockSkew)
		h.must(admin, with(replaceKeyCmd("db/a", 1), func(c *fsm.Command) { c.Nonce = n }))
		refusedWith(t, h, admin, with(replaceKeyCmd("db/a", 2), func(c *fsm.Command) { c.Nonce = n }), fsm.CodeReplay)
	})
	t.Run("a forged entry does not spend the nonce of the signer it names", func(t *testing.T) {
		h := newHarness(t)
		ready(h)
		n := h.nonce()
		cmd := func() *fsm.Command { return with(createKeyCmd("db/x"), func(c *fsm.Command) { c.Nonce = n }) }
		if res := h.apply(signedWith(admin.ID, stranger, cmd())(h)); codeOf(res) != fsm.CodeBadSignature {
			t.Fatalf("forged entry: %v", res.Error)
		}
		if res := h.apply(unsigned(admin, cmd())(h)); codeOf(res) != fsm.CodeBadSignature {
			t.Fatalf("unsigned entry: %v", res.Error)
		}
		h.must(admin, cmd())
	})
	t.Run("a nonce is remembered as long as its command is fresh", func(t *testing.T) {
		h := newHarness(t)
		ready(h)
		// Issued four minutes ahead of the entry time: fresh until t0+9m.
		early := h.entry(admin, issued(createKeyCmd("db/early"), 4*time.Minute))
		if res := h.apply(early); res.Error != nil {
			t.Fatal(res.Error)
		}
		now := h.entry(admin, createKeyCmd("db/now"))
		if res := h.apply(now); res.Error != nil {
			t.Fatal(res.Error)
		}
		for _, d := range []time.Duration{2 * time.Minute, 4 * time.Minute, 4*time.Minute + 59*time.Second, 9 * time.Minute} {
			h.at = t0.Add(d)
			h.must(admin, createKeyCmd("db/at-"+d.String())) // prunes
			if res := h.apply(early); codeOf(res) != fsm.CodeReplay {
				t.Errorf("at t0+%v the early entry again: %v, want a replay", d, res.Error)
			}
			if d < fsm.MaxClockSkew {
				if res := h.apply(now); codeOf(res) != fsm.CodeReplay {
					t.Errorf("at t0+%v the entry again: %v, want a replay", d, res.Error)
				}
			}
		}
	})
	t.Run("nonces of commands too old to apply are forgotten", func(t *testing.T) {
		h := newHarness(t)
		ready(h)
		if n := len(h.state().Nonces); n < 4 {
			t.Fatalf("%d nonces remembered after %d accepted commands", n, 4)
		}
		h.at = t0.Add(2*fsm.MaxClockSkew + 2*time.Minute)
		h.must(admin, createKeyCmd("db/later"))
		if n := len(h.state().Nonces); n != 1 {
			t.Errorf("%d nonces remembered, want only the last command's", n)
		}
	})
}

// replay applies a harness's log to a new FSM and returns it.
func replay(t testing.TB, log []logEntry) *fsm.FSM {
	t.Helper()
	f := fsm.New(&fakeChecker{})
	for _, e := range log {
		f.Apply(e.index, e.at, e.data)
	}
	return f
}

func hashOf(t *testing.T, f *fsm.FSM) [32]byte {
	t.Helper()
	sum, err := f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// snapshotOf is f's state encoding (StateBytes); snapshotFor is the
// snapshot Raft would send (Snapshot).
func snapshotOf(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	b, err := f.StateBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func snapshotFor(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	b, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scripted: a busy state reached over several minutes, refusals included.
func scripted(h *harness) {
	busy(h)
	for i, d := range []time.Duration{90 * time.Second, 7 * time.Minute, 13 * time.Minute} {
		h.at = t0.Add(d)
		h.do(op, createKeyCmd("web/refused"))
		h.do(admin, createKeyCmd("db/"+string(rune('p'+i))))
		h.do(stranger, addNodeCmd(nodeSpec(6)))
		h.apply([]byte("garbage"))
	}
	h.must(node(2), dealCmd(h.round(), 2, "ok"))
	h.must(node(1), ackCmd(h.round()))
}

func TestDeterminism(t *testing.T) {
	h := newHarness(t)
	scripted(h)
	want := hashOf(t, h.f)
	if a, b := replay(t, h.log), replay(t, h.log); hashOf(t, a) != want || hashOf(t, b) != want {
		t.Errorf("replicas that applied the same log differ: %x %x, want %x", hashOf(t, a), hashOf(t, b), want)
	}
	if !bytes.Equal(snapshotOf(t, replay(t, h.log)), h.snapshot()) {
		t.Errorf("replicas that applied the same log have different snapshots")
	}
	if hashOf(t, replay(t, h.log[:len(h.log)-1])) == want {
		t.Errorf("the last entry did not change the hash")
	}

	// A replica that restores a snapshot taken halfway, then applies the
	// rest of the log, reaches the same state.
	for _, half := range []int{1, len(h.log) / 2, len(h.log) - 1} {
		f := fsm.New(&fakeChecker{})
		if err := f.Restore(snapshotFor(t, replay(t, h.log[:half]))); err != nil {
			t.Fatal(err)
		}
		for _, e := range h.log[half:] {
			f.Apply(e.index, e.at, e.data)
		}
		if hashOf(t, f) != want {
			t.Errorf("restored after %d entries, then applied the rest: a different hash", half)
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	scripted(h)
	snap, state := snapshotFor(t, h.f), h.snapshot()
	if !bytes.Equal(snap, snapshotFor(t, h.f)) {
		t.Fatalf("two snapshots of the same state differ")
	}
	f := fsm.New(&fakeChecker{})
	if err := f.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := snapshotFor(t, f); !bytes.Equal(got, snap) {
		t.Fatalf("Snapshot after Restore differs:\n got %s\nwant %s", got, snap)
	}
	if got := snapshotOf(t, f); !bytes.Equal(got, state) {
		t.Fatalf("state after Restore differs:\n got %s\nwant %s", got, state)
	}
	if hashOf(t, f) != hashOf(t, h.f) {
		t.Errorf("hash differs after Restore")
	}
	// The restored FSM remembers nonces and goes on like the original.
	last := h.log[len(h.log)-1]
	if res := f.Apply(last.index+1, last.at, last.data); codeOf(res) != fsm.CodeReplay {
		t.Errorf("an entry applied before the snapshot, again after Restore: %v, want a replay", res.Error)
	}
	h.apply(last.data)
	next := h.entry(admin, createKeyCmd("db/after"))
	h.apply(next)
	if res := f.Apply(h.index, h.at, next); res.Error != nil {
		t.Fatalf("restored FSM refused %v", res.Error)
	}
	if !bytes.Equal(snapshotOf(t, f), h.snapshot()) {
		t.Errorf("the restored FSM and the original diverged")
	}

	// Restore replaces the state of a replica that is behind on the same
	// history; it does not merge into it. A replica whose state at its
	// applied index is not the snapshot's refuses it
	// (TestSnapshotMayOmitEntriesAfterItsCheckpoint), and one with a key
	// of its own takes only a certified snapshot
	// (TestForgedFoundingReplaysTheRealKeyGeneration).
	behind := replay(t, h.log[:1])
	if err := behind.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotOf(t, behind), state) {
		t.Errorf("Restore over an earlier state did not replace it")
	}
	g := newHarness(t)
	initialized(g)
	g.must(admin, addOperatorCmd(operatorSpec(admin2, "carol", true)))
	other := g.snapshot()
	if err := g.f.Restore(snap); err == nil {
		t.Errorf("Restore over a state of another history succeeded")
	}
	if !bytes.Equal(g.snapshot(), other) {
		t.Errorf("a refused Restore changed the state")
	}
	// But never with an older one: a snapshot that goes back is refused.
	g2 := newHarness(t)
	withKey(g2)
	before := g2.snapshot()
	if err := g2.f.Restore(snapshotFor(t, fsm.New(&fakeChecker{}))); err == nil {
		t.Errorf("Restore of an empty snapshot over a keyed state succeeded")
	}
	if !bytes.Equal(g2.snapshot(), before) {
		t.Errorf("a refused Restore changed the state")
	}
}

func TestRestoreNullMaps(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		h := newHarness(t)
		if err := fsm.LoadStateForTest(h.f, []byte(`{"nodes":null,"operators":null,"rules":null,"keys":null,"nonces":null}`)); err != nil {
			t.Fatal(err)
		}
		h.f.Read(func(s *fsm.State) {
			if s.Nodes == nil || s.Operators == nil || s.Rules == nil || s.Keys == nil || s.Nonces == nil {
				t.Errorf("restored state has nil maps: %+v", s)
			}
		})
		h.must(admin, initCmd()) // writes nodes, operators and nonces
	})
	t.Run("initialized", func(t *testing.T) {
		h := newHarness(t)
		ready(h)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(h.snapshot(), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"rules", "keys", "nonces"} {
			m[k] = json.RawMessage("null")
		}
		b, _ := json.Marshal(m)
		if err := fsm.LoadStateForTest(h.f, b); err != nil {
			t.Fatal(err)
		}
		h.must(admin, putRuleCmd("r", op.ID, "db/*", fsm.OpGet))
		h.must(admin, createKeyCmd("db/a"))
		if s := h.state(); len(s.Rules) != 1 || len(s.Keys) != 1 || len(s.Nonces) != 2 {
			t.Errorf("rules %v keys %v nonces %v", s.Rules, s.Keys, s.Nonces)
		}
	})
}

func TestRestoreRefusesGarbage(t *testing.T) {
	h := newHarness(t)
	withKey(h)
	before := h.snapshot()
	for _, b := range []string{"", "{", "[]", `{"keys":7}`} {
		if err := h.f.Restore([]byte(b)); err == nil {
			t.Errorf("Restore(%q) succeeded", b)
		}
		if !bytes.Equal(h.snapshot(), before) {
			t.Fatalf("a failed Restore(%q) changed the state", b)
		}
	}
}

// TestHashFollowsEveryChange: Hash is kept between calls and as entries
// apply, and always equals the hash computed from the whole state as it
// is now: after an accepted entry, a refused one (the applied index
// moves), a revoke (a key changed in place) and a restore. (The harness
// checks the same after every entry of every test.)
func TestHashFollowsEveryChange(t *testing.T) {
	h := newHarness(t)
	var last [32]byte
	check := func(when string) {
		t.Helper()
		want, err := fsm.HashFromScratchForTest(h.f)
		if err != nil {
			t.Fatal(err)
		}
		got := hashOf(t, h.f)
		if got != want {
			t.Errorf("%s: Hash is %x, the whole state's %x", when, got[:4], want[:4])
		}
		if got == last {
			t.Errorf("%s: the state changed and Hash did not", when)
		}
		last = got
	}
	ready(h)
	check("after founding")
	if hashOf(t, h.f) != last {
		t.Error("asked again: Hash changed with the state unchanged")
	}
	h.must(admin, createKeyCmd("db/x"))
	check("after a create")
	h.do(stranger, createKeyCmd("db/y"))
	check("after a refused entry")
	h.must(admin, &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: "db/x"})
	check("after a revoke")
	replica := newHarness(t)
	empty := hashOf(t, replica.f) // kept, then the restore must replace it
	if err := replica.f.Restore(snapshotFor(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, replica.f); got == empty || got != hashOf(t, h.f) {
		t.Errorf("after a restore: Hash %x, want the restored state's %x", got[:4], hashOf(t, h.f))
	}
}

// TestHashSeesEveryByte: two states that differ in one byte of a key's
// sealed material, or in a nonce's expiry, hash differently; put back as
// they were, they hash as before.
func TestHashSeesEveryByte(t *testing.T) {
	h := newHarness(t)
	ready(h)
	h.must(admin, createKeyCmd("db/x"))
	h.must(admin, createKeyCmd("db/y"))
	before := hashOf(t, h.f)
	for _, c := range []struct {
		name   string
		change func(*fsm.State)
	}{
		{"a byte of sealed material", func(s *fsm.State) { s.Keys["db/x"].Sealed[0] ^= 1 }},
		{"a key's version", func(s *fsm.State) { s.Keys["db/y"].Version++ }},
		{"a nonce's expiry", func(s *fsm.State) {
			for nk := range s.Nonces {
				s.Nonces[nk]++
				return
			}
		}},
		{"a nonce more", func(s *fsm.State) { s.Nonces["x/00"] = 1 }},
	} {
		fsm.WriteStateForTest(h.f, func(s *fsm.State) {
			s.Keys["db/x"].Sealed = bytes.Clone(s.Keys["db/x"].Sealed)
		})
		var undo []byte
		fsm.WriteStateForTest(h.f, func(s *fsm.State) { undo, _ = json.Marshal(s) })
		fsm.WriteStateForTest(h.f, c.change)
		if got := hashOf(t, h.f); got == before {
			t.Errorf("%s changed and the hash did not", c.name)
		}
		if err := fsm.LoadStateForTest(h.f, undo); err != nil {
			t.Fatal(err)
		}
		if got := hashOf(t, h.f); got != before {
			t.Errorf("%s put back: hash %x, was %x", c.name, got[:4], before[:4])
		}
	}
}
