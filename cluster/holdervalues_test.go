package cluster

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// heldValueNames are the keys node tn holds its value s_i*R of.
func heldValueNames(tn *testNode) []string {
	_, h := tn.n.shares.currentCache()
	held, _ := h.held()
	var names []string
	for _, hv := range held {
		names = append(names, hv.name)
	}
	return names
}

// TestHeldValuesAreForgottenWhenTheKeyChanges: a holder keeps its value
// s_i*R of a key it answered for, and erases it as soon as it applies a
// revoke, a destroy or a compare-and-swap of that key, with no request;
// the key released after the swap is the new secret, from a new value.
func TestHeldValuesAreForgottenWhenTheKeyChanges(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	old := randomBytes(t, 32)
	for _, name := range []string{"hv/revoke", "hv/destroy", "hv/swap", "hv/kept"} {
		c.createSecret(name, old)
		for _, tn := range c.nodes {
			// Through each node, so every holder answers at least once.
			if got := c.mustRelease(tn, name); !bytes.Equal(got, old) {
				t.Fatalf("%s: released another secret", name)
			}
		}
	}
	holding := func(name string) []string {
		var out []string
		for _, tn := range c.nodes {
			if slices.Contains(heldValueNames(tn), name) {
				out = append(out, tn.id())
			}
		}
		return out
	}
	for _, name := range []string{"hv/revoke", "hv/destroy", "hv/swap"} {
		if h := holding(name); len(h) < 2 {
			t.Fatalf("%s: held by %v after releases through every node, want at least the threshold's 2", name, h)
		}
	}

	c.revoke(c.nodes[0], "hv/revoke")
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "hv/destroy"}); err != nil {
		t.Fatal(err)
	}
	replacement := randomBytes(t, 32)
	if _, err := c.cas(c.nodes[0], "hv/swap", old, replacement); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hv/revoke", "hv/destroy", "hv/swap"} {
		if !c.waitFor(10*time.Second, func() (bool, string) {
			h := holding(name)
			return len(h) == 0, name + " still held by " + fmtList(h)
		}) {
			t.Fatalf("%s: a holder kept its value after the change applied", name)
		}
	}
	if h := holding("hv/kept"); len(h) < 2 {
		t.Fatalf("hv/kept, unchanged, is held by %v only", h)
	}
	if got := c.mustRelease(c.nodes[1], "hv/swap"); !bytes.Equal(got, replacement) {
		t.Fatal("the swapped key released the old secret")
	}
}

func fmtList(s []string) string { return strings.Join(s, ", ") }

// TestHeldValuesAreErasedWithTheShare: the share ready for proofs and the
// values are erased with the epoch's share: a cache taken before the
// share is replaced makes nothing after, and the new epoch's starts empty.
func TestHeldValuesAreErasedWithTheShare(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := openShareStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	share := func() *shamir.Share {
		v := make([]byte, shamir.ScalarSize)
		rand.Read(v[:30]) // below the group order: a canonical scalar
		return &shamir.Share{Index: 1, Value: v}
	}
	if err := s.setCurrent(&epochShare{Epoch: 1, Share: share()}); err != nil {
		t.Fatal(err)
	}
	_, pub, _ := shamir.GenerateEncryptionKey(rand.Reader)
	key := &fsm.Key{ID: "k1", Name: "k", Version: 1, R: pub}
	h, err := s.holderCache(1)
	if err != nil || h == nil {
		t.Fatalf("the cache of epoch 1: %v", err)
	}
	if _, err := h.partial(rand.Reader, key, []byte("ctx")); err != nil {
		t.Fatal(err)
	}
	if held, _ := h.held(); len(held) != 1 {
		t.Fatalf("%d values held after one partial, want 1", len(held))
	}
	if h2, _ := s.holderCache(2); h2 != nil {
		t.Fatal("a cache for an epoch the node holds no share of")
	}
	if err := s.setCurrent(&epochShare{Epoch: 2, Share: share()}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.partial(rand.Reader, key, []byte("ctx")); err == nil {
		t.Fatal("the cache of a replaced share made a partial")
	}
	if h.values != nil {
		t.Fatal("the replaced share's values were not erased")
	}
	epoch, h2 := s.currentCache()
	if held, _ := h2.held(); epoch != 2 || len(held) != 0 {
		t.Fatalf("epoch %d with %d values after the share was replaced, want epoch 2 and none", epoch, len(held))
	}
	if err := s.eraseCurrent(); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.holderCache(2); h != nil {
		t.Fatal("a cache after the share was erased")
	}
}

// heldTransitNames are the transit key versions node tn holds its opened
// share of, as "name/version".
func heldTransitNames(tn *testNode) []string {
	_, h := tn.n.shares.currentCache()
	_, held := h.held()
	var names []string
	for _, ht := range held {
		names = append(names, fmt.Sprintf("%s/%d", ht.name, ht.version))
	}
	return names
}

// TestHeldTransitSharesAreForgottenWhenTheKeyChanges: a holder keeps its
// opened share of a transit key version it decrypted with, and erases it
// as soon as it applies a destroy of that key, with no request; an
// unchanged key's share is kept and still decrypts.
func TestHeldTransitSharesAreForgottenWhenTheKeyChanges(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	cts := map[string]string{}
	for _, name := range []string{"hs/destroy", "hs/kept"} {
		c.createTransit(name, shamir.CipherAES256GCM, false)
		cts[name] = c.encrypt(name, []byte("held"), nil)
		for _, tn := range c.nodes {
			res, err := c.open(c.decryptThrough(tn, name, []string{cts[name]}, make([][]byte, 1)), name)
			if err != nil || string(res[0].Plaintext) != "held" {
				t.Fatalf("%s through %s: %+v, %v", name, tn.id(), res, err)
			}
		}
	}
	holding := func(ref string) []string {
		var out []string
		for _, tn := range c.nodes {
			if slices.Contains(heldTransitNames(tn), ref) {
				out = append(out, tn.id())
			}
		}
		return out
	}
	for _, ref := range []string{"hs/destroy/1", "hs/kept/1"} {
		if h := holding(ref); len(h) < 2 {
			t.Fatalf("%s: held by %v after decrypts through every node, want at least the threshold's 2", ref, h)
		}
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "hs/destroy"}); err != nil {
		t.Fatal(err)
	}
	if !c.waitFor(10*time.Second, func() (bool, string) {
		h := holding("hs/destroy/1")
		return len(h) == 0, "hs/destroy/1 still held by " + fmtList(h)
	}) {
		t.Fatal("a holder kept its transit share after the destroy applied")
	}
	if h := holding("hs/kept/1"); len(h) < 2 {
		t.Fatalf("hs/kept/1, unchanged, is held by %v only", h)
	}
	res, err := c.open(c.decryptThrough(c.nodes[1], "hs/kept", []string{cts["hs/kept"]}, make([][]byte, 1)), "hs/kept")
	if err != nil || string(res[0].Plaintext) != "held" {
		t.Fatalf("the kept key after the destroy of another: %+v, %v", res, err)
	}
}
