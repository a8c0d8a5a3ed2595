package tlv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// fakeNode is a node's applied state of assembled keys: ReleaseFor answers
// from it as a quorum would, and apply changes it as an applied command
// does, waking WatchApplied.
type fakeNode struct {
	cluster.LegacyService // not used by ClusterKeys

	mu       sync.Mutex
	keys     map[string]*fsm.Key
	material map[string][]byte // PKCS #8
	releases int
	applied  chan struct{}
	held     []cluster.HeldKey
}

func (f *fakeNode) LocalKey(name string) *fsm.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := f.keys[name]; k != nil {
		c := *k
		return &c
	}
	return nil
}

func (f *fakeNode) LocalTangKeys() []*fsm.Key { return nil }

func (f *fakeNode) LocalKeys() ([]*fsm.Key, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fsm.Key
	for _, k := range f.keys {
		c := *k
		out = append(out, &c)
	}
	return out, 1
}

func (f *fakeNode) ReleaseFor(ctx context.Context, gateway, name, client string) ([]byte, *fsm.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	k := *f.keys[name]
	return slices.Clone(f.material[name]), &k, nil
}

func (f *fakeNode) WatchApplied() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return 0, f.applied
}

func (f *fakeNode) ReportHeld(gateway string, held []cluster.HeldKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = held
}

// apply changes a key as an applied command would.
func (f *fakeNode) apply(name string, change func(*fsm.Key)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := *f.keys[name]
	change(&k)
	f.keys[name] = &k
	close(f.applied)
	f.applied = make(chan struct{})
}

func (f *fakeNode) reported() []cluster.HeldKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

func (f *fakeNode) releaseCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.releases
}

// fakeClock moves only when a test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !c.now.Before(t) {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, clockWaiter{t, ch})
	}
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waiters = slices.DeleteFunc(c.waiters, func(w clockWaiter) bool {
		if c.now.Before(w.at) {
			return false
		}
		w.ch <- c.now
		return true
	})
}

type assembledWorld struct {
	node  *fakeNode
	clock *fakeClock
	keys  *ClusterKeys
	ski   []byte
	lan   Client // at 10.1.2.3 with an allowed certificate
}

const testTTL = time.Minute

// newAssembledWorld has one ECDSA key "web" open to tlv for clientA, held
// for testTTL, with access changed by edit.
func newAssembledWorld(t *testing.T, edit func(*fsm.Access)) *assembledWorld {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ski, err := SKI(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	access := &fsm.Access{Gateways: []string{fsm.GatewayTLV}, ClientCerts: [][]byte{getPKI().clientA.Leaf.Raw}}
	if edit != nil {
		edit(access)
	}
	node := &fakeNode{
		keys: map[string]*fsm.Key{"web": {Name: "web", Type: fsm.KeyTypeECDSA, State: fsm.KeyActive, Version: 1,
			KeyDetail: &fsm.KeyDetail{Public: pub, AssembleTTL: testTTL, Access: access}}},
		material: map[string][]byte{"web": der},
		applied:  make(chan struct{}),
	}
	clock := &fakeClock{now: time.Now()}
	keys := NewClusterKeys(node)
	keys.now, keys.at = clock.Now, clock.At
	t.Cleanup(keys.Close)
	lan := Client{Cert: getPKI().clientA.Leaf, Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4000}}
	return &assembledWorld{node: node, clock: clock, keys: keys, ski: ski, lan: lan}
}

func (w *assembledWorld) lookup(c Client) (crypto.Signer, error) {
	return w.keys.Lookup(context.Background(), w.ski, nil, "", c)
}

// waitHeld waits until the held keys satisfy cond: a wait on a condition,
// bounded only so that a broken sweeper fails the test instead of hanging.
func (w *assembledWorld) waitHeld(t *testing.T, what string, cond func([]cluster.HeldKey) bool) {
	t.Helper()
	bound := time.After(30 * time.Second)
	for {
		held, changed := w.keys.Held()
		if cond(held) {
			return
		}
		select {
		case <-changed:
		case <-bound:
			t.Fatalf("%s: still holding %v", what, held)
		}
	}
}

func none(held []cluster.HeldKey) bool { return len(held) == 0 }

// holdWeb looks up the key, checks that it is held and reported, and
// returns the signer and the parsed key inside it.
func (w *assembledWorld) holdWeb(t *testing.T) (crypto.Signer, *ecdsa.PrivateKey) {
	t.Helper()
	s, err := w.lookup(w.lan)
	if err != nil {
		t.Fatal(err)
	}
	held, _ := w.keys.Held()
	if len(held) != 1 || held[0].Name != "web" || held[0].Version != 1 || !held[0].Until.Equal(w.clock.Now().Add(testTTL)) {
		t.Fatalf("held after a lookup: %+v", held)
	}
	if r := w.node.reported(); len(r) != 1 || r[0].Name != "web" || r[0].Gateway != fsm.GatewayTLV {
		t.Fatalf("reported to the node's status: %+v", r)
	}
	return s, s.(*heldKey).s.(*ecdsa.PrivateKey)
}

// checkDropped: nothing held or reported, the parsed key's scalar zeroed,
// and a request still holding the signer refused; the next lookup asks the
// quorum again.
func (w *assembledWorld) checkDropped(t *testing.T, s crypto.Signer, priv *ecdsa.PrivateKey, lookupAgain bool) {
	t.Helper()
	if r := w.node.reported(); len(r) != 0 {
		t.Errorf("still reported as held: %+v", r)
	}
	//lint:ignore SA1019 the test checks that the dropped key's scalar was zeroed
	if priv.D.Sign() != 0 {
		t.Error("the dropped key's private scalar was not zeroed")
	}
	digest := sha256.Sum256([]byte("late request"))
	var e *Error
	if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.As(err, &e) || e.Code != CodeKeyNotFound {
		t.Errorf("signing with a dropped key: %v, want key not found", err)
	}
	if lookupAgain {
		before := w.node.releaseCount()
		if _, err := w.lookup(w.lan); err != nil {
			t.Fatal(err)
		}
		if w.node.releaseCount() != before+1 {
			t.Error("the lookup after the drop did not ask the quorum again")
		}
	}
}

// TestHeldKeyIsDroppedAtItsTTLWithoutARequest: an assembled key is kept
// for its assemble_ttl and then dropped and wiped by the node itself, with
// no request arriving to notice it (hole 11).
func TestHeldKeyIsDroppedAtItsTTLWithoutARequest(t *testing.T) {
	w := newAssembledWorld(t, nil)
	s, priv := w.holdWeb(t)
	if _, err := w.lookup(w.lan); err != nil || w.node.releaseCount() != 1 {
		t.Fatalf("a second lookup within the TTL: %v, %d releases", err, w.node.releaseCount())
	}
	w.clock.Advance(testTTL - time.Second)
	if held, _ := w.keys.Held(); len(held) != 1 {
		t.Fatalf("dropped before its TTL: %+v", held)
	}
	w.clock.Advance(time.Second)
	w.waitHeld(t, "after the TTL", none)
	w.checkDropped(t, s, priv, true)
}

// TestHeldKeyIsDroppedWhenAChangeApplies: a revoke, a destroy, a new
// version or an access change drops the held key as soon as the node
// applies it, with no request and long before its TTL.
func TestHeldKeyIsDroppedWhenAChangeApplies(t *testing.T) {
	for name, change := range map[string]func(*fsm.Key){
		"revoke":      func(k *fsm.Key) { k.State = fsm.KeyRevoked },
		"destroy":     func(k *fsm.Key) { k.State = fsm.KeyDestroyed },
		"new version": func(k *fsm.Key) { k.Version++ },
		"closed to tlv": func(k *fsm.Key) {
			d := k.Detail()
			d.Access = &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: d.Access.ClientCerts}
			k.SetDetail(d)
		},
		"access changed": func(k *fsm.Key) {
			d := k.Detail()
			a := *d.Access
			a.Networks = []string{"10.0.0.0/8"}
			d.Access = &a
			k.SetDetail(d)
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := newAssembledWorld(t, nil)
			s, priv := w.holdWeb(t)
			w.node.apply("web", change)
			w.waitHeld(t, name, none)
			w.checkDropped(t, s, priv, name == "new version" || name == "access changed")
		})
	}
}

// TestTLVAppliesNetworksAndRate: the Keyless SSL gateway applies the key's
// networks and rate like the other legacy gateways (before, it applied
// only the certificates): a client outside the networks, or over the rate,
// is refused before any quorum is asked.
func TestTLVAppliesNetworksAndRate(t *testing.T) {
	w := newAssembledWorld(t, func(a *fsm.Access) {
		a.Networks = []string{"10.0.0.0/8"}
		a.RatePerMinute = 2
	})
	outside := Client{Cert: getPKI().clientA.Leaf, Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}}
	if _, err := w.lookup(outside); !errors.Is(err, ErrDenied) {
		t.Fatalf("a client outside the key's networks: %v, want denied", err)
	}
	if w.node.releaseCount() != 0 {
		t.Fatal("a refused client made the node ask the quorum")
	}
	for i := 1; i <= 2; i++ {
		if _, err := w.lookup(w.lan); err != nil {
			t.Fatalf("use %d of 2 a minute: %v", i, err)
		}
	}
	if _, err := w.lookup(w.lan); !errors.Is(err, ErrDenied) {
		t.Fatalf("a third use within the minute: %v, want denied", err)
	}
	other := Client{Cert: getPKI().clientB.Leaf, Addr: w.lan.Addr}
	if _, err := w.lookup(other); !errors.Is(err, ErrDenied) {
		t.Fatalf("a certificate the key does not list: %v, want denied", err)
	}
}
