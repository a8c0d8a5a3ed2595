package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tssrsa "github.com/cloudflare/circl/tss/rsa"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

var (
	testRSAOnce sync.Once
	testRSAKey  *rsa.PrivateKey
)

// rsaKey is one RSA-2048 key for every test of the package: made
// elsewhere, as an imported key is.
func rsaKey(t testing.TB) *rsa.PrivateKey {
	testRSAOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testRSAKey = k
	})
	return testRSAKey
}

// createThresholdRSA deals priv to the cluster's share holders, as keyctl
// does, and creates the key, opened to the keyless gateway.
func (c *testCluster) createThresholdRSA(name string, priv *rsa.PrivateKey, access *fsm.Access) *fsm.Key {
	c.t.Helper()
	st := c.status(c.leader())
	var holders []api.MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	public, rk, err := api.DealRSA(rand.Reader, st.ClusterID, name, priv, st.Threshold, holders)
	if err != nil {
		c.t.Fatal(err)
	}
	if access == nil {
		access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
	}
	res, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeRSAThreshold, Public: public, Access: access, RSA: rk}})
	if err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
	return res.Key
}

func pkcs1Input(t testing.TB, pub *rsa.PublicKey, msg string) ([]byte, []byte) {
	digest := sha256.Sum256([]byte(msg))
	in, err := tssrsa.PKCS1v15Padder{}.Pad(pub, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return digest[:], in
}

func thresholdRSA(tn *testNode, name string, input []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tn.n.ThresholdRSA(ctx, fsm.GatewayTLV, name, input, "test client")
}

// thresholdRSASettled is thresholdRSA, tried again, as a client would,
// while holders did not answer in time or no leader was known (a loaded
// machine: elections churn right after a membership change, and holders
// answer only with a read index from a leader), up to settleTimeout. Any
// other failure, a share that does not combine included, is returned at
// once.
func (c *testCluster) thresholdRSASettled(tn *testNode, name string, input []byte) (sig []byte, err error) {
	c.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		sig, err = thresholdRSA(tn, name, input)
		if err == nil {
			return sig, nil
		}
		unavailable := strings.Contains(err.Error(), "did not answer in time") || strings.Contains(err.Error(), "no leader")
		if KindOf(err) != KindNoQuorum || !unavailable || time.Now().After(deadline) {
			return sig, err
		}
		c.t.Logf("threshold RSA through %s, again: %v", tn.id(), err)
	}
}

// TestThresholdRSASignsThroughEveryNode: PKCS #1 v1.5 and PSS signatures
// and raw decryption by quorum, through each node, verified with
// crypto/rsa and the public key alone.
func TestThresholdRSASignsThroughEveryNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	pub := &priv.PublicKey
	c.createThresholdRSA("tls/rsa", priv, nil)
	for _, tn := range c.running() {
		c.waitHasKey(tn, "tls/rsa")
		digest, in := pkcs1Input(t, pub, "hello from "+tn.id())
		sig, err := thresholdRSA(tn, "tls/rsa", in)
		if err != nil {
			t.Fatalf("signing through %s: %v", tn.id(), err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
			t.Fatalf("the PKCS #1 v1.5 signature made through %s does not verify: %v", tn.id(), err)
		}

		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		in, err = (&tssrsa.PSSPadder{Rand: rand.Reader, Opts: pss}).Pad(pub, crypto.SHA256, digest)
		if err != nil {
			t.Fatal(err)
		}
		sig, err = thresholdRSA(tn, "tls/rsa", in)
		if err != nil {
			t.Fatalf("PSS through %s: %v", tn.id(), err)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, pss); err != nil {
			t.Fatalf("the PSS signature made through %s does not verify: %v", tn.id(), err)
		}

		secret := []byte("pre-master secret of 48 bytes, more or less.....")
		//lint:ignore SA1019 the client's side of keyless's PKCS #1 v1.5 decrypt
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
		if err != nil {
			t.Fatal(err)
		}
		em, err := thresholdRSA(tn, "tls/rsa", ct)
		if err != nil {
			t.Fatalf("raw decryption through %s: %v", tn.id(), err)
		}
		if !bytes.HasSuffix(em, append([]byte{0}, secret...)) || em[0] != 0 || em[1] != 2 {
			t.Fatalf("raw decryption through %s is not the padded secret: %x", tn.id(), em)
		}
	}
	if _, err := thresholdRSA(c.leader(), "tls/rsa", pub.N.Bytes()); KindOf(err) != KindInvalid {
		t.Errorf("an input not below the modulus: %v, want %s", err, KindInvalid)
	}
}

// TestBadRSAShareIsNamedAndTheSignatureCompletes: a holder that sends a
// bad share (one byte changed) never makes the signature fail while t
// honest holders answer; the coordinator finds it with another subset and
// names its holder.
func TestBadRSAShareIsNamedAndTheSignatureCompletes(t *testing.T) {
	t.Parallel()
	logs := &rsaLogBuffer{}
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	priv := rsaKey(t)
	c.createThresholdRSA("tls/rsa", priv, nil)
	// The coordinator asks itself and the next holder in node ID order
	// first: make that one the liar, so its share is always in the first
	// t the coordinator combines.
	byID := c.running()
	sort.Slice(byID, func(i, j int) bool { return byID[i].id() < byID[j].id() })
	coord, liar := byID[0], byID[1]
	for _, tn := range byID {
		c.waitHasKey(tn, "tls/rsa")
	}
	for _, lie := range []struct {
		name, logged string
		change       func([]byte) []byte
	}{
		{"one bit changed", "nodes=" + liar.id(), func(b []byte) []byte {
			bad := bytes.Clone(b)
			bad[len(bad)-1] ^= 1
			return bad
		}},
		{"bytes that do not parse", "node " + liar.id() + " sent an rsa share that does not parse", func([]byte) []byte { return []byte{1, 2, 3} }},
		{"another holder's index", "node " + liar.id() + " sent share", func(b []byte) []byte {
			bad := bytes.Clone(b)
			bad[5] ^= 3 // Shoup's index, low byte
			return bad
		}},
	} {
		var lied atomic.Int32
		tamper := func(share []byte) []byte {
			lied.Add(1)
			return lie.change(share)
		}
		liar.n.rsaShareHook.Store(&tamper)
		for i := range 2 {
			digest, in := pkcs1Input(t, &priv.PublicKey, fmt.Sprintf("%s, try %d", lie.name, i))
			sig, err := c.thresholdRSASettled(coord, "tls/rsa", in)
			if err != nil {
				t.Fatalf("%s: with one bad holder (%s) of three, t=2: %v", lie.name, liar.id(), err)
			}
			if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest, sig); err != nil {
				t.Fatal(err)
			}
		}
		if lied.Load() == 0 {
			t.Fatalf("%s: the liar was never asked: the test proves nothing", lie.name)
		}
		if got := logs.String(); !strings.Contains(got, lie.logged) {
			t.Errorf("%s: the coordinator's log does not name %s (%q):\n%s", lie.name, liar.id(), lie.logged, got)
		}
	}
}

// rsaLogBuffer collects the nodes' log lines.
type rsaLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *rsaLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *rsaLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCombineRSANamesTheBadShare: the subset search names exactly the
// holder whose share is wrong, and with too few good shares fails naming
// those that answered.
func TestCombineRSANamesTheBadShare(t *testing.T) {
	t.Parallel()
	priv := rsaKey(t)
	pub := &priv.PublicKey
	keyShares, err := tssrsa.Deal(rand.Reader, 5, 3, priv, false)
	if err != nil {
		t.Fatal(err)
	}
	_, in := pkcs1Input(t, pub, "combine")
	var shares []namedShare
	for i, ks := range keyShares {
		s, err := ks.Sign(rand.Reader, pub, in, false)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 || i == 3 { // node-2 and node-4 lie
			b, _ := s.MarshalBinary()
			b[len(b)-1] ^= 0x10
			if err := s.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
		}
		shares = append(shares, namedShare{node: "node-" + string(rune('1'+i)), share: s})
	}
	out, bad, err := combineRSA(pub, 5, 3, shares, in)
	if err != nil {
		t.Fatalf("three good shares of five: %v", err)
	}
	if strings.Join(bad, ",") != "node-2,node-4" {
		t.Errorf("named %q, want node-2,node-4", bad)
	}
	if new(big.Int).Exp(new(big.Int).SetBytes(out), big.NewInt(int64(pub.E)), pub.N).Cmp(new(big.Int).SetBytes(in)) != 0 {
		t.Error("the result does not verify")
	}
	_, _, err = combineRSA(pub, 5, 3, shares[:4], in) // node-1, node-3 good: too few
	if err == nil || !strings.Contains(err.Error(), "node-1, node-2, node-3, node-4") {
		t.Errorf("two good shares of four: %v, want an error naming who answered", err)
	}
}

// rsaShareRequest is what a coordinator (here: any node, maybe lying)
// sends a holder for a threshold RSA share.
func (c *testCluster) rsaShareRequest(coord *testNode, name string, input []byte, readIndex uint64) *partialRequest {
	c.t.Helper()
	sg, err := coord.n.nodeCommand(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpRSAShare, Gateway: fsm.GatewayTLV, Client: "lying", Input: input}})
	if err != nil {
		c.t.Fatal(err)
	}
	k := storedKey(c.t, coord, name)
	return &partialRequest{ReadIndex: readIndex, Request: sg, Version: k.Version}
}

// TestLyingCoordinatorGetsNoRSAShare: a coordinator with a valid node
// certificate and the code cannot get a holder's share for a key revoked
// before its request (even with a stale read index, from a holder that has
// not applied the revoke yet), for a key not opened to the gateway, for a
// request an operator signed as if it were a gateway, or twice for one
// request.
func TestLyingCoordinatorGetsNoRSAShare(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	_, in := pkcs1Input(t, &priv.PublicKey, "lie")
	c.createThresholdRSA("tls/revoked", priv, nil)
	c.createThresholdRSA("tls/kxd-only", priv, &fsm.Access{Gateways: []string{fsm.GatewayKxd}})
	c.createThresholdRSA("tls/ok", priv, nil)
	coord := c.leader()
	victim := c.anyRunning(coord)
	for _, name := range []string{"tls/revoked", "tls/kxd-only", "tls/ok"} {
		c.waitHasKey(victim, name)
	}
	ask := func(req *partialRequest) error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := victim.n.answerRSAShare(ctx, req)
		return err
	}

	// Revoked while the victim lags; the coordinator sends read index 0.
	req := c.rsaShareRequest(coord, "tls/revoked", in, 0)
	resume := c.holdApplies(victim) // the victim acknowledges entries but applies none
	c.revoke(coord, "tls/revoked")
	if err := ask(req); err == nil {
		t.Fatal("a lagging holder gave its rsa share for a key revoked before the request")
	}
	resume()
	req = c.rsaShareRequest(coord, "tls/revoked", in, 0)
	if err := ask(req); KindOf(err) != KindDenied {
		t.Fatalf("revoked key: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}

	if err := ask(c.rsaShareRequest(coord, "tls/kxd-only", in, 0)); KindOf(err) != KindDenied {
		t.Errorf("a key not opened to the keyless gateway: %v, want %s", err, KindDenied)
	}
	op := c.rsaShareRequest(coord, "tls/ok", in, 0)
	op.Request = c.sign(&fsm.Command{Type: fsm.TypeRelease,
		Release: &fsm.ReleaseRequest{Key: "tls/ok", Op: fsm.OpRSAShare, Input: in}})
	if err := ask(op); err == nil {
		t.Error("a holder answered an operator's request for an rsa share")
	}
	good := c.rsaShareRequest(coord, "tls/ok", in, 0)
	if err := ask(good); err != nil {
		t.Fatalf("an honest request: %v", err)
	}
	if err := ask(good); KindOf(err) != KindUnauthenticated {
		t.Errorf("the same request again: %v, want %s (a replay)", err, KindUnauthenticated)
	}
	long := c.rsaShareRequest(coord, "tls/ok", append(in, 0), 0)
	if err := ask(long); KindOf(err) != KindInvalid {
		t.Errorf("an input longer than the modulus: %v, want %s", err, KindInvalid)
	}
}

// TestNoNodeHoldsTheRSAPrivateExponent: after signing through every node,
// neither d nor a prime factor is in any node's state (what it keeps in
// memory and writes to its log and snapshots), share store or data
// directory, in binary, hex or base64.
func TestNoNodeHoldsTheRSAPrivateExponent(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	c.createThresholdRSA("tls/rsa", priv, nil)
	for _, tn := range c.running() {
		c.waitHasKey(tn, "tls/rsa")
		_, in := pkcs1Input(t, &priv.PublicKey, tn.id())
		if _, err := thresholdRSA(tn, "tls/rsa", in); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string][]byte{"d": priv.D.Bytes(), "p": priv.Primes[0].Bytes(), "q": priv.Primes[1].Bytes()}
	find := func(where string, hay []byte) {
		for name, b := range secrets {
			for _, form := range append(encodings(b, 3), []byte(hex.EncodeToString(b)), []byte(strings.ToUpper(hex.EncodeToString(b)))) {
				if bytes.Contains(hay, form) {
					t.Errorf("%s holds the key's %s", where, name)
					break
				}
			}
		}
	}
	// The same scan finds the modulus, which every node stores (in the
	// key's PKIX public key), so it looks in the right places.
	nForms := encodings(priv.N.Bytes(), 3)
	for _, tn := range c.running() {
		if files := filesCarrying(t, tn.cfg.DataDir, nForms); len(files) == 0 {
			t.Fatalf("the scan does not find the modulus in %s's data directory", tn.id())
		}
		if files := filesCarrying(t, tn.cfg.DataDir, append(append(encodings(secrets["d"], 3), encodings(secrets["p"], 3)...), encodings(secrets["q"], 3)...)); len(files) > 0 {
			t.Errorf("%s's data directory holds d, p or q in %v", tn.id(), files)
		}
	}
	for _, tn := range c.running() {
		tn.n.fsm.Read(func(s *fsm.State) {
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			find(tn.id()+"'s state", b)
		})
		cur, pend := tn.n.shares.snapshot()
		held, _ := json.Marshal([]any{cur, pend})
		find(tn.id()+"'s share store", held)
		for _, f := range []string{"shares.json", "identity.json", "membership.json"} {
			b, err := os.ReadFile(filepath.Join(tn.cfg.DataDir, f))
			if err != nil {
				t.Fatal(err)
			}
			find(tn.id()+"'s "+f, b)
		}
	}
}

// TestThresholdRSAKeyNeedsReimportWhenAHolderLeaves: Shoup's shares cannot
// be reshared, so when a holder leaves, the key says it needs re-import,
// keeps signing with the holders that remain (t of them) and never asks
// the retired node again, and the retired node gives its share to nobody;
// re-importing it (destroy, import) deals new
// shares, and every remaining node erases the old deal, the retired
// node's sealed share with it, from its disk.
func TestThresholdRSAKeyNeedsReimportWhenAHolderLeaves(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	c.createThresholdRSA("tls/rsa", priv, nil)
	leader := c.leader()
	victim := c.anyRunning(leader)
	old := storedKey(t, leader, "tls/rsa").RSA().ShareOf(victim.id())
	if old == nil || len(old.Sealed) == 0 {
		t.Fatalf("%s holds no sealed share in the state", victim.id())
	}
	// The scan finds the retired node's sealed share before the re-import,
	// so it looks for the right bytes.
	forms := encodings(old.Sealed, 3)
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.running() {
			if len(filesCarrying(t, tn.cfg.DataDir, forms)) == 0 {
				return false, tn.id() + "'s disk does not show the sealed share yet"
			}
		}
		return true, ""
	})
	epoch := c.status(leader).Epoch
	var staying []*testNode
	for _, tn := range c.running() {
		if tn != victim {
			staying = append(staying, tn)
		}
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
		t.Fatalf("removing %s: %v", victim.id(), err)
	}
	c.waitSettled(epoch, staying...)
	var asked atomic.Int32
	count := func(share []byte) []byte {
		asked.Add(1)
		return share
	}
	victim.n.rsaShareHook.Store(&count)
	for _, tn := range staying {
		k := storedKey(t, tn, "tls/rsa")
		if !strings.Contains(k.RSA().Reimport, victim.id()) {
			t.Fatalf("%s: after %s left, the key must need re-import naming it: %q", tn.id(), victim.id(), k.RSA().Reimport)
		}
		digest, in := pkcs1Input(t, &priv.PublicKey, "after "+tn.id())
		sig, err := c.thresholdRSASettled(tn, "tls/rsa", in)
		if err != nil {
			t.Fatalf("%s, with the 2 holders left of 3 (t=2): %v", tn.id(), err)
		}
		if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest, sig); err != nil {
			t.Fatal(err)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the retired %s was asked for its share %d times", victim.id(), n)
	}
	// A member that asks the retired node itself (a lying coordinator
	// collecting shares) gets nothing: the leader gives a removed node no
	// read index, so it cannot establish freshness.
	_, in := pkcs1Input(t, &priv.PublicKey, "ask the retired node")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := victim.n.answerRSAShare(ctx, c.rsaShareRequest(staying[0], "tls/rsa", in, 0))
	cancel()
	if err == nil {
		t.Errorf("the retired %s still gives its share to a member that asks", victim.id())
	}

	// Re-import: destroy, then deal again to the holders there are now.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "tls/rsa"}); err != nil {
		t.Fatal(err)
	}
	c.createThresholdRSA("tls/rsa", priv, nil)
	var destroyed uint64
	staying[0].n.fsm.Read(func(s *fsm.State) { destroyed = s.Destroyed })
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range staying {
			if tn.n.ErasedThrough() < destroyed {
				return false, fmt.Sprintf("%s has not erased its log through %d", tn.id(), destroyed)
			}
		}
		return true, ""
	})
	for _, tn := range staying {
		k := storedKey(t, tn, "tls/rsa")
		if k.RSA().Reimport != "" || k.RSA().ShareOf(victim.id()) != nil || len(k.RSA().Shares) != 2 {
			t.Fatalf("%s: the re-imported key is %+v", tn.id(), k.RSA())
		}
		_, in := pkcs1Input(t, &priv.PublicKey, "re-imported "+tn.id())
		if _, err := c.thresholdRSASettled(tn, "tls/rsa", in); err != nil {
			t.Fatalf("the re-imported key through %s: %v", tn.id(), err)
		}
		if files := filesCarrying(t, tn.cfg.DataDir, forms); len(files) > 0 {
			t.Errorf("%s still holds the retired %s's sealed share in %v", tn.id(), victim.id(), files)
		}
	}
}

// TestThresholdRSASignsThroughTheSignPath: an operator's signing request
// (op sign, the generic path REST /v1/sign, gRPC Sign and keyctl key sign
// take) with an rsa-threshold key makes, through every node, a PKCS #1
// v1.5 signature (the default, and named) or a PSS one over the message's
// SHA-256, as the request asks; each verifies with crypto/rsa and with
// api.VerifySignature under that padding only. An unknown padding is
// refused with what is known.
func TestThresholdRSASignsThroughTheSignPath(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	pub := &priv.PublicKey
	k := c.createThresholdRSA("sig/rsa", priv, nil)
	signReq := func(msg []byte, padding string) *fsm.Signed {
		return c.sign(&fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: "sig/rsa", Op: fsm.OpSign, Message: msg, Padding: padding}})
	}
	for _, tn := range c.running() {
		c.waitHasKey(tn, "sig/rsa")
		for _, padding := range []string{"", fsm.PaddingPKCS1v15, fsm.PaddingPSS} {
			msg := []byte("release v1.2 signed through " + tn.id() + " with " + padding)
			sig, err := c.signThrough(tn, signReq(msg, padding))
			if err != nil {
				t.Fatalf("signing with padding %q through %s: %v (kind %s)", padding, tn.id(), err, KindOf(err))
			}
			digest := sha256.Sum256(msg)
			other := fsm.PaddingPSS
			if padding == fsm.PaddingPSS {
				err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
				other = fsm.PaddingPKCS1v15
			} else {
				err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig.Signature)
			}
			if err != nil {
				t.Fatalf("the %q signature made through %s does not verify with crypto/rsa: %v", padding, tn.id(), err)
			}
			if sig.Type != fsm.KeyTypeRSAThreshold || !bytes.Equal(sig.PublicKey, k.Public()) || sig.Check(msg, padding) != nil {
				t.Fatalf("the answer names type %q and another public key, or does not check", sig.Type)
			}
			if err := api.VerifySignature(k, msg, sig.Signature, padding); err != nil {
				t.Fatalf("api.VerifySignature(%q): %v", padding, err)
			}
			if err := api.VerifySignature(k, msg, sig.Signature, other); !errors.Is(err, api.ErrBadSignature) {
				t.Errorf("the %q signature verified as %q: %v", padding, other, err)
			}
			if err := api.VerifySignature(k, []byte("another message"), sig.Signature, padding); !errors.Is(err, api.ErrBadSignature) {
				t.Errorf("the %q signature verified another message: %v", padding, err)
			}
		}
	}
	if _, err := c.signThrough(c.leader(), signReq([]byte("m"), "oaep")); KindOf(err) != KindInvalid || !strings.Contains(err.Error(), fsm.PaddingPSS) {
		t.Errorf("an unknown padding: %v (kind %s), want %s naming the paddings", err, KindOf(err), KindInvalid)
	}
	for _, tn := range c.running() {
		ops := tn.n.Metrics().Operations
		if got := testutil.ToFloat64(ops.WithLabelValues(opSign, fsm.KeyTypeRSAThreshold, metrics.NoGateway, metrics.ResultOK)); got != 3 {
			t.Errorf("%s counted %v signatures with the rsa-threshold key, want 3", tn.id(), got)
		}
	}
}

// TestSignRequestCannotChooseTheRSAInput: an operator allowed to sign
// with an rsa-threshold key cannot turn a holder into a decryption oracle
// through a lying coordinator: a sign request that carries an input (a
// ciphertext) is refused by the holder, and the share a holder gives for
// a sign request is of the message it padded itself, so combined with
// another holder's share it makes the signature of that message, never
// the ciphertext's x^d.
func TestSignRequestCannotChooseTheRSAInput(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	pub := &priv.PublicKey
	c.createThresholdRSA("sig/oracle", priv, nil)
	coord := c.leader()
	victim := c.anyRunning(coord)
	c.waitHasKey(victim, "sig/oracle")
	secret := []byte("pre-master secret of the victim's TLS session....")
	//lint:ignore SA1019 the attacker's ciphertext, recorded from a PKCS #1 v1.5 key exchange
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(rel *fsm.ReleaseRequest) (*rsaShareAnswer, error) {
		k := storedKey(t, coord, "sig/oracle")
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		return victim.n.answerRSAShare(ctx, &partialRequest{Request: c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: rel}), Version: k.Version})
	}
	if _, err := ask(&fsm.ReleaseRequest{Key: "sig/oracle", Op: fsm.OpSign, Message: []byte("m"), Input: ct}); KindOf(err) != KindInvalid {
		t.Fatalf("a sign request with the attacker's input: %v (kind %s), want %s", err, KindOf(err), KindInvalid)
	}
	msg := []byte("innocent message")
	sg := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "sig/oracle", Op: fsm.OpSign, Message: msg}})
	var shares []namedShare
	for _, tn := range c.running()[:2] {
		c.waitHasKey(tn, "sig/oracle")
		k := storedKey(t, tn, "sig/oracle")
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		ans, err := tn.n.answerRSAShare(ctx, &partialRequest{Request: sg, Version: k.Version})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tn.id(), err)
		}
		s, err := parseRSAShare(ans.Share, tn.id(), k.RSA().ShareOf(tn.id()).Index, uint(len(k.RSA().Shares)), uint(k.RSA().Threshold))
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, namedShare{node: tn.id(), share: s})
	}
	if _, _, err := combineRSA(pub, 3, 2, shares, ct); err == nil {
		t.Fatal("the holders' shares for a sign request combine into the ciphertext's x^d")
	}
	in, err := api.RSASignInput(pub, "", msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := combineRSA(pub, 3, 2, shares, in); err != nil {
		t.Fatalf("the shares do not combine into the message's signature: %v", err)
	}
}

// TestLyingRSAHolderIsNamedInTheSignature: through the generic sign path
// (REST /v1/sign, gRPC Sign, keyctl key sign), a holder that sends a bad
// threshold RSA share does not stop the signature while t honest holders
// answer, and the answer names it in Signature.Failed, and no one else.
// The honest third holder answers only once the liar has, so that the
// liar's share is among the first the coordinator combines.
func TestLyingRSAHolderIsNamedInTheSignature(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	priv := rsaKey(t)
	c.createThresholdRSA("sig/liar", priv, nil)
	byID := c.running()
	sort.Slice(byID, func(i, j int) bool { return byID[i].id() < byID[j].id() })
	coord, liar, honest := byID[0], byID[1], byID[2]
	for _, tn := range byID {
		c.waitHasKey(tn, "sig/liar")
	}
	named := 0
	for try := range 3 {
		for _, padding := range []string{fsm.PaddingPKCS1v15, fsm.PaddingPSS} {
			lied := make(chan struct{})
			var once sync.Once
			lie := func(share []byte) []byte {
				once.Do(func() { close(lied) })
				bad := bytes.Clone(share)
				bad[len(bad)-1] ^= 1
				return bad
			}
			wait := func(share []byte) []byte {
				select {
				case <-lied:
				case <-time.After(opTimeout / 4):
				}
				return share
			}
			liar.n.rsaShareHook.Store(&lie)
			honest.n.rsaShareHook.Store(&wait)
			msg := []byte(fmt.Sprintf("signed despite a liar, try %d", try))
			sig, err := c.signThrough(coord, c.sign(&fsm.Command{Type: fsm.TypeRelease,
				Release: &fsm.ReleaseRequest{Key: "sig/liar", Op: fsm.OpSign, Message: msg, Padding: padding}}))
			if err != nil {
				t.Fatalf("with one lying holder (%s) of three, t=2, padding %s: %v", liar.id(), padding, err)
			}
			if err := sig.Check(msg, padding); err != nil {
				t.Fatalf("the signature made despite the liar does not verify: %v", err)
			}
			for node, why := range sig.Failed {
				if node != liar.id() {
					t.Errorf("the answer names the honest %s as failed: %s", node, why)
				}
			}
			if sig.Failed[liar.id()] != "" {
				named++
			}
		}
	}
	if named == 0 {
		t.Fatalf("no answer named the liar %s in Signature.Failed", liar.id())
	}
}
