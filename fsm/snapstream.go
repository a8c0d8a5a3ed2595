package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
)

// Reading a snapshot as a stream.
//
// A snapshot at 100,000 keys is about 40 MiB, most of it the certified
// checkpoint's state, base64-encoded inside the snapshot's JSON. A restore
// used to read the whole file, base64-decode the checkpoint into a second
// copy, decode that into the state, and then encode every key again to
// hash it. readSnap instead reads the snapshot once, front to back: the
// checkpoint's base64 is decoded as it is read, its state's small fields
// are gathered and decoded at the end, and its keys are decoded one at a
// time as they come, on every CPU, each hashed from its bytes as they are
// in the snapshot (decodeStateFrom). No whole copy of the file or of the
// checkpoint is held.
//
// Hashing a key's bytes as they are in the snapshot, instead of their
// canonical encoding (json.Marshal of the decoded key, which Apply hashes),
// keeps the state hash what it is for every snapshot a replica would
// accept: a certified hash is a sum over the canonical encodings of a
// state's keys, one per name, made by honest holders; a snapshot that
// gives the same sum from other bytes, or from other names, is a collision
// in LtHash (statehash.go). That needs each name once: LtHash sums modulo
// 2^16, so 2^16 copies of an entry add nothing, and a decoder that kept the
// last of duplicated names would keep a key the sum never saw. So a name
// given twice is refused, and so is a second field that a decode of the
// state would take for its keys (json's names match case-insensitively).

// snapReader is how much of a snapshot is read ahead.
const snapReader = 64 << 10

// decodedSnap is a decoded snapshot: the Snap, and when its checkpoint was
// decoded as it was read, the checkpoint's state and its state hash.
type decodedSnap struct {
	*Snap
	st   *State
	d    *stateDigest
	sum  [32]byte
	read bool // st, d and sum are set; Snap.Checkpoint is nil
}

// readSnap decodes a snapshot from r, reading it once. A snapshot that
// starts as WriteTo writes one with a checkpoint, whose checkpoint is
// plain base64, is decoded as a stream; any other is read whole and
// decoded as encoding/json decodes it (decodeSnap).
func readSnap(r io.Reader) (*decodedSnap, error) {
	br := bufio.NewReaderSize(r, snapReader)
	if head, err := br.Peek(len(snapPrefix)); err != nil || !bytes.Equal(head, snapPrefix) {
		data, err := io.ReadAll(br)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		sn, err := decodeSnap(data)
		if err != nil {
			return nil, err
		}
		return &decodedSnap{Snap: sn}, nil
	}
	br.Discard(len(snapPrefix))
	q := &quotedBase64{r: br}
	st, d, sum, err := hashCheckpointFrom(&jsonScan{r: q})
	if err == nil && !q.closed {
		err = errors.New("data after the state")
	}
	if err != nil {
		if q.bad {
			return nil, errors.New("snapshot: its checkpoint is not plain base64")
		}
		return nil, fmt.Errorf("snapshot: its checkpoint: %w", err)
	}
	var sn Snap
	dec := json.NewDecoder(io.MultiReader(strings.NewReader(fmt.Sprintf(`{"version":%d`, snapshotVersion)), br))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sn); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if dec.More() {
		return nil, errors.New("snapshot: data after the snapshot")
	}
	if sn.Checkpoint != nil {
		return nil, errors.New("snapshot: two checkpoints")
	}
	return &decodedSnap{Snap: &sn, st: st, d: d, sum: sum, read: true}, nil
}

// CheckpointHash decodes a checkpoint's state encoding and computes its
// state hash, as Hash does and as checkpoint certificates sign it.
func CheckpointHash(checkpoint []byte) (*State, [32]byte, error) {
	st, _, sum, err := hashCheckpointFrom(&jsonScan{buf: checkpoint, eof: true})
	return st, sum, err
}

// hashCheckpointFrom decodes a checkpoint's state from sc and builds its
// state hash's sum (decodeStateFrom), and gives the hash.
func hashCheckpointFrom(sc *jsonScan) (*State, *stateDigest, [32]byte, error) {
	st, d, err := decodeStateFrom(sc)
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	sum, err := d.hash(st)
	return st, d, sum, err
}

// decodeState decodes a state's encoding, with every map usable and the
// indexes built (decodeStateFrom).
func decodeState(data []byte) (*State, error) {
	s, _, err := decodeStateFrom(&jsonScan{buf: data, eof: true})
	return s, err
}

// keyBatch is a run of a state's keys as they come in its encoding,
// decoded and hashed by a worker.
type keyBatch struct {
	names []string
	raws  [][]byte // in arena
	arena *[]byte  // the keys' encodings, copied from the scan's buffer
	keys  []*Key
	err   error
	done  chan struct{}
}

// keyBatchSize is how many keys a worker takes at a time.
const keyBatchSize = 256

// arenaSize is a new keyBatch arena's capacity: a batch of keys as a
// snapshot has them (about 350 bytes each) without growing.
const arenaSize = keyBatchSize * 512

// arenas are keyBatch arenas, reused.
var arenas = sync.Pool{New: func() any { return new([]byte) }}

// decodeStateFrom decodes a state's encoding from sc, as json.Unmarshal
// would (every map usable, the indexes built), except that it refuses a
// key name given twice and a second field that would be taken for the
// keys, and builds the state hash's sum as it goes: each key is decoded
// (decodeKey) and hashed on a worker (one per CPU) from its bytes as
// they are in the encoding (see the top of this file), and the nonces
// once the rest is decoded. The keys' map and name index are built as
// the workers' batches come back, in the order of the encoding.
func decodeStateFrom(sc *jsonScan) (*State, *stateDigest, error) {
	if err := sc.expect('{'); err != nil {
		return nil, nil, errors.New("a state is a JSON object")
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	work := make(chan *keyBatch, workers)
	sums := make([]ltHash, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := new([2 * ltLanes]byte)
			for b := range work {
				b.keys = make([]*Key, len(b.names))
				for i, raw := range b.raws {
					if string(raw) == "null" {
						b.err = fmt.Errorf("the key %q is null", b.names[i])
						break
					}
					k := new(Key)
					if b.err = decodeKey(raw, k, b.names[i]); b.err != nil {
						break
					}
					internKey(k)
					b.keys[i] = k
					e := entryDigest(entryKey, b.names[i], raw)
					sums[w].update(&e, false, buf)
				}
				b.raws = nil
				arenas.Put(b.arena)
				b.arena = nil
				close(b.done)
			}
		}()
	}
	stop := func() { close(work); wg.Wait() }

	// The batches as they came back (their keys, names and digests), and
	// the name index, built as they come; the maps are made at the end, at
	// their size (a map grown a key at a time holds more).
	var merged []*keyBatch
	nkeys := 0
	names := newNameIndex()
	var queue []*keyBatch
	merge := func(b *keyBatch) error {
		<-b.done
		if b.err != nil {
			return b.err
		}
		merged = append(merged, b)
		nkeys += len(b.keys)
		// The encoding gives the keys in name order (json.Marshal's, and
		// WriteTo's): the index is built in the order they came.
		for _, k := range b.keys {
			names.ReplaceOrInsert(k)
		}
		return nil
	}
	readKeys := func() error {
		c, ok := sc.skipSpace()
		if !ok {
			return sc.errEnd()
		}
		if c != '{' {
			v, err := sc.value()
			if err != nil {
				return err
			}
			if string(v) == "null" {
				return nil
			}
			return errors.New("the keys are not a JSON object")
		}
		sc.pos++
		newBatch := func() *keyBatch {
			a := arenas.Get().(*[]byte)
			if cap(*a) == 0 {
				*a = make([]byte, 0, arenaSize)
			}
			*a = (*a)[:0]
			return &keyBatch{done: make(chan struct{}), arena: a,
				names: make([]string, 0, keyBatchSize), raws: make([][]byte, 0, keyBatchSize)}
		}
		b := newBatch()
		send := func() error {
			// The arena is complete: its encodings do not move again.
			for i, off := 0, 0; i < len(b.raws); i++ {
				n := len(b.raws[i])
				b.raws[i] = (*b.arena)[off : off+n : off+n]
				off += n
			}
			work <- b
			queue = append(queue, b)
			b = newBatch()
			for len(queue) > 2*workers {
				if err := merge(queue[0]); err != nil {
					return err
				}
				queue = queue[1:]
			}
			return nil
		}
		if c, ok := sc.skipSpace(); ok && c == '}' {
			sc.pos++
			return nil
		}
		for {
			name, err := sc.name()
			if err != nil {
				return err
			}
			raw, err := sc.value()
			if err != nil {
				return err
			}
			// The scan's buffer is reused: the key's bytes are copied, and
			// their slice of the arena taken when it is sent.
			*b.arena = append(*b.arena, raw...)
			b.names, b.raws = append(b.names, name), append(b.raws, raw[:len(raw):len(raw)])
			if len(b.names) == keyBatchSize {
				if err := send(); err != nil {
					return err
				}
			}
			c, ok := sc.skipSpace()
			if !ok {
				return sc.errEnd()
			}
			sc.pos++
			if c == '}' {
				break
			}
			if c != ',' {
				return errors.New("invalid JSON in the keys")
			}
		}
		if len(b.names) > 0 {
			if err := send(); err != nil {
				return err
			}
		} else {
			arenas.Put(b.arena)
		}
		for _, b := range queue {
			if err := merge(b); err != nil {
				return err
			}
		}
		queue = nil
		return nil
	}
	readFields := func() ([]byte, error) {
		rest := []byte{'{'}
		sawKeys := false
		if c, ok := sc.skipSpace(); ok && c == '}' {
			sc.pos++
			return append(rest, '}'), nil
		}
		for {
			field, err := sc.name()
			if err != nil {
				return nil, err
			}
			if strings.EqualFold(field, "keys") {
				if sawKeys {
					return nil, errors.New("the keys are given twice")
				}
				sawKeys = true
				if err := readKeys(); err != nil {
					return nil, err
				}
			} else {
				v, err := sc.value()
				if err != nil {
					return nil, err
				}
				if len(rest) > 1 {
					rest = append(rest, ',')
				}
				f, _ := json.Marshal(field)
				rest = append(append(append(rest, f...), ':'), v...)
			}
			c, ok := sc.skipSpace()
			if !ok {
				return nil, sc.errEnd()
			}
			sc.pos++
			if c == '}' {
				return append(rest, '}'), nil
			}
			if c != ',' {
				return nil, errors.New("invalid JSON in a state")
			}
		}
	}
	rest, err := readFields()
	stop()
	if err != nil {
		return nil, nil, err
	}
	if err := sc.end(); err != nil {
		return nil, nil, err
	}
	s := emptyState()
	s.Keys = nil
	if err := json.Unmarshal(rest, s); err != nil {
		return nil, nil, err
	}
	if s.Keys != nil {
		return nil, nil, errors.New("the keys are given twice")
	}
	fixMaps(s)
	// The nonces' part of the state hash (on every CPU), and the ID index
	// and the nonces' index, on other goroutines, while this one builds
	// the keys' map (refusing a name given twice) and the other indexes.
	// None of them writes what another reads.
	nonceSum := make(chan ltHash, 1)
	go func() { nonceSum <- sumNonces(s.Nonces) }()
	ids := make(map[string]string, nkeys)
	idsDone := make(chan struct{})
	go func() {
		defer close(idsDone)
		for _, b := range merged {
			for i, name := range b.names {
				indexKeyID(ids, name, b.keys[i])
			}
		}
		s.reindexNonces()
	}()
	keys := make(map[string]*Key, nkeys)
	for _, b := range merged {
		for i, name := range b.names {
			if _, dup := keys[name]; dup {
				<-idsDone
				<-nonceSum
				return nil, nil, fmt.Errorf("the key %q is given twice", name)
			}
			keys[name] = b.keys[i]
		}
	}
	s.Keys = keys
	s.names = names
	<-idsDone
	s.reindexRestWithIDs(ids)
	merged = nil

	d := &stateDigest{keys: s.names.Clone(), sum: <-nonceSum}
	for i := range sums {
		d.sum.add(&sums[i])
	}
	return s, d, nil
}

// internKey makes a decoded key's type and state the package's constants,
// which every key shares, instead of a copy of each a key (32 bytes a key
// of the heap).
func internKey(k *Key) {
	for _, c := range [...]string{KeyActive, KeyRevoked, KeyDestroyed} {
		if k.State == c {
			k.State = c
		}
	}
	for _, c := range keyTypes {
		if k.Type == c {
			k.Type = c
		}
	}
}
