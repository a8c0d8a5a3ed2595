package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// TestReleaseFromEveryNode: a secret sealed client-side is released,
// byte for byte, by whichever node the client reaches.
func TestReleaseFromEveryNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 64)
	k := c.createSecret("disk/sda", secret)
	if k.Version != 1 || k.State != fsm.KeyActive || k.Sealed != nil {
		t.Fatalf("created key: %+v, want version 1, active, no material in the result", k)
	}
	for _, tn := range c.nodes {
		got := c.mustRelease(tn, "disk/sda")
		if !bytes.Equal(got, secret) {
			t.Errorf("%s released %x, want %x", tn.id(), got, secret)
		}
	}
	// A name that does not exist is told apart from a refusal.
	if _, err := c.release(c.nodes[1], "disk/none"); KindOf(err) != KindNotFound {
		t.Errorf("release of a missing key: %v (kind %s), want %s", err, KindOf(err), KindNotFound)
	}
}

// TestRevokeIsHonouredByEveryNode: once a revoke is acknowledged, no
// release that starts afterwards succeeds, on any node (docs/architecture.md).
func TestRevokeIsHonouredByEveryNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("vm/42", secret)
	for _, tn := range c.nodes {
		if got := c.mustRelease(tn, "vm/42"); !bytes.Equal(got, secret) {
			t.Fatalf("%s released the wrong bytes before the revoke", tn.id())
		}
	}
	// Revoke through a follower, so the write is forwarded to the leader.
	a := c.anyRunning(c.leader())
	c.revoke(a, "vm/42")
	for _, tn := range c.nodes {
		got, err := c.release(tn, "vm/42")
		if err == nil {
			t.Errorf("%s released %d bytes of a key revoked through %s", tn.id(), len(got), a.id())
			continue
		}
		if KindOf(err) != KindDenied {
			t.Errorf("%s: release after revoke: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindDenied)
		}
	}
}

// TestJoinThenRemoveKeepsKeyAndRetiresOldShare: membership changes reshare
// the same cluster key; a removed node's old share is erased and is of no
// use against the new sharing.
func TestJoinThenRemoveKeepsKeyAndRetiresOldShare(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 48)
	c.createSecret("app/db", secret)
	st := c.status(c.nodes[0])
	pub0, epoch := st.PublicKey, st.Epoch

	// Join a fourth node.
	n4 := c.addNode()
	c.join(n4)
	st = c.status(n4)
	if !bytes.Equal(st.PublicKey, pub0) {
		t.Fatalf("public key changed when %s joined", n4.id())
	}
	if st.N != 4 || st.Threshold != 3 || st.Epoch <= epoch {
		t.Fatalf("after the join: %d holders, t=%d, epoch %d (was %d), want 4 holders, t=3, a new epoch", st.N, st.Threshold, st.Epoch, epoch)
	}
	if got := c.mustRelease(n4, "app/db"); !bytes.Equal(got, secret) {
		t.Fatal("the joined node released the wrong bytes")
	}

	// Remove one of the first three, not the leader.
	leader := c.leader()
	var victim *testNode
	for _, tn := range c.nodes[:3] {
		if tn != leader {
			victim = tn
			break
		}
	}
	epoch = st.Epoch
	victimCert := victim.n.cons.current().tls.cert
	oldShare := victim.n.shares.current(epoch)
	if oldShare == nil {
		t.Fatalf("%s holds no share of epoch %d", victim.id(), epoch)
	}
	var staying []*testNode
	for _, tn := range c.nodes {
		if tn != victim {
			staying = append(staying, tn)
		}
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
		t.Fatalf("removing %s: %v", victim.id(), err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range staying {
			for _, m := range c.status(tn).Members {
				if m.ID == victim.id() {
					return false, fmt.Sprintf("%s still lists %s", tn.id(), victim.id())
				}
			}
		}
		return true, ""
	})
	st = c.waitSettled(epoch, staying...)
	if !bytes.Equal(st.PublicKey, pub0) {
		t.Fatalf("public key changed when %s left", victim.id())
	}
	if st.N != 3 || st.Threshold != 2 {
		t.Fatalf("after the removal: %d holders, t=%d, want 3 holders, t=2", st.N, st.Threshold)
	}
	for _, tn := range staying {
		if got := c.mustRelease(tn, "app/db"); !bytes.Equal(got, secret) {
			t.Fatalf("%s released the wrong bytes after the removal", tn.id())
		}
	}

	// A removed node is no peer any more (issue 9, hole 2): its
	// certificate of the CA, valid for two years, gets no partial and no
	// Raft stream.
	for _, tn := range staying {
		if p, err := nodePortPartial(tn.cfg.RaftAddr, victimCert); err == nil || !strings.Contains(err.Error(), "not a member") {
			t.Errorf("%s asked for a partial by the removed %s: %q, %v", tn.id(), victim.id(), p, err)
		}
		if raftStreamServed(t, tn.cfg.RaftAddr, victimCert) {
			t.Errorf("%s kept a Raft stream of the removed %s", tn.id(), victim.id())
		}
	}

	// The removed node erases its share: nothing is left in shares.json.
	c.waitFor(settleTimeout, func() (bool, string) {
		f := readShareFile(t, victim.cfg.DataDir)
		if (f.Current != nil && f.Current.Share != nil) || (f.Pending != nil && f.Pending.Share != nil) {
			return false, fmt.Sprintf("%s's shares.json still holds a share (current %v, pending %v)", victim.id(), f.Current != nil, f.Pending != nil)
		}
		return true, ""
	})

	// The old share is useless against the new sharing: with t-1 partials
	// of current holders it opens nothing; t current partials do.
	key := storedKey(t, staying[0], "app/db")
	ct := &shamir.Ciphertext{R: key.R, Sealed: key.Sealed}
	info := fsm.SealInfo(c.clusterID, "app/db")
	pp := poly(staying[0])
	rctx := []byte("test context")
	var current []*shamir.Partial
	for _, tn := range staying {
		sh := tn.n.shares.current(st.Epoch)
		if sh == nil {
			t.Fatalf("%s holds no share of epoch %d", tn.id(), st.Epoch)
		}
		current = append(current, computePartial(t, sh, key.R, rctx))
	}
	if got, err := shamir.Open(pp, ct, info, current[:st.Threshold], rctx); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("t current partials do not open the secret: %v", err)
	}
	old := computePartial(t, oldShare, key.R, rctx)
	mixed := append([]*shamir.Partial{old}, current[:st.Threshold-1]...)
	if got, err := shamir.Open(pp, ct, info, mixed, rctx); err == nil {
		t.Fatalf("the removed node's old share with %d current partials opened the secret (%d bytes)", st.Threshold-1, len(got))
	}
	// Not even when the proofs are skipped: interpolating the old value
	// with current ones gives a point that decrypts nothing.
	points := map[uint32][]byte{old.Index: old.Value}
	for _, p := range current[:st.Threshold-1] {
		points[p.Index] = p.Value
	}
	if got, err := openCombined(t, points, st.Threshold, ct, info); err == nil {
		t.Fatalf("interpolating the old share with current ones decrypted the secret (%d bytes)", len(got))
	}
	points = map[uint32][]byte{}
	for _, p := range current[:st.Threshold] {
		points[p.Index] = p.Value
	}
	if got, err := openCombined(t, points, st.Threshold, ct, info); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the test's own KEM decryption does not open with t current partials: %v", err)
	}
}

// TestDataDirsBelowThresholdRevealNothing: the whole data directory of one
// node (t=2), here the founding node's, holds neither the plaintext nor
// enough to open it: its share alone does not, and the keys it holds open
// none of the deals left in its Raft log.
func TestDataDirsBelowThresholdRevealNothing(t *testing.T) {
	t.Parallel()
	// Snapshots often, so the stolen directory holds Raft snapshots too.
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	secret := randomBytes(t, 64)
	c.createSecret("luks/root", secret)
	thief := c.nodes[0]
	c.mustRelease(thief, "luks/root")
	for i := range 8 {
		c.createSecret(fmt.Sprintf("filler/%d", i), randomBytes(t, 16))
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		idx := thief.n.cons.current().raft.Stats()["last_snapshot_index"]
		return idx != "0", thief.id() + " has taken no snapshot yet"
	})
	key := storedKey(t, thief, "luks/root")
	pp := poly(thief)
	var index uint32
	thief.n.fsm.Read(func(s *fsm.State) { index = s.Nodes[thief.id()].Index })
	// After a round a node rotates the key its deals came to and erases
	// the old one; wait for that, then take the disk of the stopped node.
	c.waitFor(settleTimeout, func() (bool, string) {
		cur, _ := thief.n.shares.snapshot()
		if cur == nil {
			return false, "no current share"
		}
		return thief.n.encKey(cur.EncKey) == nil, fmt.Sprintf("%s still holds the key of the round of its share", thief.id())
	})
	c.stop(thief)
	dir := copyDir(t, thief.cfg.DataDir)

	encodings := map[string][]byte{
		"raw":       secret,
		"base64":    []byte(base64.StdEncoding.EncodeToString(secret)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(secret)),
		"hex":       []byte(hex.EncodeToString(secret)),
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for enc, v := range encodings {
			// A 16-byte window of the secret is enough to count as a leak.
			for i := 0; i+16 <= len(v); i += 8 {
				if bytes.Contains(b, v[i:i+16]) {
					t.Errorf("%s holds bytes of the secret (%s encoding, offset %d)", path, enc, i)
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("the copy of %s has %d files: not a data directory", thief.cfg.DataDir, files)
	}
	if snaps, _ := filepath.Glob(filepath.Join(dir, raftDir, "snapshots", "*", "state.bin")); len(snaps) == 0 {
		t.Fatalf("the copy of %s holds no Raft snapshot: the scan above did not cover one", thief.cfg.DataDir)
	}

	// The share alone.
	f := readShareFile(t, dir)
	if f.Current == nil || f.Current.Share == nil {
		t.Fatal("the copied shares.json holds no current share")
	}
	share := f.Current.Share
	ct := &shamir.Ciphertext{R: key.R, Sealed: key.Sealed}
	info := fsm.SealInfo(c.clusterID, "luks/root")
	if pp.Threshold() != 2 {
		t.Fatalf("threshold %d, want 2", pp.Threshold())
	}
	rctx := []byte("thief")
	p := computePartial(t, share, key.R, rctx)
	if _, err := shamir.Open(pp, ct, info, []*shamir.Partial{p}, rctx); !errors.Is(err, shamir.ErrNotEnoughPartials) {
		t.Errorf("opening with the one stolen share: %v, want %v", err, shamir.ErrNotEnoughPartials)
	}
	// As if t were 1: the share's own public share is the whole polynomial,
	// so its proof verifies and the interpolation is the share itself.
	pubShare, err := pp.PublicShare(share.Index)
	if err != nil {
		t.Fatal(err)
	}
	got, err := shamir.Open(&shamir.PublicPoly{Commits: [][]byte{pubShare}}, ct, info, []*shamir.Partial{p}, rctx)
	if err == nil {
		t.Fatalf("the stolen share alone, taken as t=1, opened the secret (%d bytes)", len(got))
	}
	if !errors.Is(err, shamir.ErrDecrypt) {
		t.Errorf("the stolen share as t=1: %v, want %v", err, shamir.ErrDecrypt)
	}
	if got, err := openCombined(t, map[uint32][]byte{p.Index: p.Value}, 1, ct, info); err == nil {
		t.Fatalf("the stolen share's partial decrypted the secret (%d bytes)", len(got))
	}

	// The deals in the Raft log: every round's sub-shares for this node
	// were encrypted to keys it has erased since.
	var id identity
	if err := readJSON(filepath.Join(dir, identityFile), &id); err != nil {
		t.Fatal(err)
	}
	deals := 0
	for _, e := range logDeals(t, filepath.Join(dir, raftDir, "raft.db")) {
		if !slices.ContainsFunc(e.deal.Shares, func(s shamir.EncryptedShare) bool { return s.Index == index }) {
			continue
		}
		deals++
		for pub, priv := range id.Keyring {
			if _, err := shamir.OpenDeal(e.deal, index, priv, dealContext(c.clusterID, e.round)); err == nil {
				t.Errorf("key %.16s... of the copied identity opens %s's sub-share of the deal of %d in round %d (log entry %d)",
					pub, thief.id(), e.deal.Dealer, e.round, e.index)
			}
		}
	}
	if deals == 0 {
		t.Fatalf("no deal for %s in its Raft log: the test looks in the wrong place", thief.id())
	}

	// Control: the same steps with two holders' shares do open it, so the
	// refusals above are the threshold's doing.
	var both []*shamir.Partial
	for _, tn := range c.nodes[1:] {
		sh := tn.n.shares.current(f.Current.Epoch)
		if sh == nil {
			t.Fatalf("%s holds no share of epoch %d", tn.id(), f.Current.Epoch)
		}
		both = append(both, computePartial(t, sh, key.R, rctx))
	}
	if got, err := shamir.Open(pp, ct, info, both, rctx); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("two shares do not open the secret: %v", err)
	}
}

type logDeal struct {
	index uint64 // of the log entry
	round uint64
	deal  *shamir.Deal
}

// logDeals reads the deals of every resharing round from a Raft log.
func logDeals(t *testing.T, path string) []logDeal {
	t.Helper()
	store, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	first, err := store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []logDeal
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
			continue
		}
		var sg fsm.Signed
		var cmd fsm.Command
		if json.Unmarshal(l.Data, &sg) != nil || json.Unmarshal(sg.Payload, &cmd) != nil || cmd.Type != fsm.TypeDeal {
			continue
		}
		d, err := decodeDeal(cmd.Deal.Deal)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, logDeal{index: i, round: cmd.Deal.Round, deal: d})
	}
	return out
}

// TestNoQuorumFailsWithKind: a node that lost its quorum says so with
// KindNoQuorum instead of hanging; once the others are back, everything is
// there.
func TestNoQuorumFailsWithKind(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secrets := map[string][]byte{"a": randomBytes(t, 32), "b/c": randomBytes(t, 40)}
	for name, s := range secrets {
		c.createSecret(name, s)
	}
	survivor, down := c.nodes[0], c.nodes[1:]
	for _, tn := range down {
		c.stop(tn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := survivor.n.Release(ctx, c.releaseRequest("a"))
	if KindOf(err) != KindNoQuorum {
		t.Fatalf("release on a node without quorum: %v (kind %s), want %s", err, KindOf(err), KindNoQuorum)
	}
	if ctx.Err() != nil {
		t.Fatal("the release did not answer within the test's minute")
	}
	if !Definite(err) {
		t.Error("a no-quorum release must be definite")
	}

	for _, tn := range down {
		c.restart(tn)
	}
	c.waitReleases(survivor, "a", secrets["a"])
	for _, tn := range c.nodes {
		for name, s := range secrets {
			if got := c.mustRelease(tn, name); !bytes.Equal(got, s) {
				t.Errorf("%s released the wrong bytes for %q after the restart", tn.id(), name)
			}
		}
	}
	keys, _, err := survivor.n.Keys(ctx, c.opID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
	}
	if !slices.Equal(names, []string{"a", "b/c"}) {
		t.Errorf("keys after the restart: %v, want [a b/c]", names)
	}
}

// waitReleases waits, with a deadline, until node tn releases the secret:
// after a restart the cluster elects a leader first.
func (c *testCluster) waitReleases(tn *testNode, name string, want []byte) {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		got, err := c.release(tn, name)
		if err != nil {
			return false, fmt.Sprintf("release through %s: %v", tn.id(), err)
		}
		if !bytes.Equal(got, want) {
			c.t.Fatalf("%s released the wrong bytes for %q", tn.id(), name)
		}
		return true, ""
	})
}

// casPrepare is the client's side of a compare-and-swap until the commit:
// a blind release of the current secret (op cas) through tn, the hash
// compared here, and the signed replace_key at the version released.
func (c *testCluster) casPrepare(tn *testNode, name string, old, replacement []byte) (*fsm.Signed, error) {
	c.t.Helper()
	return c.casPrepareSealed(tn, name, old, replacement, "")
}

// casPrepareSealed is casPrepare with the release in seal mode seal.
func (c *testCluster) casPrepareSealed(tn *testNode, name string, old, replacement []byte, seal string) (*fsm.Signed, error) {
	c.t.Helper()
	sum := sha256.Sum256(old)
	sg := c.signRelease(&fsm.ReleaseRequest{Key: name, Op: fsm.OpCAS, ReplaceKey: &fsm.ReplaceKey{Name: name, OldSHA256: sum[:]}, Seal: seal})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sr, err := tn.n.Release(ctx, sg)
	if err != nil {
		return nil, err
	}
	cur, err := c.openRelease(sg, sr)
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(cur)
	if subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
		return nil, Errorf(KindConflict, "the current secret of %q does not hash to old-sha256", name)
	}
	ct := c.seal(name, replacement)
	return c.sign(&fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: &fsm.ReplaceKey{
		Name: name, ExpectVersion: sr.Version, OldSHA256: sum[:], R: ct.R, Sealed: ct.Sealed}}), nil
}

func (c *testCluster) casCommit(tn *testNode, replace *fsm.Signed) (*fsm.Key, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tn.n.CompareAndSwap(ctx, replace)
}

func (c *testCluster) cas(tn *testNode, name string, old, replacement []byte) (*fsm.Key, error) {
	c.t.Helper()
	rep, err := c.casPrepare(tn, name, old, replacement)
	if err != nil {
		return nil, err
	}
	return c.casCommit(tn, rep)
}

// TestCompareAndSwap: keysrv's swap replaces a secret only if the client
// names the current one, and of two swaps from the same version exactly
// one wins.
func TestCompareAndSwap(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	v1 := randomBytes(t, 32)
	c.createSecret("kxd/host1", v1)

	// The right hash: replaced, version 2.
	v2 := randomBytes(t, 32)
	k, err := c.cas(c.nodes[1], "kxd/host1", v1, v2)
	if err != nil {
		t.Fatalf("swap with the right hash: %v", err)
	}
	if k.Version != 2 {
		t.Fatalf("version after a swap: %d, want 2", k.Version)
	}
	for _, tn := range c.nodes {
		if got := c.mustRelease(tn, "kxd/host1"); !bytes.Equal(got, v2) {
			t.Fatalf("%s releases the old secret after the swap", tn.id())
		}
	}

	// A wrong hash: conflict, nothing changes.
	_, err = c.cas(c.nodes[2], "kxd/host1", randomBytes(t, 32), randomBytes(t, 32))
	if KindOf(err) != KindConflict {
		t.Fatalf("swap with a wrong hash: %v (kind %s), want %s", err, KindOf(err), KindConflict)
	}
	if got := c.mustRelease(c.nodes[0], "kxd/host1"); !bytes.Equal(got, v2) {
		t.Fatal("a refused swap changed the secret")
	}
	if v := storedKey(t, c.nodes[0], "kxd/host1").Version; v != 2 {
		t.Fatalf("version after a refused swap: %d, want 2", v)
	}

	// Two swaps compared at version 2, committed at once through
	// different nodes: exactly one wins, the other is a conflict.
	cands := [][]byte{randomBytes(t, 32), randomBytes(t, 32)}
	reps := make([]*fsm.Signed, 2)
	for i := range reps {
		if reps[i], err = c.casPrepare(c.nodes[i], "kxd/host1", v2, cands[i]); err != nil {
			t.Fatalf("comparing swap %d: %v", i, err)
		}
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = c.casCommit(c.nodes[i], reps[i])
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatal("both concurrent swaps from version 2 succeeded")
		case err == nil:
			winner = i
		case KindOf(err) != KindConflict:
			t.Errorf("the losing swap: %v (kind %s), want %s", err, KindOf(err), KindConflict)
		}
	}
	if winner < 0 {
		t.Fatalf("neither concurrent swap succeeded: %v; %v", errs[0], errs[1])
	}
	for _, tn := range c.nodes {
		if got := c.mustRelease(tn, "kxd/host1"); !bytes.Equal(got, cands[winner]) {
			t.Fatalf("%s does not release the winning swap's secret", tn.id())
		}
	}
	if v := storedKey(t, c.nodes[0], "kxd/host1").Version; v != 3 {
		t.Fatalf("version after the concurrent swaps: %d, want 3", v)
	}
}

// TestReplayedReleaseIsRefused: a captured release request sent again to
// the same node is refused as unauthenticated.
func TestReplayedReleaseIsRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("replayed", secret)
	for _, tn := range c.nodes {
		sg := c.releaseRequest("replayed")
		got, err := c.releaseSigned(tn, sg)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("first release through %s: %v", tn.id(), err)
		}
		got, err = c.releaseSigned(tn, sg)
		if err == nil {
			t.Fatalf("%s released %d bytes for a replayed request", tn.id(), len(got))
		}
		if KindOf(err) != KindUnauthenticated {
			t.Errorf("replay through %s: %v (kind %s), want %s", tn.id(), err, KindOf(err), KindUnauthenticated)
		}
	}
}

// TestUnknownSignerAndBadSignatureRefused: commands and release requests
// of a key that is not an operator's, or whose payload was changed after
// signing, are refused as unauthenticated and change nothing.
func TestUnknownSignerAndBadSignatureRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerID := fsm.PrincipalID(pub)
	createCmd := func(name string) *fsm.Command {
		ct := c.seal(name, []byte("0123456789abcdef"))
		return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: name, Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	_, err = c.submitSigned(signWith(t, strangerID, stranger, createCmd("by-stranger")))
	if KindOf(err) != KindUnauthenticated {
		t.Errorf("create_key by an unknown signer: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	// The operator's ID with a stranger's key.
	_, err = c.submitSigned(signWith(t, c.opID, stranger, createCmd("by-impostor")))
	if KindOf(err) != KindUnauthenticated {
		t.Errorf("create_key signed with the wrong key: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}

	sg := c.sign(createCmd("tampered-a"))
	forged := *sg
	forged.Payload = bytes.Replace(sg.Payload, []byte("tampered-a"), []byte("tampered-b"), 1)
	if bytes.Equal(forged.Payload, sg.Payload) {
		t.Fatal("the payload was not changed")
	}
	if _, err := c.submitSigned(&forged); KindOf(err) != KindUnauthenticated {
		t.Errorf("create_key with a tampered payload: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	for _, name := range []string{"by-stranger", "by-impostor", "tampered-a", "tampered-b"} {
		if _, err := c.nodes[2].n.Key(ctx, c.opID, name); KindOf(err) != KindNotFound {
			t.Errorf("key %q after a refused create: %v, want %s", name, err, KindNotFound)
		}
	}
	// Control: the untampered command is accepted.
	if _, err := c.submitSigned(sg); err != nil {
		t.Fatalf("the untampered create_key: %v", err)
	}

	// Release requests too.
	rel := &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "tampered-a", Op: fsm.OpGet}}
	if _, err := c.releaseSigned(c.nodes[1], signWith(t, strangerID, stranger, rel)); KindOf(err) != KindUnauthenticated {
		t.Errorf("release signed by an unknown key: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	good := c.releaseRequest("tampered-a")
	bad := *good
	bad.Signature = slices.Clone(good.Signature)
	bad.Signature[0] ^= 1
	if _, err := c.releaseSigned(c.nodes[1], &bad); KindOf(err) != KindUnauthenticated {
		t.Errorf("release with a broken signature: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
}

// TestNodePortRefusesOperatorCertificate: the node port serves node
// certificates only; an operator's certificate of the same CA gets
// neither an RPC answer nor a Raft stream.
func TestNodePortRefusesOperatorCertificate(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	target := c.nodes[1].cfg.RaftAddr

	issue := func(role string) tls.Certificate {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := c.ca.Issue(pub, role, fsm.PrincipalID(pub), nil)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	clientConfig := func(cert tls.Certificate, proto string) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, NextProtos: []string{proto}}
	}
	getStatus := func(cert tls.Certificate) (*nodeStatus, error) { return nodePortStatus(target, cert) }

	// Control: a member's own certificate is served.
	ns, err := getStatus(c.nodes[0].n.cons.current().tls.cert)
	if err != nil || ns.ID != c.nodes[1].id() {
		t.Fatalf("RPC with a node certificate: %+v, %v", ns, err)
	}

	op := issue(RoleOperator)
	if ns, err := getStatus(op); err == nil {
		t.Errorf("RPC with an operator certificate was answered: %+v", ns)
	}

	// On the Raft protocol: the node closes the connection with an alert
	// instead of handing it to Raft (where it would wait for a request).
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: opTimeout}, "tcp", target, clientConfig(op, alpnRaft))
	if err != nil {
		return // refused during the handshake
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(opTimeout))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Error("the node sent data on a Raft stream opened with an operator certificate")
	case errors.As(err, &ne) && ne.Timeout():
		t.Error("the node kept a Raft stream opened with an operator certificate")
	}
}

// TestFullRestartKeepsEverything: every node shut down and opened again
// from its directory: the cluster comes back with its key and secrets.
func TestFullRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 64)
	c.createSecret("restart/me", secret)
	before := c.status(c.nodes[0])
	for _, tn := range c.nodes {
		c.stop(tn)
	}
	for _, tn := range c.nodes {
		c.restart(tn)
	}
	for _, tn := range c.nodes {
		c.waitReleases(tn, "restart/me", secret)
	}
	after := c.status(c.nodes[2])
	if !bytes.Equal(after.PublicKey, before.PublicKey) || after.Epoch != before.Epoch || after.N != before.N || after.Threshold != before.Threshold {
		t.Errorf("after the restart: epoch %d, %d holders, t=%d; before: epoch %d, %d holders, t=%d (or the public key changed)",
			after.Epoch, after.N, after.Threshold, before.Epoch, before.N, before.Threshold)
	}
	// And it takes writes.
	more := randomBytes(t, 16)
	c.createSecret("restart/after", more)
	if got := c.mustRelease(c.nodes[1], "restart/after"); !bytes.Equal(got, more) {
		t.Error("a secret created after the restart is released wrong")
	}
}

// TestNodeRemovedWhileDownErasesItsShare: a node removed while it was down
// is no longer a voter and never hears the log that removed it; once it
// is back, it still erases its share of the old epoch (with t-1 shares of
// that epoch kept by compromised nodes, it would complete a quorum).
func TestNodeRemovedWhileDownErasesItsShare(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	victim := c.nodes[2]
	staying := c.nodes[:2]
	epoch := c.status(staying[0]).Epoch
	if victim.n.shares.current(epoch) == nil {
		t.Fatalf("%s holds no share of epoch %d", victim.id(), epoch)
	}
	c.stop(victim)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
		t.Fatalf("removing %s: %v", victim.id(), err)
	}
	c.waitSettled(epoch, staying...)
	// Wait until it is no longer a Raft voter either, so that once back it
	// hears from no leader.
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range staying {
			f := tn.n.cons.current().raft.GetConfiguration()
			if f.Error() != nil {
				return false, f.Error().Error()
			}
			for _, srv := range f.Configuration().Servers {
				if string(srv.ID) == victim.id() {
					return false, fmt.Sprintf("%s is still a voter for %s", victim.id(), tn.id())
				}
			}
		}
		return true, ""
	})
	c.restart(victim)
	c.waitFor(settleTimeout, func() (bool, string) {
		f := readShareFile(t, victim.cfg.DataDir)
		if (f.Current != nil && f.Current.Share != nil) || (f.Pending != nil && f.Pending.Share != nil) {
			return false, fmt.Sprintf("%s, removed while down, still holds a share in shares.json", victim.id())
		}
		return true, ""
	})
}

// TestWaitAppliedWaitsForTheStateMachine: a consistent read on a node may
// only look at its state once the state machine itself has applied the
// read index. Raft's AppliedIndex counts entries handed to the state
// machine's queue, not applied ones (hashicorp/raft api.go), so a holder
// that checked it could authorize a release against a state that has not
// seen an acknowledged revoke yet.
func TestWaitAppliedWaitsForTheStateMachine(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	leader := c.leader()
	follower := c.anyRunning(leader)

	// Hold the follower's state machine: Raft can still commit and hand it
	// entries, but it cannot apply them.
	entered, unblock := make(chan struct{}), make(chan struct{})
	go follower.n.fsm.Read(func(*fsm.State) {
		close(entered)
		<-unblock
	})
	<-entered
	unblocked := false
	release := func() {
		if !unblocked {
			unblocked = true
			close(unblock)
		}
	}
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	res, err := leader.n.Submit(ctx, c.sign(&fsm.Command{Type: fsm.TypePutRule, PutRule: &fsm.Rule{
		ID: "r1", Principal: c.opID, Key: "x/*", Ops: []string{fsm.OpGet}}}))
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer wcancel()
	err = follower.n.waitApplied(wctx, res.Index)
	applied, _ := follower.n.cons.rfsm.watch()
	release()
	if err == nil && applied < res.Index {
		t.Fatalf("waitApplied(%d) returned while the state machine had applied only %d", res.Index, applied)
	}
	// Once the state machine runs again, the wait completes.
	if err := follower.n.waitApplied(ctx, res.Index); err != nil {
		t.Fatalf("waitApplied after the state machine resumed: %v", err)
	}
}

func computePartial(t *testing.T, sh *shamir.Share, R, context []byte) *shamir.Partial {
	t.Helper()
	p, err := shamir.ComputePartial(rand.Reader, sh, R, context)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// openCombined interpolates partial values without checking any proof
// and decrypts with the result, following the KEM of shamir's package
// documentation: HKDF-SHA256(r*X, salt R, "keyquorum/kem/v1\x00" || info)
// keys ChaCha20-Poly1305, whose nonce leads the sealed bytes.
func openCombined(t *testing.T, points map[uint32][]byte, threshold int, ct *shamir.Ciphertext, info []byte) ([]byte, error) {
	t.Helper()
	K, err := shamir.CombinePoints(points, threshold)
	if err != nil {
		t.Fatal(err)
	}
	key, err := hkdf.Key(sha256.New, K, ct.R, "keyquorum/kem/v1\x00"+string(info), chacha20poly1305.KeySize)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		t.Fatal(err)
	}
	ns := chacha20poly1305.NonceSize
	if len(ct.Sealed) < ns {
		t.Fatal("sealed material too short")
	}
	return aead.Open(nil, ct.Sealed[:ns], ct.Sealed[ns:], nil)
}

// TestLaggingNodeCatchesUpFromSnapshot: a node that was down while the
// others compacted their logs is brought up to date by a snapshot (the
// state machine's Snapshot and Restore through Raft), and then holds the
// same state and releases every secret.
func TestLaggingNodeCatchesUpFromSnapshot(t *testing.T) {
	t.Parallel()
	// No snapshot of Raft's own: one taken while the cluster forms, or
	// one the lagging node took before it stopped, would let it catch up
	// from the log or from its own snapshot, and which happened depended
	// on timing. The test takes the leader's snapshot itself below, once
	// the lagging node is down.
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
		cfg.TrailingLogs = 2
	})
	lag := c.nodes[2]
	c.stop(lag)
	secrets := map[string][]byte{}
	for i := range 24 {
		name := fmt.Sprintf("snap/%d", i)
		secrets[name] = randomBytes(t, 32)
		c.createSecret(name, secrets[name])
	}
	ldr := c.leader()
	written := ldr.n.cons.appliedIndex()
	var taken uint64
	c.waitFor(30*time.Second, func() (bool, string) {
		// Refused until the key's first checkpoint is certified.
		err := ldr.n.cons.current().raft.Snapshot().Error()
		taken, _ = strconv.ParseUint(ldr.n.cons.current().raft.Stats()["last_snapshot_index"], 10, 64)
		return taken >= written, fmt.Sprintf("the leader's latest snapshot is at %d, before the writes' end at %d (%v)", taken, written, err)
	})
	if first, err := ldr.n.cons.current().store.FirstIndex(); err != nil || first <= 1 {
		t.Fatalf("the leader's log starts at %d (%v): it was not cut at its snapshot", first, err)
	}
	c.restart(lag)
	// Raft records the installed snapshot only after the state machine
	// restored it: both are waited for.
	c.waitFor(60*time.Second, func() (bool, string) {
		want, _ := ldr.n.fsm.Hash()
		got, _ := lag.n.fsm.Hash()
		if got != want {
			return false, fmt.Sprintf("%s's state hash %x, the leader's %x", lag.id(), got[:4], want[:4])
		}
		idx, _ := strconv.ParseUint(lag.n.cons.current().raft.Stats()["last_snapshot_index"], 10, 64)
		return idx >= taken, fmt.Sprintf("%s holds the leader's state, but its latest snapshot is at %d, before the leader's at %d: it caught up without installing it, the test did not exercise Restore",
			lag.id(), idx, taken)
	})
	for name, want := range secrets {
		if got := c.mustRelease(lag, name); !bytes.Equal(got, want) {
			t.Fatalf("%s released a different %s after catching up", lag.id(), name)
		}
	}
}
