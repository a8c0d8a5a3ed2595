package cluster

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// heldUnlock is the answer to a machine's unlock that asked to be held.
type heldUnlock struct {
	out  *MachineUnlock
	held bool
	err  error
}

// askHeld sends machine m's unlock of key to tn asking to be held for an
// hour (the node bounds it to MaxUnlockHold), and returns where the answer
// arrives and the request's ephemeral key.
func askHeld(t *testing.T, tn *testNode, m *testMachine, key string) (<-chan heldUnlock, *fsm.Signed, *ecdh.PrivateKey) {
	t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sg := signWith(t, m.id, m.priv, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpGet, Ephemeral: eph.PublicKey().Bytes()}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ch := make(chan heldUnlock, 1)
	go func() {
		out, held, err := tn.n.MachineUnlock(ctx, sg, "192.0.2.7", time.Hour)
		ch <- heldUnlock{out, held, err}
	}()
	return ch, sg, eph
}

// openUnlock opens a machine's unlock with its ephemeral key, as keyagent
// does.
func openUnlock(t *testing.T, eph *ecdh.PrivateKey, sg *fsm.Signed, out *MachineUnlock) ([]byte, error) {
	t.Helper()
	rctx := fsm.ReleaseContext(out.ClusterID, out.Key, out.Version, out.Epoch, sg.Payload)
	var partials []*shamir.Partial
	for _, sp := range out.Partials {
		plain, err := shamir.OpenX25519(eph, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(rctx, sp.Index))
		if err != nil {
			return nil, err
		}
		var p shamir.Partial
		if err := json.Unmarshal(plain, &p); err != nil {
			return nil, err
		}
		partials = append(partials, &p)
	}
	return shamir.Open(&shamir.PublicPoly{Commits: out.Poly}, &shamir.Ciphertext{R: out.R, Sealed: out.Sealed},
		fsm.SealInfo(out.ClusterID, out.Key), partials, rctx)
}

// TestHeldUnlockAnswersWhenTheDecisionApplies: a machine's pending unlock
// that asks to be held is answered as soon as the operator's decision
// applies, not at the machine's next retry: with the key once an approval
// applies, with the denial once a denial does. The hold is bounded per
// machine: a third request of one machine is answered pending at once,
// not held. (The hold itself ends after MaxUnlockHold: an answer that
// waited for it would be pending, which the test refuses.)
func TestHeldUnlockAnswersWhenTheDecisionApplies(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("luks/m1", secret)
	m1, m2, m3 := c.addMachine("m1"), c.addMachine("m2"), c.addMachine("m3")
	tn := c.running()[1]
	waitHeld := func(m *testMachine, want int) {
		t.Helper()
		if !c.waitFor(settleTimeout, func() (bool, string) {
			_, n := tn.n.unlockHolds.held(m.id)
			return n == want, fmt.Sprintf("%d unlocks of %s held, want %d", n, m.id, want)
		}) {
			t.FailNow()
		}
	}

	// Approved while held: the held request itself gets the key.
	ch, sg, eph := askHeld(t, tn, m1, "luks/m1")
	waitHeld(m1, 1)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: m1.id, Key: "luks/m1", Uses: 1}}); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil || !r.held {
		t.Fatalf("the held unlock after the approval: held %v, %v; want the key", r.held, r.err)
	}
	if got, err := openUnlock(t, eph, sg, r.out); err != nil || string(got) != string(secret) {
		t.Fatalf("opening the held unlock: %v", err)
	}
	waitHeld(m1, 0)

	// Two held requests of one machine at most; the third is answered
	// pending at once, not held.
	ch1, _, _ := askHeld(t, tn, m2, "luks/m1")
	ch2, _, _ := askHeld(t, tn, m2, "luks/m1")
	waitHeld(m2, maxHoldsPerMachine)
	ch3, _, _ := askHeld(t, tn, m2, "luks/m1")
	if r := <-ch3; r.held || KindOf(r.err) != KindPendingApproval {
		t.Errorf("a third unlock of one machine: held %v, %v; want pending at once, not held", r.held, r.err)
	}

	// Denied while held: both held requests end with the denial.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeDeny, Deny: &fsm.Denial{Machine: m2.id, Key: "luks/m1", Until: time.Now().Add(time.Hour).UnixNano()}}); err != nil {
		t.Fatal(err)
	}
	for i, ch := range []<-chan heldUnlock{ch1, ch2} {
		if r := <-ch; !r.held || KindOf(r.err) != KindDenied {
			t.Errorf("held unlock %d after the denial: held %v, %v; want denied", i+1, r.held, r.err)
		}
	}
	if total, _ := tn.n.unlockHolds.held(m2.id); total != 0 {
		t.Errorf("%d unlocks still held after every answer", total)
	}

	// A request about to go stale is not held: answered again after the
	// hold, it would be refused for its age instead of pending.
	old := signWith(t, m3.id, m3.priv, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "luks/m1", Op: fsm.OpGet, Ephemeral: randomBytes(t, 32)}})
	var cmd fsm.Command
	if err := json.Unmarshal(old.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	cmd.IssuedAt = time.Now().Add(-fsm.MaxClockSkew + time.Second).UnixNano()
	old, err := fsm.Sign(m3.id, m3.priv, &cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, held, err := tn.n.MachineUnlock(ctxOp(t), old, "192.0.2.7", time.Hour); held || KindOf(err) != KindPendingApproval {
		t.Errorf("a request about to go stale: held %v, %v; want pending at once, not held", held, err)
	}
}

// TestUnlockHoldsAreBounded: a node holds at most maxHolds unlocks in all
// and maxHoldsPerMachine of one machine; a hold given back is free again.
func TestUnlockHoldsAreBounded(t *testing.T) {
	t.Parallel()
	var h unlockHolds
	var releases []func()
	for i := range maxHolds {
		r, ok := h.take(fmt.Sprintf("m%d", i/maxHoldsPerMachine))
		if !ok {
			t.Fatalf("hold %d refused below the bound", i)
		}
		releases = append(releases, r)
	}
	if _, ok := h.take("another"); ok {
		t.Fatalf("a hold past %d in all was given", maxHolds)
	}
	releases[0]()
	if _, ok := h.take("m0"); !ok {
		t.Fatalf("a hold given back was not free again")
	}
	if _, ok := h.take("m0"); ok {
		t.Fatalf("a machine got %d holds", maxHoldsPerMachine+1)
	}
}
