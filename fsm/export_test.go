package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"slices"
)

// LoadStateForTest replaces f's state with a decoded state encoding,
// unverified, as tests of Apply need to start many replicas from one
// state. Only tests can call it: Restore is the only way in otherwise.
func LoadStateForTest(f *FSM, data []byte) error {
	s, err := decodeState(data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
	f.digest.reset()
	f.changes++
	f.ck = checkpoints{pin: f.ck.pin, last: s.Applied}
	return nil
}

// WriteStateForTest runs fn on f's state under the write lock, as a
// transition would.
func WriteStateForTest(f *FSM, fn func(*State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.state)
	f.state.reindex()
	f.digest.reset()
	f.changes++
}

// HashFromScratchForTest is the state hash of f's state computed from the
// whole state, not kept as entries apply: Hash must always equal it.
func HashFromScratchForTest(f *FSM) ([32]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	// One entry at a time, in one goroutine: not rebuild's way, so that
	// the two check each other.
	d := stateDigest{scratch: new([2 * ltLanes]byte)}
	for name, k := range f.state.Keys {
		b, err := json.Marshal(k)
		if err != nil {
			return [32]byte{}, err
		}
		e := entryDigest(entryKey, name, b)
		d.sum.update(&e, false, d.scratch)
	}
	for name, exp := range f.state.Nonces {
		e := entryDigest(entryNonce, name, binary.BigEndian.AppendUint64(nil, uint64(exp)))
		d.sum.update(&e, false, d.scratch)
	}
	return d.hash(f.state)
}

// TangIndexForTest reports whether the state's index of Tang keys names
// the keys a scan of every key finds.
func TangIndexForTest(f *FSM) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.tang != nil && slices.Equal(f.state.TangKeys(), scanTangKeys(f.state))
}

// SharingIndexForTest reports whether the state's index of keys with a
// sharing gives the sharings a scan of every key finds.
func SharingIndexForTest(f *FSM) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.shared != nil && reflect.DeepEqual(f.state.Sharings(), scanSharings(f.state))
}

// NameIndexForTest reports whether the state's index of key names holds
// every key's name and nothing else.
func NameIndexForTest(f *FSM) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.state
	if s.names == nil || s.names.Len() != len(s.Keys) {
		return false
	}
	var names []string
	same := true
	s.names.Ascend(func(k *Key) bool {
		names = append(names, k.Name)
		same = same && s.Keys[k.Name] == k
		return true
	})
	return same && slices.Equal(names, sortedKeys(s.Keys))
}

// NonceIndexForTest says whether f's index of nonces by expiry is its
// map of them, without rebuilding it (nonceIndex would), and was never
// found out of step.
func NonceIndexForTest(f *FSM) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.state
	if s.expiries == nil || s.expiries.Len() != len(s.Nonces) || s.nonceRepairs > 0 {
		return false
	}
	same := true
	s.expiries.Ascend(func(e nonceEntry) bool {
		exp, ok := s.Nonces[e.name]
		same = ok && exp == e.exp
		return same
	})
	return same
}

// DecodeSnapForTest is RestoreSnapshot's decoder of a snapshot.
func DecodeSnapForTest(data []byte) (*Snap, error) { return decodeSnap(data) }

// ReadSnapForTest is RestoreSnapshotFrom's decoder of a snapshot, read as
// a stream: the snapshot with its checkpoint's state encoded again (nil
// without one), and the state hash it computed from the snapshot's bytes.
func ReadSnapForTest(data []byte) (*Snap, []byte, [32]byte, error) {
	sn, err := readSnap(bytes.NewReader(data))
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	if !sn.read {
		return sn.Snap, nil, [32]byte{}, nil
	}
	b, err := json.Marshal(sn.st)
	return sn.Snap, b, sn.sum, err
}

// HoldKeysForTest clones the state's keys as a checkpoint does and
// returns a check, for after the next entry, that none of them changed in
// place: each still encodes as it did (editKey's rule).
func HoldKeysForTest(f *FSM) func() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	held := f.state.names.Clone()
	enc := map[string]string{}
	held.Ascend(func(k *Key) bool {
		b, _ := json.Marshal(k)
		enc[k.Name] = string(b)
		return true
	})
	return func() []string {
		var bad []string
		held.Ascend(func(k *Key) bool {
			if b, _ := json.Marshal(k); string(b) != enc[k.Name] {
				bad = append(bad, k.Name)
			}
			return true
		})
		return bad
	}
}

// ForgetSignaturesForTest empties the memo of verified signatures, as in
// a process that just started.
func ForgetSignaturesForTest() {
	sigMemo.Lock()
	clear(sigMemo.ok)
	sigMemo.Unlock()
}
