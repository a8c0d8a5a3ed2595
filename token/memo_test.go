package token

import (
	"crypto/ed25519"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/biscuit-auth/biscuit-go/v2/pb"
	"google.golang.org/protobuf/proto"
)

// A token verified once is memoized (memo.go), and what it no longer
// allows is still refused: the memo never stands in for the request
// binding, the revocations, the time, the caller or the capability.
func TestMemoHitStillAuthorizes(t *testing.T) {
	f := newFixture(t, Scope{Prefixes: []string{"app/"}, Flags: Flags})
	r, err := Restrict(f.tok, Restriction{Flags: []string{FlagDecrypt}, Keys: []string{"app/a"},
		Network: netip.MustParsePrefix("10.0.0.0/8"), MaxUses: 3})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"type":"release","key":"app/a"}`)
	bound, err := Bind(r, payload)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "app/a", Payload: payload, Now: t0, Caller: netip.MustParseAddr("10.1.2.3")}
	first, err := Verify(bound, f.pub, req, noRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if verified.get(keyOf(bound, f.pub)) == nil {
		t.Fatal("a verified token was not memoized")
	}
	other := newFixture(t, Scope{Prefixes: []string{""}, Flags: Flags})
	change := func(edit func(*Request)) Request {
		q := req
		edit(&q)
		return q
	}
	for _, c := range []struct {
		what    string
		root    ed25519.PublicKey
		req     Request
		revoked func(string) bool
		want    error
	}{
		{"expired", f.pub, change(func(q *Request) { q.Now = t0.Add(2 * time.Hour) }), noRevocations, ErrExpired},
		{"revoked", f.pub, req, func(id string) bool { return id == first.RevocationIDs[1] }, ErrRevoked},
		{"another key", f.pub, change(func(q *Request) { q.Key = "app/b" }), noRevocations, ErrDenied},
		{"another flag", f.pub, change(func(q *Request) { q.Flag = FlagSign }), noRevocations, ErrDenied},
		{"another operator", f.pub, change(func(q *Request) { q.Operator = "op2" }), noRevocations, ErrDenied},
		{"another network", f.pub, change(func(q *Request) { q.Caller = netip.MustParseAddr("192.0.2.1") }), noRevocations, ErrDenied},
		{"another request", f.pub, change(func(q *Request) { q.Payload = []byte(`{"type":"release","key":"app/b"}`) }), noRevocations, ErrUnbound},
		{"another root", other.pub, req, noRevocations, ErrForged},
		{"no root", nil, req, noRevocations, ErrForged},
	} {
		if _, err := Verify(bound, c.root, c.req, c.revoked); !errors.Is(err, c.want) {
			t.Errorf("%s after a memoized success: %v, want %v", c.what, err, c.want)
		}
	}
	again, err := Verify(bound, f.pub, req, noRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.RevocationIDs, first.RevocationIDs) || !slices.Equal(again.UseBounds, first.UseBounds) || len(again.UseBounds) != 1 {
		t.Fatalf("from the memo: %+v, first: %+v", again, first)
	}
}

// Only a token whose signature chain holds under the root key is
// memoized: a forged, tampered or malformed one is checked in full every
// time, and a success under one root is no entry for another.
func TestMemoHoldsOnlyVerifiedTokens(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	other := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	payload := []byte("p")
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}
	bound, err := Bind(f.tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	var c pb.Biscuit
	if err := proto.Unmarshal(bound, &c); err != nil {
		t.Fatal(err)
	}
	c.Authority.Signature[0] ^= 1
	tampered, err := proto.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what  string
		token []byte
		root  ed25519.PublicKey
	}{
		{"another root's key", bound, other.pub},
		{"a tampered signature", tampered, f.pub},
		{"malformed", bound[:len(bound)/2], f.pub},
	} {
		for range 2 {
			if _, err := Verify(c.token, c.root, req, noRevocations); err == nil {
				t.Fatalf("%s: accepted", c.what)
			}
			if verified.get(keyOf(c.token, c.root)) != nil {
				t.Fatalf("%s: memoized", c.what)
			}
		}
	}
	if _, err := Verify(bound, f.pub, req, noRevocations); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bound, other.pub, req, noRevocations); !errors.Is(err, ErrForged) {
		t.Fatalf("under another root after a success: %v", err)
	}
	if verified.get(keyOf(bound, other.pub)) != nil {
		t.Fatal("a success under one root memoized the token under another")
	}
}

func TestMemoEvictsLeastRecentlyUsed(t *testing.T) {
	m := newMemo(2, 100)
	k := func(b byte) memoKey { return memoKey{b} }
	a, b, c, d := &checked{}, &checked{}, &checked{}, &checked{}
	m.put(k(1), 10, a)
	m.put(k(2), 10, b)
	if m.get(k(1)) != a { // 1 is now the most recently used
		t.Fatal("entry 1 missing")
	}
	m.put(k(3), 10, c)
	if m.len() != 2 || m.get(k(2)) != nil || m.get(k(1)) != a || m.get(k(3)) != c {
		t.Fatalf("after a third entry: %d entries, 2 %v", m.len(), m.get(k(2)))
	}
	// A large token evicts by bytes: 3 (10) and 90 fit, 1 goes.
	m.put(k(4), 90, d)
	if m.len() != 2 || m.get(k(1)) != nil || m.get(k(3)) != c || m.get(k(4)) != d || m.bytes != 100 {
		t.Fatalf("after 90 bytes: %d entries, %d bytes", m.len(), m.bytes)
	}
}

// Verifications of one memoized token run at once (run with -race): the
// parsed token is shared, and each gets its own answer.
func TestVerifyConcurrently(t *testing.T) {
	f := newFixture(t, Scope{Keys: []string{"db"}, Flags: Flags})
	payload := []byte("p")
	bound, err := Bind(f.tok, payload)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Operator: "op1", Flag: FlagDecrypt, Key: "db", Payload: payload, Now: t0}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for range 8 {
				q := req
				if i%2 == 1 {
					q.Key = "other"
				}
				_, err := Verify(bound, f.pub, q, noRevocations)
				if (err == nil) != (i%2 == 0) {
					errs <- err
				}
				// An unbound token: its binding check adds a symbol.
				if _, err := Verify(f.tok, f.pub, req, noRevocations); !errors.Is(err, ErrUnbound) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent verify: %v", err)
	}
}
