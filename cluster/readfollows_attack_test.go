package cluster

import (
	"context"
	"testing"
	"time"
)

// Attacks on the leader's read that follows its request
// (partialRequest.ReadFollows): the leader asks the holders during its
// heartbeat round and sends the read on the same call once the round
// confirms it, and a holder computes meanwhile. A holder must give nothing
// before that read came from the node it knows as the leader, and must
// answer only what its checks allow at it.

// newFollowedCluster is the cluster of these attacks: three nodes and
// the secret "followed", its leader, and the victim, a holder other than
// the leader that has applied the secret.
func newFollowedCluster(t *testing.T) (c *testCluster, leader, victim *testNode) {
	t.Helper()
	c = newTestCluster(t, 3)
	c.createSecret("followed", randomBytes(t, 32))
	leader = c.leader()
	victim = c.anyRunning(leader)
	c.waitHasKey(victim, "followed")
	return c, leader, victim
}

// followedRequest is a release of name, as the leader sends it with its
// read to follow, which arrives on follow (none when it is nil: a call
// over HTTP/2).
func (c *testCluster) followedRequest(name string, follow chan []byte) *partialRequest {
	c.t.Helper()
	req := c.holderRequest(name, 0)
	req.ReadFollows, req.from = true, c.leader().id()
	if follow != nil {
		req.follow = func(ctx context.Context) ([]byte, error) {
			select {
			case b := <-follow:
				return b, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return req
}

// TestAHolderGivesNothingBeforeTheLeadersReadFollows: a coordinator that
// sends a request with ReadFollows, as the leader, and never the read gets
// no partial, though the holder computed one; once the read follows, the
// holder answers.
func TestAHolderGivesNothingBeforeTheLeadersReadFollows(t *testing.T) {
	t.Parallel()
	c, leader, victim := newFollowedCluster(t)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	p, err := victim.n.answerSealedPartial(ctx, c.followedRequest("followed", make(chan []byte)))
	cancel()
	if err == nil {
		t.Fatalf("the holder answered share %d before the leader's read followed", p.Index)
	}

	follow := make(chan []byte, 1)
	m := leader.n.cons.rfsm.mark()
	follow <- (&leaderRead{Index: m.Index, Chain: m.Hash}).appendFollowed(nil)
	ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerSealedPartial(ctx, c.followedRequest("followed", follow)); err != nil {
		t.Fatalf("the holder refused with the leader's read: %v", err)
	}
}

// TestOnlyTheLeadersReadFollows: a compromised follower that coordinates
// says its read follows and sends one of its own making (index 0) to a
// holder that has not applied a revoke: the holder ignores it, makes its
// own read, and gives no partial.
func TestOnlyTheLeadersReadFollows(t *testing.T) {
	t.Parallel()
	c, leader, victim := newFollowedCluster(t)
	liar := c.anyRunning(leader, victim)
	follow := make(chan []byte, 1)
	follow <- (&leaderRead{Index: 0}).appendFollowed(nil)
	req := c.followedRequest("followed", follow)
	req.from = liar.id()

	c.wantLaggingHolderRefuses(leader, victim, "followed", req, "on a follower's read")
}

// TestAHolderChecksAgainAtTheFollowedRead: the holder computed its partial
// on a state before a revoke (it lags), and the leader's read that follows
// is past the revoke: the holder applies up to the read, checks again
// there, and refuses; the partial it computed never leaves it.
func TestAHolderChecksAgainAtTheFollowedRead(t *testing.T) {
	t.Parallel()
	c, leader, victim := newFollowedCluster(t)
	follow := make(chan []byte) // taken only once the holder has computed
	req := c.followedRequest("followed", follow)

	resume := c.holdApplies(victim) // the victim acknowledges entries but applies none
	c.revoke(leader, "followed")
	done := victim.answerSealedLater(req)
	m := leader.n.cons.rfsm.mark()
	follow <- (&leaderRead{Index: m.Index, Chain: m.Hash}).appendFollowed(nil)
	resume()
	wantHolderDenied(t, <-done, "for a key revoked before the leader's read")
}

// TestAReadThatCannotFollowIsTheHolders: a request that says the leader's
// read follows, on a call that cannot carry it (HTTP/2: no follow), is
// answered at the holder's own read.
func TestAReadThatCannotFollowIsTheHolders(t *testing.T) {
	t.Parallel()
	c, _, victim := newFollowedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerSealedPartial(ctx, c.followedRequest("followed", nil)); err != nil {
		t.Fatalf("the holder refused at its own read: %v", err)
	}
}
