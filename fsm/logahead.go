package fsm

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"
)

// A restarted node's Raft log holds the entries after its snapshot (up to
// the snapshot threshold of them, or more when a snapshot was not due),
// which Raft hands the state machine once the leader's first
// AppendEntries says they are committed, tens of ms after the restore:
// each signature then costs about 50 µs of CPU at its Apply, one entry
// after the other. LogAhead verifies them from the end of the restore, a
// chunk at a time on every CPU, while the node waits for the leader's
// commit index and while the entries before them apply, and sigAhead
// remembers each triple that verified: "this signature by this public key
// over these bytes is valid", never "this entry is allowed". Apply still
// looks the signer's key up in the state the entry before it left, checks
// the entry's time and nonce, and checks the signature, finding the
// verification done when the key, payload and signature are the same: an
// operator removed by an earlier entry of the log cannot sign a later one
// (TestLogAheadAppliesAsOneAtATime).

// logAheadMax bounds how many entries a LogAhead verifies: twice Raft's
// default snapshot threshold (8,192), about 1 MB of remembered triples at
// most. The entries after them are verified by their batches
// (sigPrefetch) as before.
const logAheadMax = 16 << 10

// sigAhead holds the triples LogAheads verified, by their memoKey. A
// LogAhead removes its own once the apply passed them, or when stopped.
var sigAhead = struct {
	sync.Mutex
	ok map[[sha256.Size]byte]struct{}
	n  atomic.Int64 // len(ok): verifySeen skips the lock when it is empty
}{ok: map[[sha256.Size]byte]struct{}{}}

// verifiedAhead reports whether a LogAhead verified the triple of k.
func verifiedAhead(k [sha256.Size]byte) bool {
	if sigAhead.n.Load() == 0 {
		return false
	}
	sigAhead.Lock()
	_, ok := sigAhead.ok[k]
	sigAhead.Unlock()
	return ok
}

// LogAhead verifies ahead of their Apply the signatures of the entries a
// restarted node's log holds after its snapshot (see above).
type LogAhead struct {
	from, last uint64 // it verifies the entries from+1 to last
	chunk      uint64

	mu       sync.Mutex
	cond     sync.Cond
	verified uint64                // every entry up to it is verified, or left to Apply
	stopped  bool                  // Stop was called: nothing more is remembered
	kept     [][][sha256.Size]byte // the triples remembered, per chunk from the first
	dropped  int                   // kept[:dropped] are removed from sigAhead
}

// VerifyLogAhead starts verifying the signatures of the entries after
// index from up to last (at most logAheadMax of them), which read gives
// (false for an entry that is not a command, or that it cannot read),
// against the signer keys of the state now; call Wait(i) before Apply of
// index i, and Stop once the entries are applied or no longer will be.
// Nothing else changes: each Apply checks its entry against the state the
// one before it left, as it would without it.
func (f *FSM) VerifyLogAhead(from, last uint64, read func(index uint64) ([]byte, bool)) *LogAhead {
	last = min(last, from+logAheadMax)
	f.mu.RLock()
	keys := signerKeys(f.state)
	f.mu.RUnlock()
	a := &LogAhead{from: from, last: last, chunk: sigPrefetchChunk, verified: from}
	a.cond.L = &a.mu
	go a.run(keys, read)
	return a
}

// Last is the last index a verifies.
func (a *LogAhead) Last() uint64 { return a.last }

// run verifies the entries a chunk at a time, in order, each chunk on one
// goroutine per CPU.
func (a *LogAhead) run(keys map[string][][]byte, read func(uint64) ([]byte, bool)) {
	for lo := a.from + 1; lo <= a.last; lo += a.chunk {
		hi := min(lo+a.chunk-1, a.last)
		var data [][]byte
		for i := lo; i <= hi; i++ {
			if d, ok := read(i); ok {
				data = append(data, d)
			}
		}
		workers := max(1, min(runtime.GOMAXPROCS(0), len(data)))
		found := make([][][sha256.Size]byte, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < len(data); j += workers {
					if k, ok := verifyBySigner(keys, data[j]); ok {
						found[w] = append(found[w], k)
					}
				}
			}()
		}
		wg.Wait()
		var chunk [][sha256.Size]byte
		for _, ks := range found {
			chunk = append(chunk, ks...)
		}
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			return
		}
		sigAhead.Lock()
		for _, k := range chunk {
			sigAhead.ok[k] = struct{}{}
		}
		sigAhead.n.Store(int64(len(sigAhead.ok)))
		sigAhead.Unlock()
		a.kept = append(a.kept, chunk)
		a.verified = hi
		a.cond.Broadcast()
		a.mu.Unlock()
	}
}

// Wait waits until the entry at index, if a verifies it, is verified, and
// forgets the triples of the chunks before it (the apply has passed them).
func (a *LogAhead) Wait(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for !a.stopped && index <= a.last && a.verified < index {
		a.cond.Wait()
	}
	passed := len(a.kept)
	if index <= a.from {
		passed = 0
	} else if index <= a.last {
		passed = min(passed, int((index-a.from-1)/a.chunk))
	}
	a.drop(passed)
}

// Stop forgets what a verified, and stops it verifying more.
func (a *LogAhead) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	a.drop(len(a.kept))
	a.cond.Broadcast()
}

// drop removes the triples of kept[:n] from sigAhead. A triple another
// LogAhead also verified is then verified again at its Apply.
func (a *LogAhead) drop(n int) {
	if n <= a.dropped {
		return
	}
	sigAhead.Lock()
	for _, chunk := range a.kept[a.dropped:n] {
		for _, k := range chunk {
			delete(sigAhead.ok, k)
		}
	}
	sigAhead.n.Store(int64(len(sigAhead.ok)))
	sigAhead.Unlock()
	for i := a.dropped; i < n; i++ {
		a.kept[i] = nil
	}
	a.dropped = n
}

// verifyBySigner returns the memoKey of an entry's signature if it
// verifies under one of its signer's keys.
func verifyBySigner(keys map[string][][]byte, data []byte) ([sha256.Size]byte, bool) {
	var sg Signed
	if json.Unmarshal(data, &sg) != nil || len(sg.Signature) == 0 || len(sg.Token) != 0 || sg.WebAuthn != nil {
		return [sha256.Size]byte{}, false
	}
	for _, key := range keys[sg.Signer] {
		if len(key) == ed25519.PublicKeySize && ed25519.Verify(key, SigningInput(sg.Payload), sg.Signature) {
			return memoKey(key, sg.Payload, sg.Signature), true
		}
	}
	return [sha256.Size]byte{}, false
}
