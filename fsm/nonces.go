package fsm

import (
	"slices"
	"strings"

	"github.com/google/btree"
)

// The nonces remembered (State.Nonces, one per signed command for
// 2*MaxClockSkew) are also kept in an index ordered by expiry, then name:
// a copy-on-write btree, so that a checkpoint keeps a clone of it (O(1))
// instead of an encoding of every nonce, as it keeps the keys' (frozen),
// and the snapshot writer encodes them, off the FSM's lock. Expiry order,
// not name order, because a nonce spent now expires after every one
// remembered but a few (its command's time is within MaxClockSkew of the
// others'): the nonces spent between two checkpoints go into the last
// nodes, so after a clone Apply copies a few nodes again, not one for
// each nonce; and a prune takes the expired ones from the front instead
// of going through them all. The snapshot writer sorts them by name.
//
// Every change to State.Nonces goes through spendNonce or pruneNonces,
// which keep the index in step. A state whose index is missing or does
// not hold as many nonces as the map (decoded, or changed by a test)
// has it rebuilt before it is used (nonceIndex).

// nonceEntry is a nonce in the index: its expiry and its name, the
// string that is its key in State.Nonces.
type nonceEntry struct {
	exp  int64
	name string
}

func newNonceIndex() *btree.BTreeG[nonceEntry] {
	return btree.NewG(32, func(a, b nonceEntry) bool {
		return a.exp < b.exp || a.exp == b.exp && a.name < b.name
	})
}

// nonceIndex is the index of s.Nonces, rebuilt first if it is not in
// step with the map.
func (s *State) nonceIndex() *btree.BTreeG[nonceEntry] {
	if s.expiries == nil || s.expiries.Len() != len(s.Nonces) {
		if s.expiries != nil {
			s.nonceRepairs++
		}
		s.reindexNonces()
	}
	return s.expiries
}

// reindexNonces builds the index from s.Nonces.
func (s *State) reindexNonces() {
	s.expiries = newNonceIndex()
	for name, exp := range s.Nonces {
		s.expiries.ReplaceOrInsert(nonceEntry{exp, name})
	}
}

// spendNonce remembers the nonce nk until exp, and gives its expiry
// before, if it had one (for the state hash: stateDigest.markNonce).
func (s *State) spendNonce(nk string, exp int64) (was int64, had bool) {
	idx := s.nonceIndex()
	if was, had = s.Nonces[nk]; had {
		idx.Delete(nonceEntry{was, nk})
	}
	s.Nonces[nk] = exp
	idx.ReplaceOrInsert(nonceEntry{exp, nk})
	return was, had
}

// pruneNonces forgets the nonces that expired before now, calling forget
// with each and its expiry.
func (s *State) pruneNonces(now int64, forget func(nk string, exp int64)) {
	idx := s.nonceIndex()
	for {
		e, ok := idx.Min()
		if !ok || e.exp >= now {
			return
		}
		idx.DeleteMin()
		delete(s.Nonces, e.name)
		forget(e.name, e.exp)
	}
}

// sortedNonces are the nonces in idx sorted by name, as json.Marshal
// encodes a map.
func sortedNonces(idx *btree.BTreeG[nonceEntry]) []nonceEntry {
	all := make([]nonceEntry, 0, idx.Len())
	idx.Ascend(func(e nonceEntry) bool {
		all = append(all, e)
		return true
	})
	slices.SortFunc(all, func(a, b nonceEntry) int { return strings.Compare(a.name, b.name) })
	return all
}
