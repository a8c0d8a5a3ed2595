package cluster

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/fsm"
)

// raftFSM adapts fsm.FSM to raft.FSM. Apply never returns an error for a
// refused command: the refusal is the entry's Result, the same on every
// replica. After every apply it wakes whoever waits for an index.
type raftFSM struct {
	fsm *fsm.FSM

	// hold is taken by Apply for each entry. Tests lock it to make a
	// replica lag behind the log it has acknowledged, as a slow disk or a
	// long pause would.
	hold sync.Mutex

	mu      sync.Mutex
	applied uint64
	changed chan struct{} // closed and replaced after every apply
}

func newRaftFSM(f *fsm.FSM) *raftFSM {
	return &raftFSM{fsm: f, changed: make(chan struct{})}
}

func (r *raftFSM) Apply(l *raft.Log) any {
	r.hold.Lock()
	res := r.fsm.Apply(l.Index, l.AppendedAt, l.Data)
	r.hold.Unlock()
	r.advance(l.Index)
	return res
}

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

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := r.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if err := r.fsm.Restore(b); err != nil {
		return err
	}
	var applied uint64
	r.fsm.Read(func(s *fsm.State) { applied = s.Applied })
	r.advance(applied)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
