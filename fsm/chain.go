package fsm

import (
	"crypto/sha256"
	"encoding/binary"
)

// The chain hash (State.Chain) links every entry the state machine
// applied, refused or not, in order:
//
//	Chain_i = SHA-256(label || Chain_{i-1} || index || time || data)
//
// over exactly what Apply is given: the entry's index, the leader's time
// for it and its bytes. Apply is deterministic, so two replicas with the
// same chain hash at an index applied the same inputs and hold the same
// state there; two whose hashes differ applied different histories, and
// one of them is not the cluster's (cluster/chain.go acts on it). Raft's
// term is left out: entries that differ only in their term change
// nothing a replica does.
//
// It is part of the state, so it is in every checkpoint t holders
// certify, in the state hash, and rebuilt by a snapshot's restore, which
// replays the entries after the checkpoint: a replica never takes it on
// anyone's word.

// chainLabel starts every link's input.
const chainLabel = "keyquorum chain v1\x00"

// chainLink is the chain hash after prev with the entry at index, of the
// leader's time at (Unix nanoseconds), with data.
func chainLink(prev []byte, index uint64, at int64, data []byte) []byte {
	h := sha256.New()
	h.Write([]byte(chainLabel))
	var p [sha256.Size]byte
	copy(p[:], prev)
	h.Write(p[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], index)
	binary.BigEndian.PutUint64(n[8:], uint64(at))
	h.Write(n[:])
	h.Write(data)
	return h.Sum(nil)
}

// KeyCount is the number of keys in the state, destroyed ones included.
func (f *FSM) KeyCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.Keys)
}

// ChainAt is the applied index and the chain hash there, read together.
func (f *FSM) ChainAt() (uint64, []byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Applied, f.state.Chain
}
