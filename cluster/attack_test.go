package cluster

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Attacks by one compromised node (issue 9): the attacker runs its own code
// with what its node holds (its share, its certificate, a coordinator's
// place in the protocol) and asks honest holders directly, as the
// node-to-node protocol lets it. Each test is an attack that must fail.

// holderRequest is what a coordinator sends a holder for a release of
// name signed by the admin, at readIndex, with the key's version and
// epoch as the leader has them.
func (c *testCluster) holderRequest(name string, readIndex uint64) *partialRequest {
	c.t.Helper()
	tn := c.leader()
	k := storedKey(c.t, tn, name)
	var epoch uint64
	tn.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	return &partialRequest{ReadIndex: readIndex, Request: c.releaseRequest(name), Version: k.Version, Epoch: epoch}
}

// waitHasKey waits until node tn has applied the creation of key name.
func (c *testCluster) waitHasKey(tn *testNode, name string) {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		found := false
		tn.n.fsm.Read(func(s *fsm.State) { found = s.Keys[name] != nil })
		return found, tn.id() + " has not applied the creation of " + name
	})
}

// TestLyingCoordinatorGetsNoPartialFromALaggingHolder (hole 8): holders
// waited only for the read index the coordinator sent. A compromised node
// coordinates a release after an acknowledged revoke with read index 0, to
// a holder that has not applied the revoke yet: with its own partial that
// made t=2 and the key was released after its revoke. The holder now makes
// its own read, so it answers only once it has applied the revoke, and
// then refuses.
func TestLyingCoordinatorGetsNoPartialFromALaggingHolder(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createSecret("lagging", randomBytes(t, 32))
	leader := c.leader()
	victim := c.anyRunning(leader)
	c.waitHasKey(victim, "lagging")
	req := c.holderRequest("lagging", 0)

	victim.n.rfsm.hold.Lock() // the victim acknowledges entries but applies none
	held := true
	defer func() {
		if held {
			victim.n.rfsm.hold.Unlock()
		}
	}()
	c.revoke(leader, "lagging")

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	p, err := victim.n.answerPartial(ctx, req)
	cancel()
	if err == nil {
		t.Fatalf("a lagging holder answered share %d for a key revoked before the request", p.Index)
	}
	victim.n.rfsm.hold.Unlock()
	held = false
	req.Request = c.releaseRequest("lagging")
	ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerPartial(ctx, req); KindOf(err) != KindDenied {
		t.Fatalf("holder that applied the revoke: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}
}

// TestRequestAnsweredBeforeRestartIsRefusedAfter (hole 12): the nonces a
// holder has seen live in memory, so after a restart a captured request
// was answered again within the freshness window. A holder now refuses
// requests issued before it started.
func TestRequestAnsweredBeforeRestartIsRefusedAfter(t *testing.T) {
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("captured", secret)
	victim := c.nodes[1]
	c.waitHasKey(victim, "captured")
	req := c.holderRequest("captured", 0)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerPartial(ctx, req); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	c.stop(victim)
	c.restart(victim)
	c.waitSettled(0, victim)
	if p, err := victim.n.answerPartial(ctx, req); err == nil {
		t.Fatalf("after a restart the holder answered share %d to a request it had answered before", p.Index)
	} else if KindOf(err) != KindUnauthenticated {
		t.Errorf("replay after restart: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	// A request signed after the restart is answered.
	if got := c.mustRelease(victim, "captured"); !bytes.Equal(got, secret) {
		t.Fatalf("release after restart returned other bytes")
	}
}
