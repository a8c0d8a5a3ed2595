package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Certified checkpoints (see fsm/checkpoint.go): the state machine takes a
// checkpoint of the state every CheckpointEvery entries; every share holder
// signs it with its share (a partial over a hashed point, with a DLEQ
// proof) through the log, and t such partials certify it. A Raft snapshot
// is the last certified checkpoint and the entries since, and a replica
// restores one only after checking the certificate against the cluster
// key, so a node certificate alone (or a compromised leader) can no longer
// install a state of its choosing.

// VerifyCheckpointPartial gives the state machine shamir's checks of a
// checkpoint partial.
func (dealChecker) VerifyCheckpointPartial(poly [][]byte, msg []byte, p *fsm.Partial) error {
	pp := &shamir.PublicPoly{Commits: poly}
	if err := pp.Validate(); err != nil {
		return err
	}
	R, err := shamir.HashToPoint(fsm.CheckpointLabel, msg)
	if err != nil {
		return err
	}
	return shamir.VerifyPartial(pp, R, &shamir.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}, msg)
}

// checkpointWork is a checkpoint this node should attest.
type checkpointWork struct {
	clusterID string
	epoch     uint64
	index     uint64
	hash      []byte
}

// checkpointToAttest returns the newest pending checkpoint that this node,
// a holder of the current epoch, has not attested, or nil.
func (n *Node) checkpointToAttest() *checkpointWork {
	var w *checkpointWork
	n.fsm.Read(func(s *fsm.State) {
		me := s.Nodes[n.id.NodeID]
		if me == nil || !me.Holder {
			return
		}
		for i := len(s.Pending) - 1; i >= 0; i-- {
			c := s.Pending[i]
			done := false
			for _, p := range c.Partials {
				done = done || c.Epoch == s.Epoch && p.Index == me.Index
			}
			if !done {
				w = &checkpointWork{clusterID: s.ClusterID, epoch: s.Epoch, index: c.Index, hash: append([]byte(nil), c.Hash...)}
				return
			}
		}
	})
	return w
}

// attestCheckpoints runs on every node: a holder attests each checkpoint
// its state machine takes, once its state is current (a node replaying
// its log after a restart sees checkpoints certified long ago).
func (n *Node) attestCheckpoints(ctx context.Context, rt *runtime) {
	tried := map[uint64]time.Time{}
	for {
		_, changed := n.watch()
		if w := n.checkpointToAttest(); w != nil {
			if at, ok := tried[w.index]; !ok || time.Since(at) > 3*time.Second {
				tried[w.index] = time.Now()
				if err := n.attest(ctx, w); err != nil {
					level := slog.LevelWarn
					if KindOf(err) == KindConflict || KindOf(err) == KindNoQuorum {
						level = slog.LevelDebug
					}
					n.log.Log(ctx, level, "attesting a checkpoint", "index", w.index, "err", err)
				}
			}
		}
		maps.DeleteFunc(tried, func(_ uint64, at time.Time) bool { return time.Since(at) > time.Minute })
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// attest signs a checkpoint with this node's share, once the state is
// current and the checkpoint is still to attest.
func (n *Node) attest(ctx context.Context, w *checkpointWork) error {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	idx, err := n.readIndex(cctx)
	if err != nil {
		return err
	}
	if err := n.waitApplied(cctx, idx); err != nil {
		return err
	}
	if cur := n.checkpointToAttest(); cur == nil || cur.index != w.index || cur.epoch != w.epoch {
		return nil
	}
	share := n.shares.current(w.epoch)
	if share == nil {
		return fmt.Errorf("no share of epoch %d to attest checkpoint %d", w.epoch, w.index)
	}
	defer share.Erase()
	msg := fsm.CheckpointMessage(w.clusterID, w.index, w.hash)
	R, err := shamir.HashToPoint(fsm.CheckpointLabel, msg)
	if err != nil {
		return err
	}
	p, err := shamir.ComputePartial(rand.Reader, share, R, msg)
	if err != nil {
		return err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeAttest, Attest: &fsm.Attest{Index: w.index, Hash: w.hash,
		Partial: &fsm.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}
