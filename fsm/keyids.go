package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/keyquorum/keyquorum/vocab"
)

// Opaque key IDs. Every key gets an ID when it is created that never
// changes and never names another key, beside its name (which a destroyed
// key passes on to the next key created under it). The ID is a hash of
// the create entry: the cluster, the entry's log index, the key's place
// in the entry (a create_keys entry creates many), the signer and the
// nonce the signer chose. The leader cannot pick it (it places the
// entry, but every entry has its own index, and the nonce is signed), nor
// can a signer make it collide with another key's (the index differs);
// create_key still refuses an ID in use, so no fault can make two keys
// share one. Keys created before IDs existed have none.
//
// An ID is written KeyIDPrefix and 32 hex digits; a key name cannot
// contain ':', so every place that takes a key name takes an ID too
// (State.ResolveKey).

// KeyIDPrefix starts every key ID.
const KeyIDPrefix = "id:"

// KeyID is the ID of the key created item-th (from 0) by the entry at
// index, signed by signer with nonce, in cluster clusterID.
func KeyID(clusterID string, index uint64, item int, signer string, nonce []byte) string {
	return string(appendKeyID(make([]byte, 0, keyIDLen), clusterID, index, item, signer, nonce))
}

// keyIDLen is the length of a key ID: KeyIDPrefix and 32 hex digits.
const keyIDLen = len(KeyIDPrefix) + 32

// appendKeyID appends KeyID(clusterID, index, item, signer, nonce) to
// dst.
func appendKeyID(dst []byte, clusterID string, index uint64, item int, signer string, nonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte(vocab.LabelKeyID + "\x00"))
	var buf [8]byte
	for _, part := range [][]byte{[]byte(clusterID), []byte(signer), nonce} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(part)))
		h.Write(buf[:])
		h.Write(part)
	}
	binary.BigEndian.PutUint64(buf[:], index)
	h.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], uint64(item))
	h.Write(buf[:])
	var sum [sha256.Size]byte
	return hex.AppendEncode(append(dst, KeyIDPrefix...), h.Sum(sum[:0])[:16])
}

// keyIDs are the IDs of the n keys an entry creates (KeyID of items 0 to
// n-1), substrings of a few strings: keys are never removed from the
// state, so the IDs of one create_keys entry's keys are kept as long as
// one another, and a string of keyIDsPerString IDs takes 35 bytes an ID
// where a string of its own takes 48 (docs/scale.md).
func keyIDs(clusterID string, index uint64, n int, signer string, nonce []byte) []string {
	ids := make([]string, 0, n)
	b := make([]byte, 0, min(n, keyIDsPerString)*keyIDLen)
	for item := range n {
		b = appendKeyID(b, clusterID, index, item, signer, nonce)
		if len(b) == cap(b) || item == n-1 {
			all := string(b)
			for i := 0; i < len(all); i += keyIDLen {
				ids = append(ids, all[i:i+keyIDLen])
			}
			b = b[:0]
		}
	}
	return ids
}

// keyIDsPerString is the most IDs keyIDs puts in one string: the most
// that fit in 32 KiB, the heap's largest size class; a larger object
// takes whole 8 KiB pages (1,000 IDs would take 40,960 bytes, 41 an ID).
const keyIDsPerString = 32 << 10 / keyIDLen

// IsKeyID reports whether ref is written as a key ID rather than a name.
func IsKeyID(ref string) bool { return strings.HasPrefix(ref, KeyIDPrefix) }

// ResolveKey finds the key a reference names: a key name, or a key ID
// (KeyIDPrefix...). An ID whose key was destroyed and whose name was
// then taken by a new key names nothing.
func (s *State) ResolveKey(ref string) *Key {
	if !IsKeyID(ref) {
		return s.Keys[ref]
	}
	name, ok := s.ids[ref]
	if !ok && s.ids == nil {
		for _, k := range s.Keys {
			if k.ID == ref {
				return k
			}
		}
		return nil
	}
	if k := s.Keys[name]; k != nil && k.ID == ref {
		return k
	}
	return nil
}

// KeyName is the name of the key ref names (ResolveKey), or ref itself
// when it names no key, so that a refusal quotes what the signer wrote.
func (s *State) KeyName(ref string) string {
	if k := s.ResolveKey(ref); k != nil {
		return k.Name
	}
	return ref
}

// indexID records key name's ID.
func (s *State) indexID(name string) { indexKeyID(s.ids, name, s.Keys[name]) }

// indexKeyID records in ids (nil: no index kept) the ID of key k, named
// name.
func indexKeyID(ids map[string]string, name string, k *Key) {
	if ids != nil && k != nil && k.ID != "" {
		ids[k.ID] = name
	}
}
