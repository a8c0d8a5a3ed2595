package token

import (
	"container/list"
	"crypto/ed25519"
	"crypto/sha256"
	"sync"

	"github.com/biscuit-auth/biscuit-go/v2"
)

// A node verifies the same token several times for one request (a
// coordinator before its read, as it speculates, and after the read; then
// as a share holder), and a caller often sends one token many times. Most
// of a verification is the same each time: decoding the token within the
// limits and checking its Ed25519 signature chain from the root key. The
// memo keeps what that part found, for a token that passed it under a
// root key: the parsed token, its revocation ids and its bounds on uses.
// What depends on the request, the time and the state — the request
// binding, the revocations, the Datalog checks and policies — Verify
// evaluates on every call, memo or not. A token that fails to decode or
// whose signatures do not hold under the root key is never memoized.

// The memo's bounds: tokens, and the bytes of their serialized form. A
// parsed token takes about six times its bytes (7 KiB for a typical token
// of 1 KiB), so the memo takes at most some 30 MiB, however large the
// tokens that fill it; anyone holding a token can make many by restricting
// it.
const (
	memoEntries = 4096
	memoBytes   = 4 << 20
)

// verified is the process's memo.
var verified = newMemo(memoEntries, memoBytes)

// checked is what decoding and the signature chain found of a token under
// one root key. b is shared by every Verify of the token and only read,
// except by biscuit.GetBlockID, which appends to a copy of the token's
// symbol table that may share its array: bindMu serialises it.
type checked struct {
	b         *biscuit.Biscuit
	sealed    bool
	ids       []string
	bounds    []UseBound
	boundsErr error // UseBounds' refusal, which Verify returns after the Datalog's
	bindMu    sync.Mutex
}

// blockOf is b.GetBlockID, one call at a time.
func (c *checked) blockOf(f biscuit.Fact) (int, error) {
	c.bindMu.Lock()
	defer c.bindMu.Unlock()
	return c.b.GetBlockID(f)
}

// memoKey names a token under a root key: the SHA-256 of the root's 32
// bytes and the token.
type memoKey [sha256.Size]byte

func keyOf(token []byte, root ed25519.PublicKey) memoKey {
	h := sha256.New()
	h.Write(root)
	h.Write(token)
	var k memoKey
	h.Sum(k[:0])
	return k
}

// memo is a least-recently-used map of checked tokens, safe for
// concurrent use.
type memo struct {
	mu       sync.Mutex
	max      int // entries
	maxBytes int // the tokens' bytes
	bytes    int
	order    *list.List // of *memoEntry, most recently used first
	byKey    map[memoKey]*list.Element
}

type memoEntry struct {
	key  memoKey
	size int // the token's bytes
	c    *checked
}

func newMemo(max, maxBytes int) *memo {
	return &memo{max: max, maxBytes: maxBytes, order: list.New(), byKey: make(map[memoKey]*list.Element)}
}

func (m *memo) get(k memoKey) *checked {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byKey[k]
	if !ok {
		return nil
	}
	m.order.MoveToFront(e)
	return e.Value.(*memoEntry).c
}

// put memoizes c, the check of a token of size bytes.
func (m *memo) put(k memoKey, size int, c *checked) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.byKey[k]; ok {
		m.order.MoveToFront(e)
		return
	}
	m.byKey[k] = m.order.PushFront(&memoEntry{key: k, size: size, c: c})
	m.bytes += size
	for m.order.Len() > m.max || m.bytes > m.maxBytes {
		last := m.order.Back()
		m.order.Remove(last)
		e := last.Value.(*memoEntry)
		delete(m.byKey, e.key)
		m.bytes -= e.size
	}
}

func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
