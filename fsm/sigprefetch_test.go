package fsm

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
)

// TestSigPrefetchRemembersOnlyWhatVerifies: a restore's verification
// ahead of its replay remembers the signatures that verify under their
// signer's key in the starting state, and nothing else: a bad signature,
// a signer the state does not have, a key the signer's ID does not name.
func TestSigPrefetchRemembersOnlyWhatVerifies(t *testing.T) {
	sigMemo.Lock()
	clear(sigMemo.ok)
	sigMemo.Unlock()
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	s := emptyState()
	s.Operators["op"] = &Operator{ID: "op", PublicKey: pub}
	s.Nodes["n1"] = &Node{ID: "n1", SignKey: otherPub}
	entry := func(signer string, payload string, key ed25519.PrivateKey, flip bool) (Entry, *Signed) {
		sg := &Signed{Signer: signer, Payload: []byte(payload), Signature: ed25519.Sign(key, SigningInput([]byte(payload)))}
		if flip {
			sg.Signature[0] ^= 1
		}
		b, _ := json.Marshal(sg)
		return Entry{Data: b}, sg
	}
	var entries []Entry
	var want, dontWant []*Signed
	for i := range 3*sigPrefetchChunk + 5 {
		p := string(rune('a'+i%26)) + string(rune(i))
		var e Entry
		var sg *Signed
		switch i % 5 {
		case 0:
			e, sg = entry("op", p, priv, false)
			want = append(want, sg)
		case 1:
			e, sg = entry("n1", p, otherPriv, false)
			want = append(want, sg)
		case 2:
			e, sg = entry("op", p, priv, true) // a bad signature
			dontWant = append(dontWant, sg)
		case 3:
			e, sg = entry("nobody", p, priv, false) // a signer the state does not have
			dontWant = append(dontWant, sg)
		case 4:
			e, sg = entry("op", p, otherPriv, false) // another key than the signer's
			dontWant = append(dontWant, sg)
		}
		entries = append(entries, e)
	}
	p := newSigPrefetch(s, entries, sigPrefetchChunk)
	for i := range entries {
		p.ahead(i)
	}
	for _, c := range p.chunks {
		<-c
	}
	for _, sg := range want {
		key := pub
		if sg.Signer == "n1" {
			key = otherPub
		}
		if !memoHas(key, sg) {
			t.Errorf("a good signature of %s was not remembered", sg.Signer)
		}
	}
	for _, sg := range dontWant {
		if memoHas(pub, sg) || memoHas(otherPub, sg) {
			t.Errorf("a signature of %s that Apply must refuse was remembered", sg.Signer)
		}
	}
}

// memoHas says whether verifyMemo remembers the triple.
func memoHas(pub ed25519.PublicKey, sg *Signed) bool {
	sigMemo.Lock()
	defer sigMemo.Unlock()
	_, ok := sigMemo.ok[memoKey(pub, sg.Payload, sg.Signature)]
	return ok
}
