package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// TestCredentialsSaveAndLoad: what keyctl cluster init writes, keyctl
// reads back, with the keys readable by their owner only.
func TestCredentialsSaveAndLoad(t *testing.T) {
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := fsm.PrincipalID(pub)
	cert, err := ca.Issue(pub, pki.RoleOperator, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	gossip := bytes.Repeat([]byte{7}, 32)
	creds := &Credentials{CACert: ca.CertPEM, CAKey: caKey, GossipKey: gossip, Cert: cert, Key: key, OperatorID: id}
	dir := t.TempDir()
	if _, err := creds.Save(dir, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"operator-key.pem", "ca-key.pem", "gossip.key"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	got, err := LoadCredentials(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "operator.pem"), filepath.Join(dir, "operator-key.pem"),
		filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got.OperatorID != id || !got.Key.Equal(key) || !bytes.Equal(got.GossipKey, gossip) || !bytes.Equal(got.CACert, ca.CertPEM) || !bytes.Equal(got.CAKey, caKey) {
		t.Fatal("the credentials read back differ from those saved")
	}
}

// TestErrorsKeepTheirKind: an answer {"error":{...}} is an *Error of its
// kind, which keyctl turns into its exit status.
func TestErrorsKeepTheirKind(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ErrorReply{Error: &Error{Kind: api.KindNoQuorum, Message: "2 of 3 holders did not answer"}})
	}))
	defer srv.Close()
	c := &Client{base: srv.URL, http: srv.Client()}
	_, err := c.Status(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Kind != api.KindNoQuorum || e.Message != "2 of 3 holders did not answer" {
		t.Fatalf("got %v, want a no_quorum error", err)
	}
}

// TestUnreachableNode: a call that never reached a node did not happen.
func TestUnreachableNode(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	c := &Client{base: srv.URL, http: srv.Client(), creds: &Credentials{Key: key, OperatorID: fsm.PrincipalID(pub)}}
	srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	if _, err := c.Keys(context.Background()); api.KindOf(err) != vocab.KindUnreachable || !strings.Contains(err.Error(), "cannot reach node at "+addr) {
		t.Fatalf("got %v, want unreachable, naming %s", err, addr)
	}
	if err := c.PutRule(context.Background(), &fsm.Rule{}); api.KindOf(err) != vocab.KindUnreachable || !api.Definite(err) {
		t.Fatalf("a write refused at dial: %v, want unreachable (it did not happen)", err)
	}
}

// TestClientKeepsItsConnections: a client with several requests in flight
// at a time keeps a connection open for each and reuses it, instead of
// opening one (a TLS handshake) per request. (Go's transport may dial one
// more than it needs while a connection is being handed back, so the
// bound is twice the requests in flight.)
func TestClientKeepsItsConnections(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fn := fc.nodes[0]
	var mu sync.Mutex
	conns := map[string]bool{}
	fn.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		fn.serve(w, r)
	})
	c, err := NewClient(fn.srv.Listener.Addr().String(), fc.creds)
	if err != nil {
		t.Fatal(err)
	}
	const inFlight, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	for range inFlight {
		wg.Go(func() {
			for range each {
				if _, err := c.Status(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) > 2*inFlight {
		t.Fatalf("%d requests, %d at a time, took %d connections; want at most %d", inFlight*each, inFlight, len(conns), 2*inFlight)
	}
}

// TestEphemeralKeysAreUsedOnce: the ephemeral keys a client's releases
// take, some made ahead while others wait, are each given once.
func TestEphemeralKeysAreUsedOnce(t *testing.T) {
	var e ephemeralKeys
	const takers, each = 8, 200
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range takers {
		wg.Go(func() {
			for range each {
				k, err := e.take()
				if err != nil {
					t.Error(err)
					return
				}
				e.prepare()
				pub := string(k.PublicKey())
				mu.Lock()
				if seen[pub] {
					t.Error("an ephemeral key was given twice")
				}
				seen[pub] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
