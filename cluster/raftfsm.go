package cluster

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// raftFSM adapts fsm.FSM to raft.FSM. Apply never returns an error for a
// refused command: the refusal is the entry's Result, the same on every
// replica. After every apply it wakes whoever waits for an index.
type raftFSM struct {
	fsm *fsm.FSM
	log *slog.Logger

	// hold is taken by Apply for each entry. Tests lock it to make a
	// replica lag behind the log it has acknowledged, as a slow disk or a
	// long pause would.
	hold sync.Mutex

	metrics *metrics.Set

	// logs is the running Raft's log store, whose mapped pages a
	// snapshot's Persist releases (logStore.releaseMapped).
	logs atomic.Pointer[logStore]

	// large is set once Apply saw largeKeys keys in the state and set
	// the memory policy of a large state (largeStatePolicy), or a restore
	// of a snapshot large enough to set it did (returnFreedMemory).
	large     atomic.Bool
	largeKeys int

	mu      sync.Mutex
	applied uint64
	// caughtUp is, after a restore, the last index Raft's log held then
	// (the entries after the snapshot, applied once the leader says they
	// are committed), and when the restore ended: Apply logs when it
	// reaches it (a restarted node's replay, docs/scale.md).
	caughtUp struct {
		index, from uint64
		since       time.Time
		first       time.Duration // from since to the first apply after it
		// settle is the restore's memory work (settleAfterRestore),
		// left until the node has caught up: nil once done.
		settle func()
	}
	chains  *chainRingOf  // the state's chain hash at recent indexes (chain.go)
	changed chan struct{} // closed and replaced after every apply
}

func newRaftFSM(f *fsm.FSM, log *slog.Logger, m *metrics.Set) *raftFSM {
	return &raftFSM{fsm: f, log: log, metrics: m, chains: newChainRing(), changed: make(chan struct{}), largeKeys: largeStateKeys}
}

func (r *raftFSM) Apply(l *raft.Log) any {
	res := r.apply(l)
	r.advance(l.Index)
	return res
}

// ApplyBatch applies a batch of committed entries (raft.BatchingFSM: up
// to MaxAppendEntries at once, as a follower that catches up or a node
// that restarted gets them) as Apply does each, in order, each checked
// against the state the one before it left; their signatures are
// verified ahead on every CPU meanwhile (fsm.Batch), and whoever waits
// for an index is woken once, after the batch. Raft also hands it its
// configuration entries, which the state machine does not apply (Apply
// never sees them).
func (r *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	res := make([]any, len(logs))
	entries := make([]fsm.Entry, 0, len(logs))
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			entries = append(entries, fsm.Entry{Index: l.Index, Data: l.Data})
		}
	}
	b := r.fsm.NewBatch(entries)
	var last uint64
	i := 0
	for j, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		b.Ahead(i)
		i++
		res[j] = r.apply(l)
		last = l.Index
	}
	if last > 0 {
		r.advance(last)
	}
	return res
}

// apply applies one entry and records its chain hash.
func (r *raftFSM) apply(l *raft.Log) *fsm.Result {
	r.hold.Lock()
	start := time.Now()
	res := r.fsm.Apply(l.Index, l.AppendedAt, l.Data)
	r.metrics.RaftApplySeconds.Observe(time.Since(start).Seconds())
	r.hold.Unlock()
	if !r.large.Load() && r.fsm.KeyCount() >= r.largeKeys {
		r.large.Store(true)
		go largeStatePolicy() // a collection: not on Raft's apply path
	}
	_, chain := r.fsm.ChainAt()
	r.mu.Lock()
	r.chains.applied(l.Index, chain)
	if r.caughtUp.index != 0 && r.caughtUp.first == 0 {
		r.caughtUp.first = time.Since(r.caughtUp.since)
	}
	c := r.caughtUp
	if c.index != 0 && l.Index >= c.index {
		r.caughtUp.index, r.caughtUp.settle = 0, nil
	}
	r.mu.Unlock()
	if c.index != 0 && l.Index >= c.index {
		r.log.Info("applied the log held after the restored snapshot", "entries", l.Index-c.from, "applied", l.Index,
			"first_after", c.first, "took", time.Since(c.since))
		if c.settle != nil {
			go c.settle()
		}
	}
	return res
}

// advance records the state machine's applied index and wakes whoever
// waits.
func (r *raftFSM) advance(index uint64) {
	r.mu.Lock()
	if index > r.applied {
		r.applied = index
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// watch returns the applied index and a channel closed at the next apply.
func (r *raftFSM) watch() (uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied, r.changed
}

// mark is the applied index and the chain hash there, read together.
func (r *raftFSM) mark() chainMark {
	r.mu.Lock()
	defer r.mu.Unlock()
	var h []byte
	if s := r.chains.slot(r.applied); s != nil {
		h = s.hash
	}
	return chainMark{Index: r.applied, Hash: h}
}

// stateChainAt is the chain hash of the state at index, which this
// replica has reached, if it still knows it (chainRingOf.stateAt).
func (r *raftFSM) stateChainAt(index uint64) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chains.stateAt(index)
}

// Snapshot captures the state machine's snapshot (its last certified
// checkpoint and the entries since) between applies; Persist encodes it
// later, in another goroutine. In the moments between the key generation
// and the certification of the key's checkpoint there is none: no
// replica would install it, nor this node restore it at a restart, so
// Raft keeps its log and tries again at its next interval.
func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := r.fsm.CaptureCertified()
	if err != nil {
		return nil, err
	}
	return snapshot{snap: sn, log: r.log, logs: r.logs.Load()}, nil
}

// Restore installs a snapshot, from the leader or from the node's own
// disk at startup, only if the state machine verifies it (see
// fsm.FSM.RestoreSnapshot); otherwise the state stays as it was and Raft
// gets the error.
func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	cr := &countingReader{r: rc}
	r.mu.Lock()
	earlier := r.caughtUp.settle
	r.caughtUp.settle = nil
	r.mu.Unlock()
	if earlier != nil {
		earlier() // an earlier restore's, never caught up: before this one sets the collector's percent
	}
	collected := collectLess()
	res, err := r.fsm.RestoreSnapshotFrom(cr) // read once, as a stream: no copy of the file in memory
	if err != nil {
		collected(r.large.Load())
		r.log.Error("refused a snapshot", "err", err)
		return err
	}
	if res.TOFU {
		r.log.Warn("restored a snapshot on trust: no cluster key was pinned to check it against",
			"checkpoint", res.Checkpoint, "entries", res.Entries, "applied", res.Applied, "bytes", cr.n, "took", time.Since(start))
	} else {
		r.log.Info("restored a verified snapshot", "checkpoint", res.Checkpoint, "entries", res.Entries, "applied", res.Applied,
			"bytes", cr.n, "took", time.Since(start))
	}
	if cr.n >= freeAfterSnapshot {
		// returnFreedMemory sets the large state's policy: the first
		// Apply after a restart need not force a second collection.
		r.large.Store(true)
	}
	settle := settleAfterRestore(collected, r.large.Load(), cr.n)
	applied, chain := r.fsm.ChainAt()
	last := lastCommand(r.logs.Load(), applied)
	r.mu.Lock()
	r.chains.restored(applied, chain)
	r.caughtUp.index, r.caughtUp.first, r.caughtUp.settle = 0, 0, nil
	if last > applied {
		r.caughtUp.index, r.caughtUp.from, r.caughtUp.since, r.caughtUp.settle = last, applied, time.Now(), settle
		time.AfterFunc(settleAtTheLatest, settle)
	}
	r.mu.Unlock()
	if last <= applied {
		go settle() // a collection: not before the node serves
	}
	r.advance(applied)
	return nil
}

// settleAtTheLatest is how long after a restore its memory work
// (settleAfterRestore) waits at most for the node to catch up: the
// entries the log held after the snapshot may never be committed (a new
// leader's log replaces them) and the cluster then write nothing.
const settleAtTheLatest = 30 * time.Second

// settleAfterRestore is the memory work a restore leaves, done once,
// however often it is called: the collector's percent set back from
// the restore's (collected, collectLess), then the snapshot's garbage
// returned to the operating system (returnFreedMemory). A restarted node
// does it once it has applied the entries its log held after the
// snapshot, which it must before it serves a linearizable read: done
// at once, the forced collection and the return of every free page
// (0.15-0.3 s of CPU at 100,000 keys) ran beside those applies, and at
// the collector's usual percent the heap the restore left made it
// collect again among them (docs/scale.md, "The restore's memory work
// after the node serves").
func settleAfterRestore(collected func(large bool), large bool, n int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			collected(large)
			returnFreedMemory(n)
		})
	}
}

// lastCommand is the index of the last command entry in logs after
// index, or 0: Raft's own entries after it (a new leader's no-op, a
// configuration change) never reach Apply.
func lastCommand(logs *logStore, index uint64) uint64 {
	if logs == nil {
		return 0
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0
	}
	for i := last; i > index; i-- {
		var l raft.Log
		if logs.GetLog(i, &l) != nil {
			return 0
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

type snapshot struct {
	snap *fsm.Snap
	log  *slog.Logger
	logs *logStore // nil in tests without one
}

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	n, err := s.snap.WriteTo(sink) // streamed: no second copy of the state
	if err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	took := time.Since(start)
	returnFreedMemory(n)
	if s.logs != nil {
		// The log's entries up to the snapshot are read again only for a
		// follower that lags behind it: their pages need not stay mapped.
		if err := s.logs.releaseMapped(); err != nil {
			s.log.Warn("releasing the raft log's mapped pages", "err", err)
		}
	}
	// Logged once the memory is returned: what reads the node's memory
	// after this line (keybench -scale) sees it after the snapshot, not
	// in the middle of returning its garbage.
	s.log.Info("persisted a snapshot", "id", sink.ID(), "entries", len(s.snap.Entries), "bytes", n, "took", took)
	return nil
}

// countingReader counts what it reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// freeAfterSnapshot is the size from which a snapshot written or
// restored sets the memory policy below.
const freeAfterSnapshot = 8 << 20

// largeStateGCPercent is the collector's GOGC once the state is large
// (a snapshot of freeAfterSnapshot or more), unless GOGC or GOMEMLIMIT is
// set.
const largeStateGCPercent = 50

// largeStateKeys is the number of keys from which Apply sets the memory
// policy of a large state (largeStatePolicy) without waiting for a
// snapshot of freeAfterSnapshot bytes (about 18,000 keys): a bulk load of
// a million keys is a thousand entries, below Raft's snapshot threshold of
// 8,192, so it brought no snapshot, and the heap stayed at GOGC=100.
const largeStateKeys = 16 << 10

// returnFreedMemory is the memory policy after a snapshot of n bytes was
// written or restored: largeStatePolicy when n is large.
//
// Writing or restoring a snapshot allocates garbage in proportion to the
// state (each key's encoding, its decoding's buffers), which would stay
// in the process's resident size until the runtime's scavenger returns
// it, a few MiB a second: it is returned now, at the cost of a collection
// (about the CPU of marking the live heap once, small beside the
// snapshot's own).
func returnFreedMemory(n int64) {
	if n < freeAfterSnapshot {
		return
	}
	largeStatePolicy()
}

// restoreGCPercent is the collector's GOGC while a snapshot is restored,
// and after it until the node has applied the log it held
// (settleAfterRestore), unless GOGC or GOMEMLIMIT is set. A restore
// builds the state from nothing, a restarted node's heap with it, and
// leaves about as much garbage again as it keeps (each key's AES cipher
// and CTR for the state hash, statehash.go). At GOGC=100 a restore of
// 100,000 keys took 14 collections, each marking the state built so far;
// at 400 three or four, but its heap grew to 127-143 MB, every page of it
// new to the process: the kernel's page faults (32,000-36,000, 0.2-0.26 s
// of system time) cost more than the collections saved. At 200 it took
// seven, 99-111 MB of heap and about 27,000 faults, and 444-479 ms of
// wall time against 493-562 ms at 400 (a new process restoring the same
// 49 MB snapshot, alternated; docs/scale.md, "How much the collector
// runs during a restore"). The collection returnFreedMemory forces after
// a large restore gives the garbage back to the operating system.
const restoreGCPercent = 200

// collectLess sets the collector's GOGC to restoreGCPercent for a
// restore, unless the operator set GOGC or GOMEMLIMIT, and returns what
// sets it back: to largeStateGCPercent when the state is large (as
// largeStatePolicy would have, had it run meanwhile), else to what it
// was.
func collectLess() (done func(large bool)) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func(bool) {}
	}
	prev := debug.SetGCPercent(restoreGCPercent)
	return func(large bool) {
		if large {
			prev = largeStateGCPercent
		}
		debug.SetGCPercent(prev)
	}
}

// largeStatePolicy is the memory policy of a node whose state is large
// (docs/scale.md, "Memory per key"): it returns the heap's free memory to
// the operating system, and unless the operator set GOGC or GOMEMLIMIT
// (which the runtime reads), makes GOGC largeStateGCPercent.
//
// With Go's default GOGC=100 the heap grows to twice its live size
// between collections, so a node's memory was two to five times its
// state; at largeStateGCPercent it grows to 1.5 times its live size, for
// about twice the collections. A proportion, not a memory limit sized to
// the state: a limit that the live heap nears makes the collector run
// back to back (a join at 100,000 keys took a minute with one of 1.25
// times the snapshot plus 48 MiB).
func largeStatePolicy() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(largeStateGCPercent)
	}
	debug.FreeOSMemory()
}

func (s snapshot) Release() {}
