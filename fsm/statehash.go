package fsm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"runtime"
	"sync"

	"github.com/google/btree"
)

// The state hash (Hash) is kept up to date as entries apply, so that a
// status call costs the same at a million keys as at none.
//
// It is SHA-256 over a label, the JSON encoding of the state without its
// two maps that grow with use (Keys, and Nonces, one per command applied
// in the last 2*MaxClockSkew), and a multiset hash of those maps' entries:
// LtHash16 (Bellare and Micciancio's additive hash, with the parameters
// of Lewi et al., "Securing Update Propagation with Homomorphic Hashing",
// 2019: 1024 lanes of 16 bits, about 200 bits of collision resistance).
// Each entry (its map, its name and its value's encoding) is hashed with
// SHA-256, that digest is expanded to 2048 bytes, and the expansions are
// added lane by lane modulo 2^16. Adding is commutative, so the sum does
// not depend on the maps' order, and an entry that changes is taken out
// (its old expansion subtracted) and put back in O(1).
//
// The expansion is the AES-256-CTR keystream under the digest as the key
// (counter blocks 0 to 127 from a zero IV). LtHash's proof needs the
// expansion to be a random function of the entry; the digest is one
// (SHA-256 as a random oracle), and AES keyed by it gives 128 blocks
// that, AES taken as an ideal cipher, are those of a random permutation
// chosen by a random key: distinct blocks, which a random function gives
// too except with probability about 128^2/2^129. Nobody chooses the AES
// key (it is a SHA-256 output), so related-key attacks have no grip. The
// version-2 hash expanded with SHAKE128 (an XOF made for this); AES-CTR
// gives the same 2048 bytes about eight times faster with the CPU's AES
// instructions (0.95 against 7.6 µs here), and a restore expands every
// key once: at 100,000 keys SHAKE128 was half its CPU time.
//
// Apply marks the names an entry changed (the key a key command wrote,
// the keys a resharing round completed, the nonces it spent or forgot);
// Hash folds the marked names into the sum, so its cost is that of the
// entries applied since the last call, plus the small rest of the state.
// A restore rebuilds the sum from the checkpoint's state as it decodes
// it, before the entries after it replay (which mark their names as
// Apply always does), on every CPU and off the FSM's lock: the first
// status after a restart costs what any other does.
//
// Checkpoints (checkpoint.go) certify this hash; a restoring replica
// computes it from the checkpoint's state it decodes (CheckpointHash) and
// keeps the sum it built.

// stateHashLabel starts the hash's input.
// v3: the expansion is AES-256-CTR (v2: SHAKE128).
const stateHashLabel = "keyquorum state hash v3\x00"

// Domain labels of a multiset entry's digest.
const (
	entryKey   = "keyquorum state key\x00"
	entryNonce = "keyquorum state nonce\x00"
)

const ltLanes = 1024

// ltHash is an LtHash16 sum, four 16-bit lanes to a word: lane 4j+k is
// bits 16k to 16k+15 of word j, so that the words written little-endian
// are the lanes written little-endian, and a word adds (or subtracts) four
// lanes at once, each modulo 2^16 (addLanes, subLanes).
type ltHash [ltLanes / 4]uint64

// laneHigh is the top bit of each 16-bit lane of a word.
const laneHigh = 0x8000_8000_8000_8000

// addLanes adds the four lanes of b to those of a, each modulo 2^16: the
// low 15 bits of each lane add without reaching the next lane, and the
// top bit is the sum modulo 2 of both top bits and the carry into it.
func addLanes(a, b uint64) uint64 {
	return ((a &^ laneHigh) + (b &^ laneHigh)) ^ ((a ^ b) & laneHigh)
}

// subLanes subtracts the four lanes of b from those of a, each modulo
// 2^16: with each lane's top bit of a set, no lane borrows from the next.
func subLanes(a, b uint64) uint64 {
	return ((a | laneHigh) - (b &^ laneHigh)) ^ ((a ^ b ^ laneHigh) & laneHigh)
}

// add adds the lanes of o to h.
func (h *ltHash) add(o *ltHash) {
	for i := range h {
		h[i] = addLanes(h[i], o[i])
	}
}

// update adds (or, with sub, subtracts) the expansion of digest d,
// expanded into buf (the caller's, which the cipher makes escape: one
// buffer per caller, not one allocated per entry).
func (h *ltHash) update(d *[32]byte, sub bool, buf *[2 * ltLanes]byte) {
	expand(d, buf)
	for i := range h {
		v := binary.LittleEndian.Uint64(buf[8*i:])
		if sub {
			h[i] = subLanes(h[i], v)
		} else {
			h[i] = addLanes(h[i], v)
		}
	}
}

// expand writes the expansion of digest d: the AES-256-CTR keystream
// under d from a zero IV (see the top of this file).
//
// A restore expands every key once, and each expansion allocates its
// cipher and its CTR (about 1 KiB: crypto/aes can neither rekey a cipher
// nor make one on the caller's stack). Encrypting the 128 counter blocks
// one at a time with the cipher alone would save the CTR's half and cost
// four times the CPU (3.9 against 1.0 µs here), so the garbage stays; the
// restore's collections are what cluster's raftFSM.Restore limits.
func expand(d *[32]byte, buf *[2 * ltLanes]byte) {
	block, err := aes.NewCipher(d[:])
	if err != nil {
		panic(err) // a 32-byte key is always a valid AES-256 key
	}
	clear(buf[:])
	cipher.NewCTR(block, zeroIV[:]).XORKeyStream(buf[:], buf[:])
}

// zeroIV is the expansion's IV: a package variable, as one on expand's
// stack would be moved to the heap for every expansion.
var zeroIV [aes.BlockSize]byte

// stateDigest is the multiset part of the state hash and what keeps it:
// the keys as the sum has them, and the keys and nonces changed since
// (each nonce with its value as the sum has it).
// Apply marks names under FSM.mu's write lock; Hash folds them under
// hashMu and the read lock, which no Apply holds at the same time.
type stateDigest struct {
	sum ltHash
	// keys are the keys as the sum has them, by name: a copy-on-write
	// clone of the state's index of key names as it was at the last fold
	// (O(1) to take; it shares every node Apply has not changed since). A
	// changed key's old entry is taken out of the sum by encoding the old
	// key again, which is as it was: keys are never changed in place
	// (editKey). A map of each key's digest, which this replaced, held 69
	// bytes a key.
	keys      *btree.BTreeG[*Key]
	dirtyKeys map[string]struct{}
	// dirtyNonces are the nonces changed since the last fold, each with
	// its value as the sum has it, from which its old entry is taken out
	// of the sum: so the digest keeps nothing for each nonce. A map of
	// every nonce's digest, which this replaced, held about 64 bytes a
	// nonce, and building it was a serial part of every restore (about
	// 1 µs a nonce; a cluster that writes 1,000 commands a second keeps
	// 600,000 nonces).
	dirtyNonces map[string]nonceWas
	stale       bool // after a restore: rebuild from the whole state
	scratch     *[2 * ltLanes]byte
	enc         keyEncoder // encodes the keys folded, as json.Marshal would
	encoded     []byte     // enc's buffer, reused
}

// reset makes the next fold rebuild the sum from the state.
func (d *stateDigest) reset() { *d = stateDigest{stale: true} }

func (d *stateDigest) markKey(name string) {
	if d.dirtyKeys == nil {
		d.dirtyKeys = map[string]struct{}{}
	}
	d.dirtyKeys[name] = struct{}{}
}

// nonceWas is a nonce's value as the sum has it: its expiry, if the sum
// has the nonce.
type nonceWas struct {
	exp int64
	had bool
}

// markNonce marks the nonce name, about to change from its value was (or
// from no value, when it had none), for the next fold. Only the first
// mark since the last fold is kept: it is the value the sum has.
func (d *stateDigest) markNonce(name string, was int64, had bool) {
	if d.dirtyNonces == nil {
		d.dirtyNonces = map[string]nonceWas{}
	}
	if _, ok := d.dirtyNonces[name]; !ok {
		d.dirtyNonces[name] = nonceWas{was, had}
	}
}

// fold brings the sum up to date with s.
func (d *stateDigest) fold(s *State) error {
	if d.stale || d.keys == nil {
		return d.rebuild(s)
	}
	if d.scratch == nil {
		d.scratch = new([2 * ltLanes]byte)
	}
	for name := range d.dirtyKeys {
		old, _ := d.keys.Get(&Key{Name: name})
		k := s.Keys[name]
		if old == k {
			continue // the same key: unchanged
		}
		for _, kk := range []*Key{old, k} {
			if kk == nil {
				continue
			}
			b, err := d.enc.appendKey(d.encoded[:0], kk)
			if err != nil {
				return err
			}
			d.encoded = b
			e := entryDigest(entryKey, name, b)
			d.sum.update(&e, kk == old, d.scratch)
		}
	}
	for name, was := range d.dirtyNonces {
		if was.had {
			e := nonceDigest(name, was.exp)
			d.sum.update(&e, true, d.scratch)
		}
		if exp, ok := s.Nonces[name]; ok {
			e := nonceDigest(name, exp)
			d.sum.update(&e, false, d.scratch)
		}
	}
	d.dirtyKeys, d.dirtyNonces = nil, nil
	d.keys = foldedKeys(s)
	return nil
}

// foldedKeys is the keys of s as a fold leaves them in stateDigest.keys:
// a clone of the state's index of names, or an index of its own for a
// state without one. Hash folds under the read lock: Clone writes only
// the index's copy-on-write context, which no reader uses (readers look
// the tree up and walk it; writes, which use the context, hold the write
// lock), and hashMu keeps two folds apart.
func foldedKeys(s *State) *btree.BTreeG[*Key] {
	if s.names != nil {
		return s.names.Clone()
	}
	t := newNameIndex()
	for _, k := range s.Keys {
		t.ReplaceOrInsert(k)
	}
	return t
}

// rebuild computes the sum from every key and nonce of s, which it only
// reads, on every CPU (sumOnEveryCPU; the sum is order-free).
func (d *stateDigest) rebuild(s *State) error {
	names := make([]string, 0, len(s.Keys))
	for name := range s.Keys {
		names = append(names, name)
	}
	keys, err := sumOnEveryCPU(len(names), func(lo, hi int, sum *ltHash, buf *[2 * ltLanes]byte) error {
		var enc keyEncoder
		var encoded []byte
		for _, name := range names[lo:hi] {
			b, err := enc.appendKey(encoded[:0], s.Keys[name])
			if err != nil {
				return err
			}
			encoded = b
			e := entryDigest(entryKey, name, b)
			sum.update(&e, false, buf)
		}
		return nil
	})
	if err != nil {
		return err
	}
	*d = stateDigest{keys: foldedKeys(s), sum: sumNonces(s.Nonces)}
	d.sum.add(&keys)
	return nil
}

// sumOnEveryCPU sums n entries on every CPU: each worker gives part a
// share [lo, hi) of them, a sum of its own to add them to and a buffer
// for their expansions, and the workers' sums are added. A worker per
// 1,024 entries at most; the parts' errors are joined.
func sumOnEveryCPU(n int, part func(lo, hi int, sum *ltHash, buf *[2 * ltLanes]byte) error) (ltHash, error) {
	workers := max(1, min(runtime.GOMAXPROCS(0), n/1024))
	sums := make([]ltHash, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = part(w*n/workers, (w+1)*n/workers, &sums[w], new([2 * ltLanes]byte))
		}()
	}
	wg.Wait()
	for w := 1; w < workers; w++ {
		sums[0].add(&sums[w])
	}
	return sums[0], errors.Join(errs...)
}

// entryDigest is the digest a multiset entry is added with.
func entryDigest(label, name string, value []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(name))))
	h.Write([]byte(name))
	h.Write(value)
	var e [32]byte
	h.Sum(e[:0])
	return e
}

// sumNonces is the sum of the entries of nonces, computed on every CPU.
func sumNonces(nonces map[string]int64) ltHash {
	all := make([]nonceEntry, 0, len(nonces))
	for name, exp := range nonces {
		all = append(all, nonceEntry{exp, name})
	}
	sum, _ := sumOnEveryCPU(len(all), func(lo, hi int, sum *ltHash, buf *[2 * ltLanes]byte) error {
		for _, n := range all[lo:hi] {
			e := nonceDigest(n.name, n.exp)
			sum.update(&e, false, buf)
		}
		return nil
	})
	return sum
}

// nonceDigest is the digest of the nonce name, remembered until exp.
func nonceDigest(name string, exp int64) [32]byte {
	return entryDigest(entryNonce, name, binary.BigEndian.AppendUint64(nil, uint64(exp)))
}

// hash is the state hash of s, whose Keys and Nonces d has folded.
func (d *stateDigest) hash(s *State) ([32]byte, error) {
	rest := *s
	rest.Keys, rest.Nonces = nil, nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	h.Write([]byte(stateHashLabel))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
	h.Write(b)
	var lanes [2 * ltLanes]byte
	for i, v := range d.sum {
		binary.LittleEndian.PutUint64(lanes[8*i:], v)
	}
	h.Write(lanes[:])
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}
