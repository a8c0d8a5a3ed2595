package fsm_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// fuzzCommands are payloads a fuzzer can mutate into near-valid commands,
// all issued at t0: for each type one the busy state accepts and one it
// refuses, so that small mutations cross the checks both ways.
func fuzzCommands(h *harness) []*fsm.Command {
	small := func(name string, r []byte, sealed []byte) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: name, Type: fsm.KeyTypeSecret, R: r, Sealed: sealed}}
	}
	swap := func(expect uint64, r, sealed []byte) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: &fsm.ReplaceKey{Name: "db/a", ExpectVersion: expect, R: r, Sealed: sealed}}
	}
	badName := operatorSpec(stranger, "", true)
	return []*fsm.Command{
		initCmd(),
		addNodeCmd(nodeSpec(5)), addNodeCmd(nodeSpec(1)),
		removeNodeCmd("node-2"), removeNodeCmd("node-9"), promoteCmd("node-5"), promoteCmd("node-2"),
		addOperatorCmd(operatorSpec(stranger, "eve", true)), addOperatorCmd(badName),
		removeOperatorCmd(op.ID), removeOperatorCmd(stranger.ID),
		putRuleCmd("r", op.ID, "web/*", fsm.OpGet), putRuleCmd("r", op.ID, "../*", fsm.OpGet),
		deleteRuleCmd("db"), deleteRuleCmd("nope"),
		small("db/n", point(1), []byte{1}), small("../n", point(1), []byte{1}), small("db/n", point(1)[:31], []byte{1}),
		swap(1, point(2), []byte{2}), swap(9, point(2), []byte{2}), swap(1, point(2), nil),
		revokeKeyCmd("db/a"), revokeKeyCmd("db/revoked"),
		destroyKeyCmd("db/a"), destroyKeyCmd("db/destroyed"),
		dealCmd(h.round(), 2, "ok"), dealCmd(h.round(), 2, "no"), dealCmd(h.round(), 1, "ok"),
		ackCmd(h.round()),
		releaseCmd("db/a", fsm.OpGet),
		createKeysCmd("db/m1", "db/a", "../m"), createKeysCmd("db/a"),
	}
}

// fuzzSigners sign the fuzzer's payloads; signer 0 stands for none, the
// data being the whole entry.
var fuzzSigners = []principal{{}, admin, op, node(1), node(2), node(4)}

// FuzzApply feeds arbitrary bytes to Apply: as the entry itself, or as the
// payload of an entry validly signed by an admin, an operator or a node, so
// that mutations reach the transitions. Apply must not panic; two replicas
// must agree on the result and the state; a refused entry must leave the
// state as it was apart from the applied index; and the state must survive
// Snapshot and Restore.
func FuzzApply(f *testing.F) {
	// Every input is applied to a busy state, so that every transition has
	// something to act on. All its entries had the entry time t0, the time
	// inputs are applied at, so no pruning is due.
	h := newHarness(f)
	busy(h)
	base := h.snapshot()
	index := h.index + 1
	// refused is base as any refused entry must leave it: the applied index
	// and the chain hash (which hashes the entry itself) moved, nothing else. An entry that is not JSON is refused before
	// anything else happens.
	g := fsm.New(&fakeChecker{})
	if err := fsm.LoadStateForTest(g, base); err != nil {
		f.Fatal(err)
	}
	g.Apply(index, t0, []byte("-"))
	refused := snapshotOf(f, g)
	assertUnchanged(f, base, refused)

	// Seeds are small, as the fuzzer minimizes what it finds in time
	// quadratic in the input's length: a few raw entries, and payloads of
	// each command type, signed by whom it needs.
	for _, raw := range []string{`null`, `{}`, `{"signer":"x","payload":"e30=","signature":""}`} {
		f.Add(uint8(0), []byte(raw))
	}
	f.Add(uint8(0), h.entry(node(2), dealCmd(h.round(), 2, "ok")))
	for _, c := range fuzzCommands(h) {
		signer := uint8(1) // admin
		if c.Type == fsm.TypeDeal || c.Type == fsm.TypeReshareAck {
			signer = 4 // node-2
		}
		f.Add(signer, h.signed(fuzzSigners[signer], c).Payload)
	}

	f.Fuzz(func(t *testing.T, signer uint8, data []byte) {
		entry := data
		if p := fuzzSigners[int(signer)%len(fuzzSigners)]; p.ID != "" {
			entry = encode(t, &fsm.Signed{Signer: p.ID, Payload: data, Signature: signBytes(p, data)})
		}
		checkEntry(t, base, refused, index, entry)
	})
}

// checkEntry applies entry to a replica restored from base and checks
// what must hold for any entry; refused is base after a refusal. An
// accepted entry is applied to a second replica too, which must agree.
func checkEntry(t testing.TB, base, refused []byte, index uint64, entry []byte) {
	restored := func(snap []byte) *fsm.FSM {
		f := fsm.New(&fakeChecker{})
		if err := fsm.LoadStateForTest(f, snap); err != nil {
			t.Fatalf("LoadStateForTest: %v", err)
		}
		return f
	}
	a := restored(base)
	ra := a.Apply(index, t0, entry)
	if ra == nil || ra.Index != index {
		t.Fatalf("result %+v for entry %d", ra, index)
	}
	sa := snapshotOf(t, a)
	if ra.Error != nil {
		if ra.Error.Code == "" || ra.Key != nil {
			t.Errorf("refusal %+v with key %+v", ra.Error, ra.Key)
		}
		if !bytes.Equal(normalized(t, sa, "chain"), normalized(t, refused, "chain")) {
			assertUnchanged(t, base, sa)
			t.FailNow()
		}
		return
	}
	b := restored(base)
	// Messages may name things in map order; codes and keys may not differ.
	if rb := b.Apply(index, t0, entry); codeOf(rb) != "" || !reflect.DeepEqual(ra.Key, rb.Key) {
		t.Fatalf("two replicas got different results: %+v and %+v", ra, rb)
	}
	if sb := snapshotOf(t, b); !bytes.Equal(sa, sb) {
		t.Fatalf("two replicas reached different states:\n%s\n%s", sa, sb)
	}
	if sc := snapshotOf(t, restored(sa)); !bytes.Equal(sc, sa) {
		t.Fatalf("encode, decode, encode differs:\n%s\n%s", sa, sc)
	}
}
