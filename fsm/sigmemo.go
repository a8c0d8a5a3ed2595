package fsm

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
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
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	h := sha256.New()
	var n [8]byte
	for _, b := range [][]byte{pub, sig, payload} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	sigMemo.Lock()
	_, seen := sigMemo.ok[k]
	sigMemo.Unlock()
	if seen {
		return true
	}
	if !ed25519.Verify(pub, SigningInput(payload), sig) {
		return false
	}
	sigMemo.Lock()
	if len(sigMemo.ok) >= sigMemoSize {
		clear(sigMemo.ok)
	}
	sigMemo.ok[k] = struct{}{}
	sigMemo.Unlock()
	return true
}
