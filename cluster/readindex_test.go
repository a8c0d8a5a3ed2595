package cluster

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestRoundBatchJoinsOnlyARoundThatStartsAfterIt: callers that arrive
// while a round runs share the next round, one run for all of them, and
// none gets the result of a run that started before it arrived (what
// makes a shared read index as fresh as one asked for alone).
func TestRoundBatchJoinsOnlyARoundThatStartsAfterIt(t *testing.T) {
	var b roundBatch[int]
	started := make(chan int)
	release := make(chan struct{})
	runs := 0
	do := func() int {
		runs++
		started <- runs
		<-release
		return runs
	}
	first := b.join(do)
	if r := <-started; r != 1 {
		t.Fatalf("round %d started, want 1", r)
	}
	// Round 1 is running: these arrive after it started.
	later := []<-chan int{b.join(do), b.join(do), b.join(do)}
	release <- struct{}{}
	if got := <-first; got != 1 {
		t.Fatalf("the first caller got round %d, want 1", got)
	}
	if r := <-started; r != 2 {
		t.Fatalf("round %d started, want 2", r)
	}
	release <- struct{}{}
	for i, ch := range later {
		if got := <-ch; got != 2 {
			t.Fatalf("caller %d, which arrived during round 1, got round %d, want 2", i, got)
		}
	}
	// The batch is idle again: a new caller starts round 3.
	again := b.join(do)
	if r := <-started; r != 3 {
		t.Fatalf("round %d started, want 3", r)
	}
	release <- struct{}{}
	if got := <-again; got != 3 || runs != 3 {
		t.Fatalf("got round %d after %d runs, want 3 and 3", got, runs)
	}
}

// TestReleaseSeesTheWriteBeforeItUnderConcurrency: many clients at once
// each create a key and, as soon as the write is acknowledged, release it
// through a follower. The coordinator's and the holders' read indexes are
// shared among concurrent requests (holderReadIndex, the leader's
// verifyLeader), yet each release must see the write acknowledged before
// it was issued: a stale read would answer "no such key" or another
// secret.
func TestReleaseSeesTheWriteBeforeItUnderConcurrency(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.leader()
	var followers []*testNode
	for _, tn := range c.nodes {
		if tn != leader {
			followers = append(followers, tn)
		}
	}
	const clients, rounds = 8, 3
	errs := make(chan error, clients*rounds)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for r := range rounds {
				name := fmt.Sprintf("lin-%d-%d", i, r)
				secret := []byte(name + "-secret")
				ct := c.seal(name, secret)
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				_, err := leader.n.Submit(ctx, c.sign(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
					Name: name, Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}}))
				if err != nil {
					cancel()
					errs <- fmt.Errorf("creating %s: %w", name, err)
					return
				}
				sg := c.releaseRequest(name)
				sr, err := followers[(i+r)%len(followers)].n.Release(ctx, sg)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("releasing %s right after its creation: %w", name, err)
					continue
				}
				got, err := c.openRelease(sg, sr)
				if err != nil || !bytes.Equal(got, secret) {
					errs <- fmt.Errorf("opening %s: %q, %v", name, got, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
