package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// readIndexesServed is how many read indexes the cluster's nodes have
// confirmed as leader.
func (c *testCluster) readIndexesServed() uint64 {
	var sum uint64
	for _, tn := range c.running() {
		sum += tn.n.cons.readIndexes.Load()
	}
	return sum
}

// TestUnknownSignersCostNoReadIndex: a flood of requests signed by keys the
// cluster does not know, or badly signed for keys it knows (machine
// unlocks, klefki GetKeys, operator releases, operator certificates), is
// refused as unauthenticated by the node that receives it from its own
// applied state: no node confirms a read index for any of them (issue 9,
// hole 15b). Before, each cost a read index from the leader before any
// check.
func TestUnknownSignersCostNoReadIndex(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("luks/m1", randomBytes(t, 32))
	known := c.addMachine("m1")
	leader := c.leader()
	entry := c.anyRunning(leader) // a follower: a read index would be an RPC to the leader
	c.waitHasKey(entry, "luks/m1")
	c.waitFor(opTimeout, func() (bool, string) {
		return entry.n.LocalMachine(fsm.KlefkiID(known.priv.Public().(ed25519.PublicKey))) != nil, "the machine is not applied on " + entry.id()
	})

	_, strangerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stranger := &testMachine{id: fsm.PrincipalID(strangerKey.Public().(ed25519.PublicKey)), priv: strangerKey}
	forged := &testMachine{id: known.id, priv: strangerKey} // the known machine's name, another key

	requests := map[string]func() error{
		"unlock by an unknown machine": func() error {
			_, _, err := entry.n.MachineUnlock(ctxOp(t), stranger.release(t, "luks/m1", time.Now()), "192.0.2.9", 0)
			return err
		},
		"unlock forged for a known machine": func() error {
			_, _, err := entry.n.MachineUnlock(ctxOp(t), forged.release(t, "luks/m1", time.Now()), "192.0.2.9", 0)
			return err
		},
		"GetKey by an unknown machine": func() error {
			_, err := entry.n.TakeSubmittedKey(ctxOp(t), stranger.getKey(t, time.Now()), "192.0.2.9")
			return err
		},
		"GetKey forged for a known machine": func() error {
			_, err := entry.n.TakeSubmittedKey(ctxOp(t), forged.getKey(t, time.Now()), "192.0.2.9")
			return err
		},
		"release by an unknown operator": func() error {
			sg := signWith(t, stranger.id, strangerKey, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "luks/m1", Op: fsm.OpGet}})
			_, err := entry.n.Release(ctxOp(t), sg)
			return err
		},
		"certificate of an unknown operator": func() error {
			_, err := entry.n.Principal(ctxOp(t), strangerKey.Public().(ed25519.PublicKey))
			return err
		},
	}
	before := c.readIndexesServed()
	const flood = 32
	for name, send := range requests {
		var wg sync.WaitGroup
		errs := make(chan error, flood)
		for range flood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- send()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if KindOf(err) != KindUnauthenticated {
				t.Fatalf("%s: %v (kind %s), want unauthenticated", name, err, KindOf(err))
			}
		}
	}
	if after := c.readIndexesServed(); after != before {
		t.Fatalf("%d unauthenticated requests cost %d read indexes", flood*len(requests), after-before)
	}

	// The counter counts: a request by a signer the node knows takes the
	// linearizable path.
	if _, err := entry.n.TakeSubmittedKey(ctxOp(t), known.getKey(t, time.Now()), "192.0.2.9"); KindOf(err) != KindNotFound {
		t.Fatalf("the known machine's GetKey: %v, want not_found (nothing submitted)", err)
	}
	if c.readIndexesServed() == before {
		t.Fatal("the known machine's GetKey took no read index: the counter does not count")
	}
}

// TestGetKeyNonceIsSpentInTheNodesNonceCache: a machine's GetKey replayed
// to the same node is refused by the node's one nonce cache, before any
// read index (issue 8: one nonce store).
func TestGetKeyNonceIsSpentInTheNodesNonceCache(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	m := c.addMachine("m1")
	entry := c.anyRunning(c.leader())
	c.waitFor(opTimeout, func() (bool, string) {
		return entry.n.LocalMachine(fsm.KlefkiID(m.priv.Public().(ed25519.PublicKey))) != nil, "the machine is not applied on " + entry.id()
	})
	req := m.getKey(t, time.Now())
	if _, err := entry.n.TakeSubmittedKey(ctxOp(t), req, "192.0.2.9"); KindOf(err) != KindNotFound {
		t.Fatalf("first GetKey: %v, want not_found", err)
	}
	before := c.readIndexesServed()
	if _, err := entry.n.TakeSubmittedKey(ctxOp(t), req, "192.0.2.9"); KindOf(err) != KindUnauthenticated {
		t.Fatalf("the same GetKey again: %v, want unauthenticated (a replay)", err)
	}
	if c.readIndexesServed() != before {
		t.Fatal("the replay cost a read index")
	}
}
