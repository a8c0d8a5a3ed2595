package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestJoiningNodeRefusesAForgedFirstSnapshot: a joining node's state is
// empty until Raft gives it one, so it takes Raft traffic from any node
// certificate of the cluster CA (isMember), and it used to restore its
// first snapshot on trust: the start request keyctl sent carried no
// cluster key. The attacker holds a node certificate of the CA (a former
// member's disk, or one the join CA issued) and runs a cluster of its own
// under it, with the real cluster's ID, its own admin and its own cluster
// key, certified by its own holders. It admits the joining node the
// operator started and sends it its snapshot: the node took it, and with
// it the attacker's admin, members and key. Now the start request carries
// the cluster key the operator pinned, and the node refuses a snapshot
// certified under any other; the real cluster then admits it.
func TestJoiningNodeRefusesAForgedFirstSnapshot(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("luks/real", randomBytes(t, 32))

	evil := newEmptyCluster(t)
	evil.ca, evil.clusterID, evil.gossipKey = c.ca, c.clusterID, c.gossipKey
	evil.configure = func(cfg *Config) {
		cfg.SnapshotThreshold = 8
		cfg.SnapshotInterval = 50 * time.Millisecond
	}
	evil.addNode()
	evil.initFirst(1)
	var keyed uint64
	for i := range 16 {
		evil.createSecret(fmt.Sprintf("forged/%d", i), randomBytes(t, 32))
		if i == 4 {
			keyed = evil.nodes[0].n.cons.appliedIndex()
		}
	}
	evilKey := evil.clusterKey()
	if bytes.Equal(evilKey, c.clusterKey()) {
		t.Fatal("the attacker's cluster has the real key")
	}
	c.waitFor(30*time.Second, func() (bool, string) {
		idx := evil.nodes[0].n.cons.current().raft.Stats()["last_snapshot_index"]
		var i uint64
		fmt.Sscan(idx, &i)
		return i >= keyed, "the attacker has no certified snapshot yet"
	})

	// The operator starts the new node as keyctl cluster join does.
	logs := &lockedBuffer{}
	c.configure = func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(c.logs, logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	jn := c.addNode()
	c.configure = nil
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := jn.n.Start(ctx, c.startRequest(jn)); err != nil {
		t.Fatalf("starting %s: %v", jn.id(), err)
	}
	// The attacker reaches it first.
	if _, err := evil.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(jn)}); err != nil {
		t.Fatalf("the attacker's add_node: %v", err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		var key []byte
		jn.n.fsm.Read(func(s *fsm.State) { key = s.PublicKey() })
		return key != nil || strings.Contains(logs.String(), "refused a snapshot"), jn.id() + " has neither restored nor refused the attacker's snapshot"
	})
	var key []byte
	var admins []string
	jn.n.fsm.Read(func(s *fsm.State) {
		key = s.PublicKey()
		for id, o := range s.Operators {
			if o.Admin {
				admins = append(admins, id)
			}
		}
	})
	if key != nil {
		t.Fatalf("%s restored the attacker's snapshot: cluster key %x (the attacker's: %v), admins %v", jn.id(), key[:4], bytes.Equal(key, evilKey), admins)
	}
	if !strings.Contains(logs.String(), "another cluster key") {
		t.Fatalf("%s refused the snapshot for another reason than its key:\n%s", jn.id(), logs.String())
	}

	// The attacker gone, the real cluster admits the node.
	c.stopEvil(evil)
	before := c.status(c.nodes[0]).Epoch
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddNode, AddNode: c.nodeRecord(jn)}); err != nil {
		t.Fatalf("adding %s: %v", jn.id(), err)
	}
	c.waitVoter(jn)
	c.waitSettled(before)
	if !bytes.Equal(poly(jn).Commits[0], c.clusterKey()) {
		t.Fatalf("%s holds another cluster key than the real one", jn.id())
	}
	c.waitHasKey(jn, "luks/real")
}

// stopEvil shuts down every node of another test cluster.
func (c *testCluster) stopEvil(evil *testCluster) {
	c.t.Helper()
	for _, tn := range evil.nodes {
		if tn.running {
			evil.stop(tn)
		}
	}
}
