package jepsen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
)

// The faults operators meet (issue 13): a full disk on one node, a crash
// while a snapshot is installed, a rolling restart of every node. Each
// checks what it promises on top of the run's checks.

// diskFull fills the data disk of one member (its own tmpfs, disk.go)
// to the last byte; heal removes the filler. While the disk is full the
// node cannot write its Raft log, its snapshots or its audit log: the
// run's checks hold it to what they hold every node to (no anomaly, no
// panic, an answer within the request timeout), and after the filler is
// removed it must catch up (the final convergence).
func (nm *nemesis) diskFull(r *rand.Rand, members []int) (string, error) {
	victim := members[r.IntN(len(members))]
	n, err := nm.db.fill(victim)
	return fmt.Sprintf("disk full: %s's data disk (%s tmpfs) filled with %d KiB", nm.db.names([]int{victim}), dataDiskSize, n>>10), err
}

// snapshotRestored is what keyd logs when its state machine has
// restored a snapshot (cluster/raftfsm.go).
const snapshotRestored = "restored a verified snapshot"

// snapshotCrash makes a member fall behind the leader by more than its
// trailing logs (the suite runs keyd with --snapshot-threshold 64
// --trailing-logs 16 --snapshot-interval 2s), so that it can only catch
// up by installing a snapshot, lets it reconnect, and kills it with
// kill -9 in the middle of the install: while it receives the snapshot
// (a new "*.tmp" directory in its Raft snapshot store) or, by the draw,
// once the snapshot is stored and the state machine restores it (a new
// finished snapshot directory; the restore takes a few hundred ms with
// -race). Heal restarts it on whatever its disk holds; it must catch up
// with the same state as the others (the final convergence, and
// "diverged" if it restored into another state). The fault's detail
// says where the kill landed, from the store and the node's log.
func (nm *nemesis) snapshotCrash(ctx context.Context, r *rand.Rand, members []int, hold time.Duration) (string, error) {
	d := nm.db
	leader, ok := d.leader(ctx)
	if !ok {
		return "snapshot-crash: no leader known", nil
	}
	var others []int
	for _, n := range members {
		if n != leader {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return "snapshot-crash: no follower", nil
	}
	victim := others[r.IntN(len(others))]
	duringRestore := r.IntN(2) == 0
	name := d.names([]int{victim})
	rest := slices.DeleteFunc(slices.Clone(members), func(n int) bool { return n == victim })
	if err := d.nw.Cut(ctx, map[int][]int{victim: rest}); err != nil {
		return "snapshot-crash: cut " + name, err
	}
	// Fall behind: the workloads write; wait, for the fault's hold at
	// most, until the leader is 80 entries (snapshot threshold and
	// trailing logs) past the victim.
	base := nm.applied(ctx, victim)
	behind := false
	for deadline := time.Now().Add(hold); time.Now().Before(deadline) && ctx.Err() == nil; {
		if nm.applied(ctx, leader) > base+80 {
			behind = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	id := d.nodeID(victim)
	store := filepath.Join(d.dataDir(id), "raft", "snapshots")
	before := entries(store)
	log := d.logPath(id)
	offset := fileSize(log)
	if err := d.nw.Mend(ctx); err != nil {
		return "snapshot-crash: mend " + name, err
	}
	seen := ""
	for deadline := time.Now().Add(10 * time.Second); seen == "" && time.Now().Before(deadline) && ctx.Err() == nil; {
		for e := range entries(store) {
			if before[e] {
				continue
			}
			if strings.HasSuffix(e, ".tmp") && !duringRestore {
				seen = "while it received the snapshot"
			} else if !strings.HasSuffix(e, ".tmp") {
				seen = "once the snapshot was stored, while the state machine restored it"
			}
		}
		if seen == "" {
			time.Sleep(time.Millisecond)
		}
	}
	d.kill(victim)
	restored := bytes.Contains(tail(log, offset), []byte(snapshotRestored))
	var how string
	switch {
	case seen == "":
		how = "no snapshot came within 10 s; killed anyway"
	case restored:
		how = "killed " + seen + ", but the restore finished before the kill landed"
	default:
		how = "killed " + seen + ", before the restore finished"
	}
	if !behind {
		how += fmt.Sprintf(" (it fell fewer than 80 entries behind within %.1fs)", hold.Seconds())
	}
	return fmt.Sprintf("snapshot-crash: %s cut off until behind, reconnected, %s", name, how), nil
}

// entries lists a directory's entries.
func entries(dir string) map[string]bool {
	out := map[string]bool{}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		out[de.Name()] = true
	}
	return out
}

// applied is a slot's applied index, 0 if it does not answer.
func (nm *nemesis) applied(ctx context.Context, n int) uint64 {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := nm.db.client(n).Status(cctx)
	if err != nil {
		return 0
	}
	return st.Applied
}

// rollingRestart restarts every member in turn, as an operator upgrading
// the cluster does: SIGTERM, wait for it to exit, start it again on its
// data, wait until it has caught up with the leader, next. A node that
// does not stop within 15 s of SIGTERM, or does not catch up within a
// minute of its restart, is an anomaly ("restart").
func (nm *nemesis) rollingRestart(ctx context.Context, r *rand.Rand, members []int) (string, error) {
	d := nm.db
	order := slices.Clone(members)
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var steps []string
	for _, n := range order {
		id := d.nodeID(n)
		d.mu.Lock()
		p := d.slot(n).proc
		d.mu.Unlock()
		if p != nil && !p.stop(15*time.Second) {
			nm.rep.anomaly("restart", "rolling restart: %s did not stop within 15 s of SIGTERM and was killed", id)
		}
		if err := d.start(ctx, n); err != nil {
			return "rolling restart " + strings.Join(steps, ", "), fmt.Errorf("restarting %s: %w", id, err)
		}
		began := time.Now()
		target := uint64(0)
		if l, ok := d.leader(ctx); ok && l != n {
			target = nm.applied(ctx, l)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.waitMembers(wctx, n, func(st *cluster.Status) bool { return st.Leader != "" && st.Applied >= target })
		cancel()
		if err != nil {
			nm.rep.anomaly("restart", "rolling restart: %s did not catch up with the leader (applied %d) within a minute of its restart: %v", id, target, err)
		}
		steps = append(steps, fmt.Sprintf("%s (caught up in %.1fs)", id, time.Since(began).Seconds()))
	}
	return "rolling restart " + strings.Join(steps, ", "), nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail is a file from offset on.
func tail(path string, offset int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := f.Seek(offset, 0); err != nil {
		return nil
	}
	b.ReadFrom(f)
	return b.Bytes()
}

// clockAheadBy are the offsets the clock nemesis draws from: within
// fsm.MaxClockSkew (5 minutes), just beyond it, and far beyond.
var clockAheadBy = []time.Duration{2 * time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour, 365 * 24 * time.Hour}

// clockAhead puts one member's wall clock far ahead (keyd built with
// -tags keyquorum_clock_offset reads its offset from a file the suite
// writes; cluster/clock_offset.go) and checks, from the node's log, that
// the node took it; heal puts it back. The monotonic clock is untouched:
// Raft's timers run as before, but the node judges signed requests,
// nonces and expiries by a time far ahead, and stamps its own commands
// with it. The run's checks must all hold.
func (nm *nemesis) clockAhead(r *rand.Rand, members []int) (string, error) {
	d := nm.db
	victim := members[r.IntN(len(members))]
	ahead := clockAheadBy[r.IntN(len(clockAheadBy))]
	id := d.nodeID(victim)
	log := d.logPath(id)
	offset := fileSize(log)
	desc := fmt.Sprintf("clock of %s %v ahead", d.names([]int{victim}), ahead)
	d.mu.Lock()
	d.ahead[id] = true
	d.mu.Unlock()
	if err := os.WriteFile(d.clockPath(id), []byte(ahead.String()), 0o644); err != nil {
		return desc, err
	}
	want := []byte(fmt.Sprintf("the clock is now %v ahead", ahead))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if bytes.Contains(tail(log, offset), want) {
			return desc, nil
		}
	}
	return desc, fmt.Errorf("%s did not report its clock ahead within 5 s: is keyd built with -tags keyquorum_clock_offset (make jepsen-bin builds it so)?", id)
}

// clocksBack sets every clock the clock nemesis moved back to the true
// time.
func (d *db) clocksBack() error {
	d.mu.Lock()
	var ids []string
	for id := range d.ahead {
		ids = append(ids, id)
	}
	clear(d.ahead)
	d.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, os.WriteFile(d.clockPath(id), []byte("0s"), 0o644))
	}
	return errors.Join(errs...)
}
