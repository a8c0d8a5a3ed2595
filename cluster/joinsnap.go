package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A joining node catches up from a snapshot, not from the whole log.
//
// Raft sends a new server the log from the first index the follower
// lacks; only when the leader no longer holds that entry does it send
// its latest snapshot instead (InstallSnapshot). A new server has
// nothing, so while the leader's log still starts at index 1 (a history
// shorter than TrailingLogs, 10,240 entries by default, plus a
// snapshot's worth), the new node applied every entry since the founding
// one, each signature checked again: a join cost the history, not the
// state (docs/scale.md, "Joining a node"). The leader's latest snapshot
// is a certified checkpoint and the entries since (fsm/checkpoint.go),
// which the new node verifies against the cluster key pinned at its start
// (StartRequest.ClusterKey) and restores as a restarted node does.
//
// So the leader, before it adds a server as a non-voter
// (reconcileOnce), prepares its log with prepareCatchUp:
//
//  1. if its log runs more than joinSnapshotLag entries past its latest
//     snapshot (or it has none), it takes one, so that the new node
//     replays at most about that many entries after the snapshot's;
//  2. if its log still starts at index 1, it deletes the entries up to
//     that snapshot, as Raft's own compaction would with TrailingLogs 0,
//     but never past the index that any other member it reaches has
//     applied: a follower that is behind keeps getting entries, not a
//     snapshot. A member that does not answer within a second (down,
//     restarting) is not waited for; if it comes back behind the cut,
//     Raft sends it the snapshot, as it does to any follower behind a
//     compaction.
//
// A short log (fewer than joinSnapshotLag entries past the latest
// snapshot, with no snapshot yet) is sent as it is: replaying it is
// cheaper than writing a snapshot, and a cluster still forming its first
// key has no certified checkpoint to snapshot anyway.
//
// What this does not change: snapshots (only Raft writes and removes
// them), and erasure (erase.go): this deletes log entries, as Raft's
// compaction does, and never keeps any; the free pages they leave are
// what erase.go rewrites after a destroy, as after any compaction. A
// leader elected while a non-voter is still catching up does not cut its
// log again: that node then gets the log as before.

// joinSnapshotLag is how many log entries past its latest snapshot a
// leader lets a joining node replay; past that it takes a snapshot first.
// It is the state machine's checkpoint interval: a snapshot starts from
// the last certified checkpoint and carries the entries since, so a
// fresher snapshot would not shorten the replay by much more.
const joinSnapshotLag = 1024

// prepareCatchUp makes the leader's log such that a new server catches up
// from a snapshot (see above). others are the Raft addresses of the
// servers other than this leader and the new one.
func (c *consensus) prepareCatchUp(ctx context.Context, run *raftRun, others []string) {
	start := time.Now()
	snapIndex, err := c.latestSnapshot(run)
	if err != nil {
		c.log.Warn("listing snapshots before a join", "err", err)
		return
	}
	last := run.raft.LastIndex()
	took := false
	if last > snapIndex+joinSnapshotLag {
		f := run.raft.Snapshot()
		switch err := f.Error(); {
		case err == nil:
			meta, rc, err := f.Open()
			if err != nil {
				c.log.Warn("opening the snapshot taken for a join", "err", err)
				return
			}
			rc.Close()
			snapIndex, took = meta.Index, true
		case errors.Is(err, raft.ErrNothingNewToSnapshot):
		default:
			// Not certified yet, say: the new node replays the log.
			c.log.Info("no snapshot for a joining node, it replays the log", "err", err)
		}
	}
	first, err := run.store.FirstIndex()
	if err != nil || first != 1 || snapIndex == 0 {
		if took {
			c.log.Info("took a snapshot for a joining node", "snapshot", snapIndex, "took", time.Since(start).Round(time.Millisecond))
		}
		return
	}
	cut := min(snapIndex, c.appliedByOthers(ctx, run, others))
	if cut < first {
		c.log.Info("left the log whole for a joining node: a member is behind the snapshot", "snapshot", snapIndex, "cut", cut)
		return
	}
	if err := run.logs.DeleteRange(first, cut); err != nil { // the cache too
		c.log.Warn("cutting the log for a joining node", "err", err)
		return
	}
	c.log.Info("cut the log for a joining node: it catches up from the snapshot", "snapshot", snapIndex, "deleted_through", cut,
		"snapshot_taken", took, "took", time.Since(start).Round(time.Millisecond))
}

// latestSnapshot is the index of the newest snapshot in the node's
// snapshot store, 0 without one.
func (c *consensus) latestSnapshot(run *raftRun) (uint64, error) {
	metas, err := run.snaps.List()
	if err != nil || len(metas) == 0 {
		return 0, err
	}
	return metas[0].Index, nil // newest first
}

// appliedByOthers is the lowest index that the members at addrs which
// answer within a second say they have applied (the maximum index when
// none answers).
func (c *consensus) appliedByOthers(ctx context.Context, run *raftRun, addrs []string) uint64 {
	low := uint64(1<<64 - 1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var ns struct {
				Applied uint64 `json:"applied"`
			}
			if _, err := c.callWith(ctx, run, addr, statusPath, nil, &ns); err != nil {
				return
			}
			mu.Lock()
			low = min(low, ns.Applied)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return low
}
