package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// recoveryOfficer is an officer's key pair, as keyctl recovery keygen
// makes it.
type recoveryOfficer struct {
	name      string
	priv, pub []byte
}

func newOfficers(t *testing.T, m int) []recoveryOfficer {
	t.Helper()
	out := make([]recoveryOfficer, m)
	for i := range out {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = recoveryOfficer{name: fmt.Sprintf("officer%d", i+1), priv: priv, pub: pub}
	}
	return out
}

func kitRequest(officers []recoveryOfficer, k int) *fsm.RecoveryKitRequest {
	r := &fsm.RecoveryKitRequest{Threshold: k}
	for _, o := range officers {
		r.Officers = append(r.Officers, fsm.RecoveryOfficer{Name: o.name, EncKey: o.pub})
	}
	return r
}

// newKitCluster is a 3-node cluster, t=2, founded with a 2-of-3 recovery
// kit; it waits until every holder has dealt the kit.
func newKitCluster(t *testing.T, officers []recoveryOfficer) *testCluster {
	t.Helper()
	c := newEmptyCluster(t)
	c.configure = func(cfg *Config) { cfg.CheckpointEvery = 16 }
	c.recovery = kitRequest(officers, 2)
	for range 3 {
		c.addNode()
	}
	c.initFirst(3)
	for _, tn := range c.nodes[1:] {
		c.join(tn)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		st := c.status(c.anyRunning())
		k := st.Recovery
		if k == nil {
			c.t.Fatal("cluster status shows no recovery kit, one was asked for at init")
		}
		return k.Usable && k.Dealt == 3 && k.Epoch == st.Epoch, fmt.Sprintf("recovery kit: %+v at epoch %d", k, st.Epoch)
	})
	return c
}

// TestRecoveryKitRebuildsAfterEveryNodeIsLost is drill 2 on real nodes:
// a cluster founded with a 2-of-3 kit, whose holders deal it through the
// log; one holder lies in its sub-share to officer 1 (only the officer can
// see it); a backup; every node lost. Officers 1 and 3 open their kit
// shares from the verified backup, leave out the lying holder, and deal to
// three new nodes, which combine shares of the same cluster key and open
// the secret sealed before the loss. One officer alone, an outsider's
// deal, and a retired node's disk rebuild nothing.
func TestRecoveryKitRebuildsAfterEveryNodeIsLost(t *testing.T) {
	// node3 lies to officer 1: its deal's commitments are right, its
	// encrypted sub-share to officer 1 is not.
	recoveryTestHooks.Store(&recoveryHooks{tamper: func(nodeID string, d *shamir.Deal) {
		if nodeID != "node3" {
			return
		}
		for i := range d.Shares {
			if d.Shares[i].Index == 1 {
				d.Shares[i].Ciphertext[len(d.Shares[i].Ciphertext)-1] ^= 1
			}
		}
	}})
	t.Cleanup(func() { recoveryTestHooks.Store(nil) })
	officers := newOfficers(t, 3)
	c := newKitCluster(t, officers)
	c.createSecret("kept", []byte("kept by the kit"))
	ldr := c.leader()
	c.waitFor(settleTimeout, func() (bool, string) {
		return ldr.n.fsm.Capture().Certificate != nil, "no checkpoint certified"
	})
	b, err := ldr.n.Backup(context.Background(), c.opID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	pin := c.clusterKey()
	retired := copyDir(t, c.nodes[2].cfg.DataDir)
	for _, tn := range c.nodes {
		c.stop(tn)
	}

	_, f, err := VerifyBackup(data, pin)
	if err != nil {
		t.Fatal(err)
	}
	var s *fsm.State
	f.Read(func(st *fsm.State) { s = st })

	open := func(o uint32) *KitOpening {
		t.Helper()
		op, err := OpenRecoveryKit(s, o, officers[o-1].priv)
		if err != nil {
			t.Fatalf("officer %d: %v", o, err)
		}
		return op
	}
	o1, o3 := open(1), open(3)
	if len(o1.Bad) != 1 || o1.Bad[3] == nil || len(o1.Sub) != 2 {
		t.Fatalf("officer 1 should find holder 3's sub-share bad and the others good: good %d, bad %v", len(o1.Sub), o1.Bad)
	}
	if len(o3.Bad) != 0 {
		t.Fatalf("officer 3 finds bad sub-shares: %v", o3.Bad)
	}
	// With the lying holder among the dealers, officer 1 has no share.
	if _, _, err := KitShare(s, o1, []uint32{1, 3}); err == nil {
		t.Fatal("officer 1 combined a kit share with the lying holder's deal")
	}
	dealers := []uint32{1, 2}
	kit, err := KitPoly(s, dealers)
	if err != nil {
		t.Fatal(err)
	}
	to := make([]RebuildRecipient, 3)
	newKeys := make([][]byte, 3)
	for i := range to {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		to[i], newKeys[i] = RebuildRecipient{Index: uint32(i + 1), EncPub: pub}, priv
	}
	var deals []*shamir.Deal
	for _, o := range []*KitOpening{o1, o3} {
		sh, _, err := KitShare(s, o, dealers)
		if err != nil {
			t.Fatalf("officer %d's kit share: %v", o.Officer, err)
		}
		d, err := RebuildDeal(s.ClusterID, sh, 2, to)
		sh.Erase()
		if err != nil {
			t.Fatal(err)
		}
		deals = append(deals, d)
	}

	// Attacks. One officer alone: too few.
	if _, _, err := CombineRebuild(s.ClusterID, kit, deals[:1], 2, to, 1, newKeys[0]); !errors.Is(err, ErrTooFewOfficers) {
		t.Fatalf("one officer's deal rebuilt: %v", err)
	}
	// One officer and an outsider who deals a share of its own under the
	// officer index 2: refused against the kit's commitments.
	fake, err := shamir.NewFreshDeal(rand.Reader, 2, 2, to, RebuildContext(s.ClusterID))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CombineRebuild(s.ClusterID, kit, []*shamir.Deal{deals[0], fake}, 2, to, 1, newKeys[0]); !errors.Is(err, ErrTooFewOfficers) {
		t.Fatalf("an outsider's deal stood in for an officer: %v", err)
	}
	// A retired node's disk: its keys open no officer's sub-share.
	var id identity
	if err := readJSON(filepath.Join(retired, identityFile), &id); err != nil {
		t.Fatal(err)
	}
	for _, priv := range id.Keyring {
		for o := uint32(1); o <= 3; o++ {
			if _, err := OpenRecoveryKit(s, o, priv); err == nil {
				t.Fatalf("a retired node's encryption key opened officer %d's sub-shares", o)
			}
			for _, r := range s.Recovery.Deals {
				d, err := decodeDeal(r.Deal)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := shamir.OpenDeal(d, o, priv, RecoveryContext(s.ClusterID, s.Recovery.Epoch)); err == nil {
					t.Fatalf("a retired node's key opened holder %d's sub-share to officer %d", r.Dealer, o)
				}
			}
		}
	}

	// The rebuild: each new node combines its share; two of them open the
	// secret sealed before every node was lost.
	shares := make([]*shamir.Share, 3)
	var rebuilt *shamir.PublicPoly
	for i := range to {
		sh, p, err := CombineRebuild(s.ClusterID, kit, deals, 2, to, to[i].Index, newKeys[i])
		if err != nil {
			t.Fatalf("new node %d: %v", i+1, err)
		}
		shares[i], rebuilt = sh, p
	}
	if !slices.Equal(rebuilt.PublicKey(), pin) {
		t.Fatal("the rebuilt sharing has another cluster key")
	}
	k := s.Keys["kept"]
	ct := &shamir.Ciphertext{R: k.R, Sealed: k.Sealed}
	rctx := []byte("test release")
	var partials []*shamir.Partial
	for _, sh := range shares[1:] {
		p, err := shamir.ComputePartial(rand.Reader, sh, k.R, rctx)
		if err != nil {
			t.Fatal(err)
		}
		partials = append(partials, p)
	}
	got, err := shamir.Open(rebuilt, ct, fsm.SealInfo(s.ClusterID, "kept"), partials, rctx)
	if err != nil || string(got) != "kept by the kit" {
		t.Fatalf("the rebuilt shares open %q, %v", got, err)
	}

	// The cluster rebuilt on three new nodes, started once to make their
	// identities, then stopped.
	var fresh []*testNode
	var nodes []*fsm.Node
	for i := range 3 {
		tn := c.addNode()
		rec := c.nodeRecord(tn)
		rec.Index = uint32(i + 1)
		fresh, nodes = append(fresh, tn), append(nodes, rec)
		c.stop(tn)
	}
	to = to[:0]
	for _, nd := range nodes {
		to = append(to, RebuildRecipient{Index: nd.Index, EncPub: nd.EncKey})
	}
	var raw [][]byte
	for _, o := range []*KitOpening{o1, o3} {
		sh, _, err := KitShare(s, o, dealers)
		if err != nil {
			t.Fatal(err)
		}
		d, err := RebuildDeal(s.ClusterID, sh, 2, to)
		sh.Erase()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(d)
		raw = append(raw, b)
	}
	rebuildWith := func(deals [][]byte) *fsm.Signed {
		return c.sign(&fsm.Command{Type: fsm.TypeRebuild, Rebuild: &fsm.Rebuild{Holders: dealers, Threshold: 2, Nodes: nodes, Deals: deals}})
	}
	membershipOf := func(tn *testNode) RebuildMembership {
		cert, err := c.ca.Issue(ed25519.PublicKey(tn.n.Identity().SignKey), RoleNode, tn.id(), []string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		return RebuildMembership{CACert: c.ca.CertPEM, NodeCert: cert, GossipKey: c.gossipKey}
	}
	// One officer's deal, or an officer's deal twice: refused, nothing
	// written.
	for _, deals := range [][][]byte{raw[:1], {raw[0], raw[0]}} {
		if _, err := RebuildNode(fresh[0].cfg.DataDir, fresh[0].id(), data, pin, rebuildWith(deals), membershipOf(fresh[0])); err == nil {
			t.Fatal("a rebuild with one officer's deal was taken")
		}
		if _, err := os.Stat(filepath.Join(fresh[0].cfg.DataDir, raftDir)); err == nil {
			t.Fatal("a refused rebuild left Raft data")
		}
	}
	entry := rebuildWith(raw)
	for _, tn := range fresh {
		info, err := RebuildNode(tn.cfg.DataDir, tn.id(), data, pin, entry, membershipOf(tn))
		if err != nil {
			t.Fatalf("rebuilding %s: %v", tn.id(), err)
		}
		if len(info.Members) != 3 || info.Epoch != s.Epoch+1 {
			t.Fatalf("rebuild of %s reports %+v", tn.id(), info)
		}
	}
	for _, tn := range fresh {
		c.restart(tn)
	}
	for _, tn := range fresh {
		c.waitReleases(tn, "kept", []byte("kept by the kit"))
	}
	// Each new node applied the rebuild entry on its own: at the same
	// index they have the same state.
	c.waitFor(settleTimeout, func() (bool, string) {
		var at []uint64
		var sums [][32]byte
		for _, tn := range fresh {
			var before, after uint64
			tn.n.fsm.Read(func(s *fsm.State) { before = s.Applied })
			sum, err := tn.n.fsm.Hash()
			if err != nil {
				t.Fatal(err)
			}
			tn.n.fsm.Read(func(s *fsm.State) { after = s.Applied })
			if before != after {
				return false, "applying"
			}
			at, sums = append(at, before), append(sums, sum)
		}
		if at[0] != at[1] || at[1] != at[2] {
			return false, fmt.Sprintf("at indexes %v", at)
		}
		if sums[0] != sums[1] || sums[1] != sums[2] {
			t.Fatalf("the rebuilt nodes have different states at index %d", at[0])
		}
		return true, ""
	})
	c.createSecret("after", []byte("written after the rebuild"))
	if got := c.mustRelease(fresh[2], "after"); string(got) != "written after the rebuild" {
		t.Fatalf("released %q", got)
	}
	if st := c.status(fresh[0]); st.N != 3 || st.Threshold != 2 || !bytes.Equal(st.PublicKey, pin) {
		t.Fatalf("the rebuilt cluster's status: n %d, t %d, key %x (want %x)", st.N, st.Threshold, st.PublicKey, pin)
	}
}

// TestRecoveryDealRefusals: the state machine takes a recovery deal only
// from a holder of the epoch, under its own index, once, and only a deal
// that reshares the dealer's own share.
func TestRecoveryDealRefusals(t *testing.T) {
	officers := newOfficers(t, 3)
	c := newKitCluster(t, officers)
	n1 := c.nodes[0]
	var epoch uint64
	var kit *fsm.RecoveryKit
	var epochPoly [][]byte
	n1.n.fsm.Read(func(s *fsm.State) { epoch, kit, epochPoly = s.Epoch, s.Recovery, s.Poly })
	share := n1.n.shares.current(epoch)
	if share == nil {
		t.Fatal("node1 holds no share")
	}
	rs := make([]shamir.Recipient, len(officers))
	for i, o := range officers {
		rs[i] = shamir.Recipient{Index: uint32(i + 1), EncPub: o.pub}
	}
	d, err := shamir.NewReshareDeal(rand.Reader, share, 2, rs, RecoveryContext(c.clusterID, epoch))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	submitAs := func(tn *testNode, rd *fsm.RecoveryDeal) error {
		sg, err := tn.n.nodeCommand(&fsm.Command{Type: fsm.TypeRecoveryDeal, RecoveryDeal: rd})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.submitSigned(sg)
		return err
	}
	// Under another holder's index.
	if err := submitAs(n1, &fsm.RecoveryDeal{Epoch: epoch, Dealer: 2, Deal: b}); KindOf(err) != KindDenied {
		t.Fatalf("node1 dealt as holder 2: %v", err)
	}
	// A second time.
	if err := submitAs(n1, &fsm.RecoveryDeal{Epoch: epoch, Dealer: 1, Deal: b}); KindOf(err) != KindExists {
		t.Fatalf("node1 dealt twice: %v", err)
	}
	// For another epoch.
	if err := submitAs(n1, &fsm.RecoveryDeal{Epoch: epoch + 1, Dealer: 1, Deal: b}); KindOf(err) != KindConflict {
		t.Fatalf("a deal for another epoch: %v", err)
	}
	// The public check: a deal of another secret than the dealer's share,
	// or under another threshold, is refused.
	other, err := shamir.NewFreshDeal(rand.Reader, 1, 2, rs, RecoveryContext(c.clusterID, epoch))
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := json.Marshal(other)
	if err := (dealChecker{}).CheckRecoveryDeal(kit, epochPoly, 1, ob); err == nil {
		t.Fatal("a deal of another secret than the dealer's share passed the check")
	}
	three, err := shamir.NewReshareDeal(rand.Reader, share, 3, rs, RecoveryContext(c.clusterID, epoch))
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := json.Marshal(three)
	if err := (dealChecker{}).CheckRecoveryDeal(kit, epochPoly, 1, tb); err == nil {
		t.Fatal("a deal with threshold 3 passed the check of a 2-of-3 kit")
	}
	if err := (dealChecker{}).CheckRecoveryDeal(kit, epochPoly, 1, b); err != nil {
		t.Fatalf("the genuine deal: %v", err)
	}
	share.Erase()
}
