package fsm

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"runtime"
	"sync"
)

// A release request is checked several times on one node: before the
// read index (VerifyRelease), at the coordinator's read and at the share
// holder's (AuthorizeRelease), and a holder that computes while it waits
// for its own read checks it twice. Each check still looks the signer's
// key up in the state it reads; only the Ed25519 verification of the same
// key, payload and signature is done once per process: verifyMemo
// remembers the triples that verified, by their SHA-256, and never a
// failure.

// sigMemoSize bounds verifyMemo: when full, it starts again empty.
const sigMemoSize = 4096

var sigMemo = struct {
	sync.Mutex
	ok map[[sha256.Size]byte]struct{}
}{ok: map[[sha256.Size]byte]struct{}{}}

// verifyMemo is ed25519.Verify(pub, SigningInput(payload), sig), which it
// skips for a triple that verified before.
func verifyMemo(pub ed25519.PublicKey, payload, sig []byte) bool {
	return verifySeen(pub, payload, sig, true)
}

// memoKey is the SHA-256 a triple is remembered by.
func memoKey(pub ed25519.PublicKey, payload, sig []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, b := range [][]byte{pub, sig, payload} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// verifySeen is verifyMemo, remembering a triple that verifies only with
// remember (Apply's entries are checked once each: they would push out
// the release requests' triples).
func verifySeen(pub ed25519.PublicKey, payload, sig []byte, remember bool) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	k := memoKey(pub, payload, sig)
	sigMemo.Lock()
	_, seen := sigMemo.ok[k]
	sigMemo.Unlock()
	if seen {
		return true
	}
	if !ed25519.Verify(pub, SigningInput(payload), sig) {
		return false
	}
	if !remember {
		return true
	}
	sigMemo.Lock()
	if len(sigMemo.ok) >= sigMemoSize {
		clear(sigMemo.ok)
	}
	sigMemo.ok[k] = struct{}{}
	sigMemo.Unlock()
	return true
}

// A restore replays the entries after its checkpoint through Apply, which
// checks each one's signature again: about 50 µs of CPU an entry, one
// after the other, for up to a snapshot threshold's worth of entries; and
// a restarted node then applies the entries its Raft log holds after the
// snapshot, as many again. sigPrefetch verifies them a chunk at a time on
// every CPU, ahead of Apply, against the signer keys of the state Apply
// starts from, and verifyMemo remembers those that verify: Apply still
// looks the signer's key up in the state it has reached and checks the
// signature, and finds the verification done when the key is the same. A
// signature that does not verify, or a signer the starting state does not
// have, is left to Apply.

// sigPrefetchChunk is how many entries a restore's replay verifies at a
// time, at most two chunks ahead of the replay (far fewer than
// sigMemoSize).
const sigPrefetchChunk = 256

// batchPrefetchChunk is the chunk of a batch of Raft's (up to
// MaxAppendEntries entries, 64 by default): small, so that Apply starts
// on the first entries while the next ones are verified.
const batchPrefetchChunk = 16

// sigPrefetch verifies entries' signatures ahead of their Apply.
type sigPrefetch struct {
	keys    map[string][][]byte // signer -> its keys in the starting state (an operator's, a node's)
	entries []Entry
	chunk   int
	chunks  []chan struct{} // closed when chunk k is verified
}

// newSigPrefetch gathers the signer keys of s, which it then no longer
// reads (Apply changes it).
func newSigPrefetch(s *State, entries []Entry, chunk int) *sigPrefetch {
	p := &sigPrefetch{keys: map[string][][]byte{}, entries: entries, chunk: chunk}
	for id, o := range s.Operators {
		p.keys[id] = append(p.keys[id], o.PublicKey)
	}
	for id, n := range s.Nodes {
		p.keys[id] = append(p.keys[id], n.SignKey)
	}
	return p
}

// ahead is called before entry i is applied: at the start of a chunk, it
// starts verifying the two chunks after it (and at 0 this one), each on
// one goroutine per CPU, and waits until this chunk is verified.
func (p *sigPrefetch) ahead(i int) {
	if i%p.chunk != 0 {
		return
	}
	k := i / p.chunk
	for len(p.chunks) <= k+2 && len(p.chunks)*p.chunk < len(p.entries) {
		lo := len(p.chunks) * p.chunk
		hi := min(lo+p.chunk, len(p.entries))
		done := make(chan struct{})
		p.chunks = append(p.chunks, done)
		workers := max(1, min(runtime.GOMAXPROCS(0), hi-lo))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := lo + w; j < hi; j += workers {
					p.verify(p.entries[j].Data)
				}
			}()
		}
		go func() { wg.Wait(); close(done) }()
	}
	if k < len(p.chunks) {
		<-p.chunks[k]
	}
}

// verify checks one entry's signature against its signer's keys,
// remembering it if it verifies.
func (p *sigPrefetch) verify(data []byte) {
	var sg Signed
	if json.Unmarshal(data, &sg) != nil || len(sg.Signature) == 0 || len(sg.Token) != 0 || sg.WebAuthn != nil {
		return
	}
	for _, key := range p.keys[sg.Signer] {
		if verifyMemo(key, sg.Payload, sg.Signature) {
			return
		}
	}
}

// Batch is a batch of committed entries about to be applied, in order,
// one Apply each, whose signatures are verified ahead of the Apply on
// every CPU (Raft hands a follower that catches up, or a node that
// restarted, up to MaxAppendEntries at once).
type Batch struct {
	pre *sigPrefetch // nil for a batch of one: nothing to verify beside it
}

// NewBatch starts verifying the signatures of entries, against the signer
// keys of the state now: call Ahead(i) before Apply of entries[i].
// Nothing else changes: each Apply checks its entry against the state the
// one before it left, as it would without the batch.
func (f *FSM) NewBatch(entries []Entry) *Batch {
	if len(entries) < 2 {
		return &Batch{}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &Batch{pre: newSigPrefetch(f.state, entries, batchPrefetchChunk)}
}

// Ahead waits until the signature of entry i, and of those before it in
// its chunk, has been checked.
func (b *Batch) Ahead(i int) {
	if b.pre != nil {
		b.pre.ahead(i)
	}
}
