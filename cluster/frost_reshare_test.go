package cluster

import (
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Attacks on FROST keys across membership changes (issue 11, "threshold
// keys follow membership"): the disks of retired nodes, alone or with
// fewer than t current members', must not sign with a FROST key, and the
// key must keep its public key and sign after its holders changed.

// frostSealed returns the sealed shares of the FROST key name as the
// state holds them now.
func (c *testCluster) frostSealed(name string) [][]byte {
	var out [][]byte
	c.anyRunning().n.fsm.Read(func(s *fsm.State) {
		for _, sh := range s.Keys[name].Frost().Shares {
			if len(sh.Sealed) > 0 {
				out = append(out, append([]byte(nil), sh.Sealed...))
			}
		}
	})
	return out
}

// frostSharesIn is every share of the FROST key name a thief of the data
// directory dir of node id opens: the share store's; the sealed shares of
// the create_key entries in its Raft log that its identity key opens; and
// the FROST sub-shares of the deals in the log that the keys of its
// keyring open. It fails the test if any file still holds one of the
// sealed shares the key was created with.
func frostSharesIn(t *testing.T, dir, id, name, clusterID string, sealed [][]byte) []*shamir.Share {
	t.Helper()
	var forms [][]byte
	for _, s := range sealed {
		forms = append(forms, encodings(s, 3)...)
	}
	if files := filesCarrying(t, dir, forms); len(files) > 0 {
		t.Errorf("%s's data directory still holds a share sealed to an identity key: %v", id, files)
	}
	var out []*shamir.Share
	f := readShareFile(t, dir)
	for _, e := range []*epochShare{f.Current, f.Pending} {
		if e != nil {
			for sid, sh := range e.Frost {
				if strings.HasPrefix(sid, name+"/") {
					out = append(out, sh)
				}
			}
		}
	}
	var ident identity
	if err := readJSON(filepath.Join(dir, identityFile), &ident); err != nil {
		t.Fatal(err)
	}
	idPriv, err := shamir.EncryptionKeyFromEd25519(ident.SignKey)
	if err != nil {
		t.Fatal(err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, raftDir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	first, _ := store.FirstIndex()
	last, _ := store.LastIndex()
	for i := first; i <= last && first > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
			continue
		}
		var sg fsm.Signed
		var cmd fsm.Command
		if json.Unmarshal(l.Data, &sg) != nil || json.Unmarshal(sg.Payload, &cmd) != nil {
			continue
		}
		switch {
		case cmd.Type == fsm.TypeCreateKey && cmd.CreateKey.Name == name && cmd.CreateKey.Frost != nil:
			fk := cmd.CreateKey.Frost
			for _, sh := range fk.Shares {
				if sh.NodeID != ident.NodeID {
					continue
				}
				s, err := shamir.OpenShare(idPriv, sh.Sealed, sh.Index, api.FROSTShareContext(clusterID, name, fk.Epoch), &shamir.PublicPoly{Commits: fk.Commits})
				if err == nil {
					t.Errorf("%s's Raft log still holds its share of %s sealed to its identity key (entry %d)", id, name, i)
					out = append(out, s)
				}
			}
		case cmd.Type == fsm.TypeDeal:
			for _, fd := range cmd.Deal.Frost {
				if fd.Key != name {
					continue
				}
				d, err := decodeDeal(fd.Deal)
				if err != nil {
					t.Fatal(err)
				}
				for _, es := range d.Shares {
					for _, priv := range ident.Keyring {
						if sub, err := shamir.OpenDeal(d, es.Index, priv, frostDealContext(clusterID, cmd.Deal.Round, name)); err == nil {
							t.Errorf("a key of %s's keyring opens a sub-share of %d's deal of %s in round %d", id, d.Dealer, name, cmd.Deal.Round)
							clear(sub)
						}
					}
				}
			}
		}
	}
	return out
}

// signsWith reports whether some set of the shares with distinct indexes
// makes a FROST signature that crypto/ed25519 accepts under pub: what a
// thief holding them would try.
func signsWith(t *testing.T, pub ed25519.PublicKey, shares []*shamir.Share) bool {
	t.Helper()
	msg := []byte("a thief's message")
	for mask := 1; mask < 1<<len(shares); mask++ {
		var set []*shamir.Share
		seen := map[uint32]bool{}
		for i, sh := range shares {
			if mask&(1<<i) != 0 && !seen[sh.Index] {
				set, seen[sh.Index] = append(set, sh), true
			}
		}
		slices.SortFunc(set, func(a, b *shamir.Share) int { return cmp.Compare(a.Index, b.Index) })
		var nonces []*shamir.SigningNonces
		var commitments []shamir.NonceCommitment
		for _, sh := range set {
			n, err := shamir.FROSTCommit(rand.Reader, sh)
			if err != nil {
				t.Fatal(err)
			}
			nonces, commitments = append(nonces, n), append(commitments, n.Commitment())
		}
		round, err := shamir.NewFROSTRound(pub, msg, commitments)
		if err != nil {
			t.Fatal(err)
		}
		zs := map[uint32][]byte{}
		for i, sh := range set {
			z, err := round.Sign(sh, nonces[i])
			if err != nil {
				t.Fatal(err)
			}
			zs[sh.Index] = z
		}
		sig, err := round.Aggregate(zs)
		if err == nil && ed25519.Verify(pub, msg, sig) {
			return true
		}
	}
	return false
}

// TestFROSTKeyFollowsMembership: an ed25519-frost key dealt to three
// holders still signs, under the same public key, after two of them were
// replaced one by one; key show never says it needs re-import. The first
// round after its creation reshares it and erases the sealed shares from
// every disk; a removed node's share is erased with its epoch, and the
// share it held before its removal does not sign with t-1 current ones;
// the data directories of t-1 current members with every retired one's
// sign nothing, where t current shares do.
func TestFROSTKeyFollowsMembership(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub := c.createFROST("sig/a", nil)
	sealed := c.frostSealed("sig/a")
	sign := func(tn *testNode, what string) {
		t.Helper()
		msg := []byte(what + " through " + tn.id())
		sig, err := c.signThrough(tn, c.signRequest("sig/a", msg))
		if err != nil || !ed25519.Verify(pub, msg, sig.Signature) {
			t.Fatalf("signing %s through %s: %v", what, tn.id(), err)
		}
	}
	sign(c.nodes[0], "before")

	var retired []string
	var retiredNodes []*testNode
	var before []*shamir.Share // removed nodes' shares, copied before their removal
	originals := slicesCloneNodes(c.nodes)
	for round := range 2 {
		nn := c.addNode()
		c.join(nn)
		st := c.status(nn)
		var destroyed uint64
		nn.n.fsm.Read(func(s *fsm.State) {
			destroyed = s.Destroyed
			fk := s.Keys["sig/a"].Frost()
			if fk.Epoch != s.Epoch || string(fk.Commits[0]) != string(pub) {
				t.Errorf("after round %d sig/a is of epoch %d (state %d), public key %x: want reshared with the same key", round, fk.Epoch, s.Epoch, fk.Commits[0])
			}
			for _, sh := range fk.Shares {
				if len(sh.Sealed) > 0 {
					t.Errorf("after round %d the state still holds %s's sealed share", round, sh.NodeID)
				}
			}
		})
		k, err := nn.n.Key(ctxOp(t), c.opID, "sig/a")
		if err != nil || k.Frost() == nil || k.Frost().NeedsReimport {
			t.Fatalf("key show after round %d: %+v, %v: want a reshared key", round, k, err)
		}
		c.waitFor(settleTimeout, func() (bool, string) {
			for _, tn := range c.members() {
				if tn.n.ErasedThrough() < destroyed {
					return false, fmt.Sprintf("%s has not erased its log through %d", tn.id(), destroyed)
				}
			}
			return true, ""
		})
		sign(nn, "after the join")

		var victim *testNode
		for _, tn := range originals {
			if tn != c.leader() && !slicesContainsNode(retiredNodes, tn) {
				victim = tn
				break
			}
		}
		c.waitFor(settleTimeout, func() (bool, string) {
			return len(readShareFile(t, victim.cfg.DataDir).Current.Frost) > 0, victim.id() + " holds no frost share in its store"
		})
		for _, sh := range readShareFile(t, copyDir(t, victim.cfg.DataDir)).Current.Frost {
			before = append(before, sh)
		}
		if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
			t.Fatalf("removing %s: %v", victim.id(), err)
		}
		var staying []*testNode
		for _, tn := range c.members() {
			if tn != victim {
				staying = append(staying, tn)
			}
		}
		c.waitSettled(st.Epoch, staying...)
		c.waitFor(settleTimeout, func() (bool, string) {
			f := readShareFile(t, victim.cfg.DataDir)
			return f.Current == nil && f.Pending == nil, victim.id() + " still holds shares"
		})
		c.stop(victim)
		dir := copyDir(t, victim.cfg.DataDir)
		if got := frostSharesIn(t, dir, victim.id(), "sig/a", c.clusterID, sealed); len(got) > 0 {
			t.Errorf("the removed %s's data directory holds %d shares of sig/a", victim.id(), len(got))
		}
		retired, retiredNodes = append(retired, dir), append(retiredNodes, victim)
		for _, tn := range staying {
			sign(tn, fmt.Sprintf("after removal %d", round))
		}
	}
	current := c.members()
	st := c.status(current[0])
	var kept []*shamir.Share
	for _, tn := range current {
		var fk fsm.FROSTKey
		tn.n.fsm.Read(func(s *fsm.State) { fk = *s.Keys["sig/a"].Frost() })
		sh := tn.n.shares.frost(st.Epoch, frostStoreID("sig/a", &fk))
		if sh == nil {
			t.Fatalf("%s holds no share of sig/a in epoch %d", tn.id(), st.Epoch)
		}
		kept = append(kept, sh)
	}
	if !signsWith(t, pub, kept[:st.Threshold]) {
		t.Fatal("t current shares do not sign: the test's signer is wrong")
	}
	if signsWith(t, pub, append(append([]*shamir.Share{}, before...), kept[:st.Threshold-1]...)) {
		t.Fatal("removed nodes' shares from before their removal sign with t-1 current ones")
	}
	var stolen []*shamir.Share
	for _, tn := range current[:st.Threshold-1] {
		c.stop(tn)
		stolen = append(stolen, frostSharesIn(t, copyDir(t, tn.cfg.DataDir), tn.id(), "sig/a", c.clusterID, sealed)...)
	}
	for i, dir := range retired {
		stolen = append(stolen, frostSharesIn(t, dir, retiredNodes[i].id(), "sig/a", c.clusterID, sealed)...)
	}
	if len(stolen) == 0 {
		t.Fatal("the current members' disks hold no share of sig/a: the test looks in the wrong place")
	}
	if signsWith(t, pub, stolen) {
		t.Fatalf("%d shares from t-1 current and %d retired data directories sign with sig/a", len(stolen), len(retired))
	}
}

// TestBadFROSTDealIsComplainedAgainst: a holder deals one member a FROST
// sub-share off its polynomial, first. The member's complaint against
// that deal disqualifies the dealer, the round completes with the other
// holders' deals, and the member's new share signs.
func TestBadFROSTDealIsComplainedAgainst(t *testing.T) {
	c := newTestCluster(t, 3)
	pub := c.createFROST("sig/a", nil)
	cheat, victim := c.nodes[2], c.nodes[1]
	cheatIndex, victimIndex := nodeIndex(t, cheat), nodeIndex(t, victim)
	epoch := c.status(c.nodes[0]).Epoch
	setHooks(t, &reshareHooks{
		gate: func(id string, r *fsm.Reshare) bool {
			return id == cheat.id() || r.HasDealt(cheatIndex) || strings.Contains(fmt.Sprint(r.Disqualified), fmt.Sprint(cheatIndex))
		},
		tamperFROST: func(id, key string, d *shamir.Deal) {
			if id != cheat.id() {
				return
			}
			for i := range d.Shares {
				if d.Shares[i].Index == victimIndex {
					d.Shares[i].Ciphertext[shamir.PointSize+1] ^= 0x80
				}
			}
		},
	})
	n4 := c.addNode()
	c.join(n4)
	st := c.waitSettled(epoch, c.nodes[0], c.nodes[1], n4)
	var last *fsm.Reshare
	var fk fsm.FROSTKey
	victim.n.fsm.Read(func(s *fsm.State) { last, fk = cloneRound(s.LastRound), *s.Keys["sig/a"].Frost() })
	if last == nil || last.HasDealt(cheatIndex) || !strings.Contains(fmt.Sprint(last.Disqualified), fmt.Sprint(cheatIndex)) {
		t.Fatalf("the round: %+v, want %s disqualified by the complaint against its frost deal", last, cheat.id())
	}
	if fk.Epoch != st.Epoch || string(fk.Commits[0]) != string(pub) {
		t.Fatalf("sig/a after the round: epoch %d (want %d), public key %x (want %x)", fk.Epoch, st.Epoch, fk.Commits[0], pub)
	}
	if victim.n.shares.frost(st.Epoch, frostStoreID("sig/a", &fk)) == nil {
		t.Fatalf("%s holds no share of sig/a in epoch %d", victim.id(), st.Epoch)
	}
	// With the cheat down a signature needs the victim's share: t' = 3 of
	// the three members left.
	c.stop(cheat)
	msg := []byte("after the complaint")
	sig, err := c.signThrough(victim, c.signRequest("sig/a", msg))
	if err != nil || !ed25519.Verify(pub, msg, sig.Signature) {
		t.Fatalf("signing with the victim's new share: %v", err)
	}
}

// TestFROSTKeyWithAMemberDownDuringTheRound: a member down while a join
// reshares an ed25519-frost key opens its new share of the key from the
// round's logged deals when it is back, and a signature that needs it (t'
// = 3 of the 3 members left up) completes.
func TestFROSTKeyWithAMemberDownDuringTheRound(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub := c.createFROST("sig/a", nil)
	leader := c.leader()
	var down *testNode
	for _, tn := range c.nodes {
		if tn != leader {
			down = tn
			break
		}
	}
	c.stop(down)
	n4 := c.addNode()
	c.join(n4)
	st := c.status(n4)
	if st.N != 4 || st.Threshold != 3 {
		t.Fatalf("after the join: %d holders, t=%d, want 4 and 3", st.N, st.Threshold)
	}
	c.restart(down)
	var fk fsm.FROSTKey
	n4.n.fsm.Read(func(s *fsm.State) { fk = *s.Keys["sig/a"].Frost() })
	c.waitFor(settleTimeout, func() (bool, string) {
		return down.n.shares.frost(st.Epoch, frostStoreID("sig/a", &fk)) != nil, fmt.Sprintf("%s has no share of sig/a in epoch %d", down.id(), st.Epoch)
	})
	var other *testNode
	for _, tn := range c.nodes {
		if tn != down && tn != n4 && tn != c.leader() {
			other = tn
			break
		}
	}
	c.stop(other)
	msg := []byte("needs the recovered share")
	sig, err := c.signThrough(down, c.signRequest("sig/a", msg))
	if err != nil || !ed25519.Verify(pub, msg, sig.Signature) {
		t.Fatalf("signing with %s's recovered share: %v", down.id(), err)
	}
	if !slices.Contains(sig.Signers, nodeIndex(t, down)) {
		t.Errorf("signers %v, want %s's index among them", sig.Signers, down.id())
	}
}

// TestDestroyedFROSTKeyLeavesNoShare: once a reshared ed25519-frost key is
// destroyed, every member erases its share of the key from its store.
func TestDestroyedFROSTKeyLeavesNoShare(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createFROST("sig/a", nil)
	n4 := c.addNode()
	c.join(n4)
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.members() {
			if f := readShareFile(t, tn.cfg.DataDir); f.Current == nil || len(f.Current.Frost) != 1 {
				return false, tn.id() + " holds no share of sig/a in its store"
			}
		}
		return true, ""
	})
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "sig/a"}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.members() {
			if f := readShareFile(t, tn.cfg.DataDir); f.Current == nil || len(f.Current.Frost) != 0 || f.Current.Share == nil {
				return false, tn.id() + " still holds a share of the destroyed sig/a (or lost its cluster share)"
			}
		}
		return true, ""
	})
}
