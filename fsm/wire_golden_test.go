package fsm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"strconv"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestSignedCommandGolden pins the signed command's wire form: the payload
// a signer signs (the JSON of a Command), the signing input's domain, the
// Ed25519 signature and the Signed JSON that is the Raft log entry and the
// body of every release request. Keys, nonces and times are the harness's,
// all fixed. A change here is a change every node, keyctl and keyagent must
// agree on: old log entries must still verify and decode.
func TestSignedCommandGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		by   principal
		cmd  *fsm.Command
	}{
		{"init", admin, initCmd()},
		{"put_rule", admin, putRuleCmd("op-db", op.ID, "db/*", fsm.OpGet, fsm.OpRead)},
		{"create_key", admin, createKeyCmd("db/a")},
		{"replace_key", admin, replaceKeyCmd("db/a", 1)},
		{"deal", node(1), dealCmd(1, 1, "ok")},
		{"reshare_ack", node(2), ackCmd(7)},
		{"add_machine", admin, addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*"))},
		{"approve", admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})},
		{"join_node", admin, joinNodeCmd(nodeSpec(2), tokenID, tokenSecret)},
		{"release", op, releaseCmd("db/a", fsm.OpGet)},
		{"release_machine", laptop, &fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "luks/a", Op: fsm.OpGet, Ephemeral: machineEph}}},
		{"release_share_seal", op, &fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "db/a", Op: fsm.OpGet, Ephemeral: machineEph, Seal: fsm.SealShare}}},
		{"release_gateway", node(1), &fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "tls/a", Op: fsm.OpGet, Gateway: "tlv", Client: "CN=edge-a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t) // its first nonce, at t0
			sg := h.signed(tc.by, tc.cmd)
			entry := encode(t, sg)
			var b bytes.Buffer
			fmt.Fprintf(&b, "signer: %s\n", sg.Signer)
			fmt.Fprintf(&b, "payload: %s\n", sg.Payload)
			fmt.Fprintf(&b, "signing input: %s + payload\n", strconv.Quote(string(fsm.SigningInput(nil))))
			fmt.Fprintf(&b, "signature: %x\n", sg.Signature)
			fmt.Fprintf(&b, "signed: %s\n", entry)
			golden.Check(t, "signed-"+tc.name+".txt", b.Bytes())

			// The golden entry is one every replica accepts: it decodes to
			// the same command and its signature verifies.
			var back fsm.Signed
			if err := json.Unmarshal(entry, &back); err != nil || !bytes.Equal(back.Payload, sg.Payload) {
				t.Fatalf("the Signed JSON does not decode to its payload: %v", err)
			}
			if !ed25519Verify(tc.by, back.Payload, back.Signature) {
				t.Fatal("the golden signature does not verify")
			}
		})
	}
}

func ed25519Verify(p principal, payload, sig []byte) bool {
	return bytes.Equal(signBytes(p, payload), sig) // Ed25519 is deterministic
}

// TestSnapshotGolden pins the snapshot encoding (Snap) and the state's
// encoding (StateBytes, what checkpoints certify and Hash hashes) for a
// tiny cluster: one node, one operator besides the admin, one key. A
// change means a node cannot install a snapshot another version wrote, or
// replicas of two versions disagree on the state hash.
func TestSnapshotGolden(t *testing.T) {
	t.Run("uncertified", func(t *testing.T) {
		// No checkpoint yet: the snapshot is every entry applied.
		h := newHarness(t)
		withKey(h)
		snap, err := h.f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "snapshot-uncertified.json", snap)
		golden.Check(t, "state.json", h.snapshot())
		restoresTo(t, snap, h)
	})
	t.Run("certified", func(t *testing.T) {
		// The checkpoint after entry 4 (add_operator) certified by the
		// one holder's partial, then a key created after it. The key's own
		// checkpoint, at entry 3 (the acknowledgement that made it), is
		// pending beside it, and certifying the later one settles both. The partial's
		// DLEQ proof draws randomness: a fixed seed makes it fixed (a Go
		// release that changes how crypto/rand is drawn changes it; check
		// then that only the partial's challenge and response moved).
		cryptotest.SetGlobalRandom(t, 1)
		c := newCryptoChecker()
		f := fsm.New(c)
		f.CheckpointEvery = 4
		h := &harness{t: t, checker: &c.fakeChecker, f: f, at: t0}
		ready(h)
		if s := h.state(); len(s.Pending) != 2 || s.Pending[0].Index != 3 || s.Pending[1].Index != 4 {
			t.Fatalf("pending checkpoints %+v, want the key's at index 3 and one at index 4", s.Pending)
		}
		h.attestPending(c)
		h.must(admin, createKeyCmd("db/a"))
		snap, err := h.f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "snapshot-certified.json", snap)
		var sn fsm.Snap
		if err := json.Unmarshal(snap, &sn); err != nil || sn.Certificate == nil || sn.Certificate.Index != 4 || len(sn.Entries) != 2 {
			t.Fatalf("snapshot %s: want a certificate at index 4 and the 2 entries after it (%v)", snap, err)
		}
		r := newCryptoFSM(c)
		r.CheckpointEvery = 4
		r.PinClusterKey(clusterKey(h))
		if err := r.Restore(snap); err != nil {
			t.Fatalf("the golden snapshot does not restore: %v", err)
		}
		sameHash(t, r, h.f)
	})
}

// restoresTo checks that snap restores, on a fresh FSM, to h's state.
func restoresTo(t *testing.T, snap []byte, h *harness) {
	t.Helper()
	r := fsm.New(&fakeChecker{})
	if err := r.Restore(snap); err != nil {
		t.Fatalf("the golden snapshot does not restore: %v", err)
	}
	sameHash(t, r, h.f)
}

func sameHash(t *testing.T, a, b *fsm.FSM) {
	t.Helper()
	ha, err1 := a.Hash()
	hb, err2 := b.Hash()
	if err1 != nil || err2 != nil || ha != hb {
		t.Fatalf("restored state hash %x, want %x (%v, %v)", ha, hb, err1, err2)
	}
}
