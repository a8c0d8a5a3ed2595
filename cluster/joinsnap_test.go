package cluster

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestJoiningNodeCatchesUpFromASnapshot: the leader's log still starts at
// index 1 (a history shorter than TrailingLogs), so Raft would send a new
// node every entry since the founding one. The leader cuts its log up to
// its latest snapshot before it adds the node (joinsnap.go): the node
// installs that snapshot, verified against the cluster key pinned at its
// start, applies no founding entry of its own, and then holds the same
// state as the others and releases every secret.
func TestJoiningNodeCatchesUpFromASnapshot(t *testing.T) {
	t.Parallel()
	// No snapshot of Raft's own: one taken while the cluster forms would
	// have its third node's join cut the log already. The test takes the
	// leader's snapshot itself below.
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
	})
	secrets := map[string][]byte{}
	var keyed uint64 // an index past the key's certified checkpoint
	for i := range 24 {
		name := fmt.Sprintf("join/%d", i)
		secrets[name] = randomBytes(t, 32)
		c.createSecret(name, secrets[name])
		if i == 12 {
			keyed = c.leader().n.cons.appliedIndex()
		}
	}
	ldr := c.leader()
	c.waitFor(30*time.Second, func() (bool, string) {
		// Refused until the key's first checkpoint is certified.
		err := ldr.n.cons.current().raft.Snapshot().Error()
		idx, _ := strconv.ParseUint(ldr.n.cons.current().raft.Stats()["last_snapshot_index"], 10, 64)
		return idx >= keyed, fmt.Sprintf("the leader's latest snapshot is at %d, before %d (%v)", idx, keyed, err)
	})
	if first, err := ldr.n.cons.current().store.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("the leader's log starts at %d (%v): the test needs a log from index 1", first, err)
	}
	tn := c.addNode()
	c.join(tn)
	if idx := tn.n.cons.current().raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatalf("%s caught up without installing a snapshot", tn.id())
	}
	if f := tn.n.fsm.Founding(); f != nil {
		t.Fatalf("%s applied the founding entry itself: it was sent the log from index 1", tn.id())
	}
	for name, want := range secrets {
		if got := c.mustRelease(tn, name); !bytes.Equal(got, want) {
			t.Fatalf("%s released a different %s", tn.id(), name)
		}
	}
	want, _ := c.leader().n.fsm.Hash()
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, m := range c.running() {
			if got, _ := m.n.fsm.Hash(); got != want {
				return false, m.id() + " does not hold the leader's state"
			}
		}
		return true, ""
	})
}

// TestJoinSnapshotsALongLog: the leader has taken no snapshot yet (Raft's
// default threshold, 8,192 entries, is not reached) and its log runs
// more than joinSnapshotLag entries: before it adds the new node it
// takes a snapshot and cuts its log at it, and the new node installs it.
func TestJoinSnapshotsALongLog(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	const writers = 8
	per := (joinSnapshotLag + writers) / writers
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				name := fmt.Sprintf("long/%d/%d", w, i)
				ct := c.seal(name, []byte("0123456789abcdef0123456789abcdef"))
				if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
					Name: name, Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}}); err != nil {
					errs <- fmt.Errorf("creating %s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ldr := c.leader()
	if idx := ldr.n.cons.current().raft.Stats()["last_snapshot_index"]; idx != "0" {
		t.Fatalf("the leader took a snapshot by itself (at %s): the test needs none", idx)
	}
	tn := c.addNode()
	c.join(tn)
	if idx := ldr.n.cons.current().raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatalf("the leader took no snapshot for the join")
	}
	if idx := tn.n.cons.current().raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatalf("%s caught up without installing a snapshot", tn.id())
	}
	if f := tn.n.fsm.Founding(); f != nil {
		t.Fatalf("%s applied the founding entry itself: it was sent the log from index 1", tn.id())
	}
	c.waitHasKey(tn, fmt.Sprintf("long/%d/%d", writers-1, per-1))
}
