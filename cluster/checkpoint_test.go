package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestCertifiedSnapshotInstalls: with checkpoints every few entries, the
// holders certify them through the log; a node that was down while the
// others compacted their logs installs a snapshot that carries a
// certified checkpoint, verified against the cluster key it holds, and
// then releases every secret. The same node refuses a snapshot edited to
// make a stranger an admin, at the raftFSM level, and keeps its state.
func TestCertifiedSnapshotInstalls(t *testing.T) {
	t.Parallel()
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 8
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 2
		cfg.CheckpointEvery = 16
	})
	lag := c.nodes[2]
	c.stop(lag)
	secrets := map[string][]byte{}
	create := func(n int) {
		for range n {
			name := fmt.Sprintf("snap/%d", len(secrets))
			secrets[name] = randomBytes(t, 32)
			c.createSecret(name, secrets[name])
		}
	}
	create(20)
	ldr := c.leader()
	var certified uint64
	c.waitFor(settleTimeout, func() (bool, string) {
		ldr.n.fsm.Read(func(s *fsm.State) {
			if s.Checkpoint != nil {
				certified = s.Checkpoint.Index
			}
		})
		return certified > 0, "no checkpoint certified"
	})
	create(10)
	fillers := 0
	c.waitFor(settleTimeout, func() (bool, string) {
		snap := ldr.n.fsm.Capture()
		idx := ldr.n.cons.current().raft.Stats()["last_snapshot_index"]
		var last uint64
		fmt.Sscan(idx, &last)
		if snap.Certificate != nil && last > snap.Certificate.Index {
			return true, ""
		}
		// Raft snapshots only after SnapshotThreshold new entries: give it
		// some, or an idle log whose last snapshot is at the checkpoint
		// never gets one past it.
		fillers++
		c.createSecret(fmt.Sprintf("filler/%d", fillers), randomBytes(t, 8))
		return false, "the leader has taken no snapshot after a certified checkpoint (last_snapshot_index " + idx + ")"
	})
	c.restart(lag)
	c.waitFor(settleTimeout, func() (bool, string) {
		want, _ := ldr.n.fsm.Hash()
		got, _ := lag.n.fsm.Hash()
		return got == want, fmt.Sprintf("%s's state hash %x, the leader's %x", lag.id(), got[:4], want[:4])
	})
	if idx := lag.n.cons.current().raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatalf("%s caught up without installing a snapshot: the test did not exercise Restore", lag.id())
	}
	if lag.n.fsm.Capture().Certificate == nil {
		t.Fatalf("%s has no certified checkpoint after catching up", lag.id())
	}
	for name, want := range secrets {
		if got := c.mustRelease(lag, name); !bytes.Equal(got, want) {
			t.Fatalf("%s released a different %s after catching up", lag.id(), name)
		}
	}

	// The attack: a snapshot whose checkpoint makes a stranger an admin,
	// given to the node's raftFSM as Raft would.
	var sn fsm.Snap
	b, err := ldr.n.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &sn)
	var st map[string]json.RawMessage
	json.Unmarshal(sn.Checkpoint, &st)
	var ops map[string]*fsm.Operator
	json.Unmarshal(st["operators"], &ops)
	strangerKey := randomBytes(t, 32)
	eve := fsm.PrincipalID(strangerKey)
	ops[eve] = &fsm.Operator{ID: eve, Name: "eve", PublicKey: strangerKey, Admin: true}
	st["operators"], _ = json.Marshal(ops)
	sn.Checkpoint, _ = json.Marshal(st)
	forged, _ := json.Marshal(&sn)
	if err := lag.n.cons.rfsm.Restore(io.NopCloser(bytes.NewReader(forged))); err == nil {
		t.Fatal("raftFSM restored a forged snapshot")
	}
	lag.n.fsm.Read(func(s *fsm.State) {
		if s.Operators[eve] != nil {
			t.Fatal("a refused snapshot made eve an operator")
		}
	})
	for name, want := range secrets {
		if got := c.mustRelease(lag, name); !bytes.Equal(got, want) {
			t.Fatalf("%s released a different %s after refusing a snapshot", lag.id(), name)
		}
		break
	}
}
