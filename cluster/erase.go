package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Erasing destroyed keys from the disk.
//
// A destroy_key drops the key's R and sealed material from the state, but
// the entries that carried them (create_key, replace_key) stay in the Raft
// log, in older snapshots and in bolt's free pages. The state machine takes
// a checkpoint at the destroy's index, which the holders certify like any
// other (fsm/checkpoint.go); from then on a snapshot starts from a state
// without the material and carries only entries after it. Each node then,
// on its own disk:
//
//  1. takes a Raft snapshot at its applied index;
//  2. deletes every log entry up to that snapshot (Raft itself keeps
//     TrailingLogs entries behind a snapshot for slow followers; a
//     follower that needs one of them now gets the snapshot instead);
//  3. overwrites with zeros and removes every older snapshot;
//  4. rewrites raft.db with only its live entries and overwrites the old
//     file with zeros (logstore.go says why deleting is not enough);
//  5. records the destroy it erased in erasedFile, and logs it.
//
// A crash at any step redoes the erasure at the next start. A node that is
// down, or behind, erases when it has caught up.
//
// A leader also deletes its log up to its latest snapshot before it adds
// a node (joinsnap.go). That only deletes entries earlier, as Raft's own
// compaction does; the free pages it leaves are rewritten at the next
// erasure, as after any compaction.

// erasedFile records the last destroy whose key material this node erased
// from its disk.
const erasedFile = "erased.json"

type erasure struct {
	Destroyed uint64 `json:"destroyed"` // index of the destroy_key
	Snapshot  uint64 `json:"snapshot"`  // index of the snapshot the log was cut at
}

// ErasedThrough returns the index of the last destroy_key whose key
// material this node has erased from its data directory (0: none).
func (n *Node) ErasedThrough() uint64 {
	var e erasure
	if err := readJSON(filepath.Join(n.cfg.DataDir, erasedFile), &e); err != nil {
		return 0
	}
	return e.Destroyed
}

// eraseDestroyed runs on every node: once the checkpoint after the last
// destroy is certified, it erases the older copies of the log from the
// node's disk.
func (n *Node) eraseDestroyed(ctx context.Context, rt *runtime) {
	done := n.ErasedThrough()
	var failed time.Time
	for {
		_, changed := n.watch()
		destroyed, certified := n.fsm.Erasure()
		if destroyed > done && certified >= destroyed && time.Since(failed) > 5*time.Second {
			start := time.Now()
			snap, err := n.eraseOldCopies()
			if err == nil {
				err = writeJSON(filepath.Join(n.cfg.DataDir, erasedFile), &erasure{Destroyed: destroyed, Snapshot: snap})
			}
			if err != nil {
				failed = time.Now()
				if ctx.Err() == nil {
					n.log.Error("erasing destroyed keys from disk", "destroyed", destroyed, "err", err)
				}
			} else {
				done = destroyed
				n.log.Info("erased destroyed keys from disk", "destroyed", destroyed, "checkpoint", certified,
					"snapshot", snap, "took", time.Since(start).Round(time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(5 * time.Second):
		}
	}
}

// eraseOldCopies takes a snapshot and erases everything older from the
// node's disk: the log up to the snapshot, older snapshots, and bolt's
// free pages. It returns the snapshot's index.
func (c *consensus) eraseOldCopies() (uint64, error) {
	run, err := c.running()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(c.cfg.DataDir, raftDir, "snapshots")
	var index uint64
	var id string
	f := run.raft.Snapshot()
	switch err := f.Error(); {
	case err == nil:
		meta, rc, err := f.Open()
		if err != nil {
			return 0, fmt.Errorf("opening the snapshot just taken: %w", err)
		}
		rc.Close()
		index, id = meta.Index, meta.ID
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		// The newest snapshot is at the applied index already.
		if index, id, err = newestSnapshot(dir); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("taking a snapshot: %w", err)
	}
	first, err := run.store.FirstIndex()
	if err != nil {
		return 0, err
	}
	if first > 0 && first <= index {
		if err := run.logs.DeleteRange(first, index); err != nil { // the cache too
			return 0, fmt.Errorf("deleting the log up to %d: %w", index, err)
		}
	}
	if err := removeSnapshotsBefore(dir, index, id); err != nil {
		return 0, err
	}
	if err := run.store.compact(); err != nil {
		return 0, err
	}
	return index, nil
}

// snapshotIndex parses the index out of a FileSnapshotStore directory name
// (term-index-milliseconds, with ".tmp" while it is written).
func snapshotIndex(name string) (uint64, bool) {
	parts := strings.Split(strings.TrimSuffix(name, ".tmp"), "-")
	if len(parts) != 3 {
		return 0, false
	}
	i, err := strconv.ParseUint(parts[1], 10, 64)
	return i, err == nil
}

// newestSnapshot returns the index and ID of the newest complete snapshot
// in dir.
func newestSnapshot(dir string) (uint64, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, "", err
	}
	var index uint64
	var id string
	for _, e := range entries {
		i, ok := snapshotIndex(e.Name())
		if ok && e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") && (id == "" || i > index) {
			index, id = i, e.Name()
		}
	}
	if id == "" {
		return 0, "", errors.New("no snapshot on disk")
	}
	return index, id, nil
}

// removeSnapshotsBefore overwrites and removes every snapshot in dir
// before index, finished or not, except keep. A snapshot being sent to a
// follower meanwhile arrives damaged, and the follower refuses it and asks
// again.
func removeSnapshotsBefore(dir string, index uint64, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		i, ok := snapshotIndex(e.Name())
		if !ok || !e.IsDir() || e.Name() == keep || i >= index {
			continue
		}
		if err := shredDir(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// shredDir overwrites every file under dir with zeros and removes dir.
func shredDir(dir string) error {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			return shred(path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(dir)
}
