package fsm_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// encodings returns the forms b takes in bytes that went through up to
// depth layers of base64 (JSON's encoding of []byte, nested: a command in
// a Signed's payload, a Signed in a snapshot's entry): b itself, then for
// each layer the base64 of each form of the layer below at each of the
// three alignments it may have in the encoded whole.
func encodings(b []byte, depth int) [][]byte {
	forms, level := [][]byte{b}, [][]byte{b}
	for range depth {
		var next [][]byte
		for _, x := range level {
			for off := range 3 {
				y := x[off:]
				y = y[:len(y)/3*3]
				next = append(next, []byte(base64.StdEncoding.EncodeToString(y)))
			}
		}
		forms, level = append(forms, next...), next
	}
	return forms
}

// carries tells whether data holds any of the forms.
func carries(data []byte, forms [][]byte) bool {
	return slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(data, f) })
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDestroyLeavesNoMaterialInSnapshot: a destroy_key takes a checkpoint
// at its own index; once the holders certify it, the snapshot (and so the
// FSM's memory of entries and checkpoints) carries neither the key's R nor
// its sealed material, of any version, in any encoding; a replica restores
// that snapshot to the same state, and every replica of the log takes the
// same checkpoint. A refused destroy takes none.
func TestDestroyLeavesNoMaterialInSnapshot(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	r1, s1, r2, s2 := random(t, 32), random(t, 600), random(t, 32), random(t, 600)
	h.must(admin, &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "db/doomed", Type: fsm.KeyTypeSecret, R: r1, Sealed: s1}})
	h.must(admin, &fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: &fsm.ReplaceKey{Name: "db/doomed", ExpectVersion: 1, OldSHA256: make([]byte, 32), R: r2, Sealed: s2}})
	h.must(admin, createKeyCmd("db/kept"))
	var forms [][]byte
	for _, b := range [][]byte{r1, s1, r2, s2} {
		forms = append(forms, encodings(b, 3)...)
	}
	if !carries(snapshotFor(t, h.f), forms) {
		t.Fatal("the snapshot before the destroy carries no form of the key's material: the test looks for the wrong bytes")
	}
	for h.index%checkpointEvery == checkpointEvery-1 {
		h.must(admin, createKeyCmd(fmt.Sprintf("db/filler%d", h.index))) // the destroy's index is no multiple of the interval
	}
	d := h.must(admin, destroyKeyCmd("db/doomed")).Index
	s := h.state()
	if s.Destroyed != d || !slices.ContainsFunc(s.Pending, func(p *fsm.Checkpoint) bool { return p.Index == d }) {
		t.Fatalf("destroy at %d: destroyed %d, pending checkpoints %v; want one at %d", d, s.Destroyed, s.Pending, d)
	}
	if destroyed, cert := h.f.Erasure(); destroyed != d || cert >= d {
		t.Fatalf("Erasure() = %d, %d before the holders attested; want %d and a checkpoint before it", destroyed, cert, d)
	}
	if got := h.attestPending(c); got != d {
		t.Fatalf("certified checkpoint %d, want the destroy's %d", got, d)
	}
	if destroyed, cert := h.f.Erasure(); destroyed != d || cert < d {
		t.Fatalf("Erasure() = %d, %d after the destroy's checkpoint was certified; want %d, >= %d", destroyed, cert, d, d)
	}
	snap := snapshotFor(t, h.f)
	if carries(snap, forms) {
		t.Fatal("the snapshot after the destroy's certified checkpoint still carries the destroyed key's material")
	}

	f := newCryptoFSM(c)
	f.PinClusterKey(clusterKey(h))
	if _, err := f.RestoreSnapshot(snap); err != nil {
		t.Fatalf("restoring the snapshot after the destroy: %v", err)
	}
	if hashOf(t, f) != hashOf(t, h.f) {
		t.Fatal("the replica restored from the snapshot after the destroy has another state")
	}
	g := newCryptoFSM(c)
	for _, e := range h.log {
		g.Apply(e.index, e.at, e.data)
	}
	if hashOf(t, g) != hashOf(t, h.f) || !bytes.Equal(snapshotFor(t, g), snap) {
		t.Fatal("a replica that applied the same log took other checkpoints")
	}

	for h.index%checkpointEvery == checkpointEvery-1 {
		h.must(admin, createKeyCmd(fmt.Sprintf("db/filler%d", h.index)))
	}
	res := h.do(admin, destroyKeyCmd("db/doomed"))
	if codeOf(res) != fsm.CodeState {
		t.Fatalf("destroying a destroyed key: %v, want %s", res.Error, fsm.CodeState)
	}
	if slices.ContainsFunc(h.state().Pending, func(p *fsm.Checkpoint) bool { return p.Index == res.Index }) {
		t.Error("a refused destroy took a checkpoint")
	}
}
