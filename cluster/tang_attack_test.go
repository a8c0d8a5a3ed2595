package cluster

import (
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Attacks on Tang keys across membership changes (issue 9, hole 5): the
// disks of retired nodes, alone or with fewer than t current members',
// must not rebuild a Tang key, and a Tang key must outlive the holders it
// was dealt to.

// createTang deals a Tang key to the current holders as client.CreateTang
// does, shares sealed to their identity keys. It returns the public key
// and the sealed shares.
func (c *testCluster) createTang(name string) (pub []byte, sealed [][]byte) {
	t := c.t
	t.Helper()
	st := c.status(c.anyRunning())
	var holders []MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	sort.Slice(holders, func(i, j int) bool { return holders[i].ID < holders[j].ID })
	var indexes []uint32
	for _, h := range holders {
		indexes = append(indexes, h.Index)
	}
	pub, shares, publicShares, err := shamir.DealP256(rand.Reader, st.Threshold, indexes)
	if err != nil {
		t.Fatal(err)
	}
	kid := "kid-" + name
	tk := &fsm.TangKey{Adv: []byte(`{"payload":"e30"}`), Kid: kid, Thp: "thp-" + name, Threshold: st.Threshold}
	for i, h := range holders {
		s, err := shamir.SealP256Share(rand.Reader, h.SignKey, shares[i], TangShareContext(c.clusterID, kid))
		if err != nil {
			t.Fatal(err)
		}
		shares[i].Erase()
		sealed = append(sealed, s)
		tk.Shares = append(tk.Shares, fsm.TangShare{NodeID: h.ID, Index: h.Index, PublicShare: publicShares[h.Index], Sealed: s})
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: name, Type: fsm.KeyTypeTang,
		Public: pub, Tang: tk, Access: &fsm.Access{Gateways: []string{fsm.GatewayTang}}}}); err != nil {
		t.Fatal(err)
	}
	return pub, sealed
}

func p256Generator() []byte {
	//lint:ignore SA1019 the uncompressed encoding of P-256's generator, which Exchange takes
	return elliptic.Marshal(elliptic.P256(), elliptic.P256().Params().Gx, elliptic.P256().Params().Gy)
}

// rebuildsTang reports whether some subset of the shares interpolates to
// the secret behind pub: what a thief holding them would try.
func rebuildsTang(t *testing.T, pub []byte, shares []*shamir.P256Share) bool {
	t.Helper()
	n := elliptic.P256().Params().N
	for mask := 1; mask < 1<<len(shares); mask++ {
		var set []*shamir.P256Share
		seen := map[uint32]bool{}
		for i, sh := range shares {
			if mask&(1<<i) != 0 && !seen[sh.Index] {
				set, seen[sh.Index] = append(set, sh), true
			}
		}
		s := new(big.Int)
		for _, a := range set {
			num, den := big.NewInt(1), big.NewInt(1)
			for _, b := range set {
				if a != b {
					num.Mul(num, big.NewInt(-int64(b.Index)))
					den.Mul(den, big.NewInt(int64(a.Index)-int64(b.Index)))
				}
			}
			l := num.Mul(num, den.ModInverse(den.Mod(den, n), n))
			s.Add(s, l.Mul(l, new(big.Int).SetBytes(a.Scalar)))
		}
		s.Mod(s, n)
		if s.Sign() == 0 {
			continue
		}
		k, err := ecdh.P256().NewPrivateKey(s.FillBytes(make([]byte, 32)))
		if err == nil && bytes.Equal(k.PublicKey().Bytes(), pub) {
			return true
		}
	}
	return false
}

// tangSharesIn is every Tang share a thief of the data directory dir of
// node id opens: the share store's, and the Tang sub-shares of the deals
// in its Raft log that the keys of its identity open. It fails the test if
// any file still holds one of the sealed shares the key was created with.
func tangSharesIn(t *testing.T, dir, id string, index uint32, clusterID string, sealed [][]byte) []*shamir.P256Share {
	t.Helper()
	var forms [][]byte
	for _, s := range sealed {
		forms = append(forms, encodings(s, 3)...)
	}
	if files := filesCarrying(t, dir, forms); len(files) > 0 {
		t.Errorf("%s's data directory still holds a share sealed to its identity key: %v", id, files)
	}
	var out []*shamir.P256Share
	f := readShareFile(t, dir)
	for _, e := range []*epochShare{f.Current, f.Pending} {
		if e != nil {
			for _, sh := range e.Tang {
				out = append(out, sh)
			}
		}
	}
	var ident identity
	if err := readJSON(filepath.Join(dir, identityFile), &ident); err != nil {
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
		if json.Unmarshal(l.Data, &sg) != nil || json.Unmarshal(sg.Payload, &cmd) != nil || cmd.Type != fsm.TypeDeal {
			continue
		}
		for _, td := range cmd.Deal.Tang {
			d, err := decodeP256Deal(td.Deal)
			if err != nil {
				t.Fatal(err)
			}
			for _, priv := range ident.Keyring {
				for _, kid := range []string{"kid-tang/a"} {
					if sub, err := shamir.OpenP256Deal(d, index, priv, tangDealContext(clusterID, cmd.Deal.Round, kid)); err == nil {
						t.Errorf("a key of %s's identity opens its sub-share of %d's deal of %s in round %d", id, d.Dealer, td.Key, cmd.Deal.Round)
						clear(sub)
					}
				}
			}
		}
	}
	return out
}

// TestTangKeyFollowsMembership: a Tang key dealt to three holders still
// exchanges after two of them were replaced one by one (it stopped once
// fewer than t of its first holders were members). The first round after
// its creation reshares it to the members' round keys and erases the
// sealed shares from every disk; a removed node's share is erased with its
// epoch, and the one it held before does not combine with current ones;
// the data directories of t-1 current members with every retired node's
// rebuild nothing, where t current shares do.
func TestTangKeyFollowsMembership(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pub, sealed := c.createTang("tang/a")
	g := p256Generator()
	exchange := func(tn *testNode) {
		t.Helper()
		got, err := tn.n.Exchange(ctxOp(t), "tang/a", g, "test")
		if err != nil || !bytes.Equal(got, pub) {
			t.Fatalf("%s: s*G = %x, %v; want the public key", tn.id(), got, err)
		}
	}
	exchange(c.nodes[0])

	var retired []string // copies of retired nodes' data directories
	var retiredNodes []*testNode
	var before []*shamir.P256Share // removed nodes' Tang shares, copied before their removal
	originals := slicesCloneNodes(c.nodes)
	for round := range 2 {
		nn := c.addNode()
		c.join(nn)
		st := c.status(nn)
		// The round migrated the key: nothing is sealed in the state, and
		// every node erases the log that carried it.
		var destroyed uint64
		nn.n.fsm.Read(func(s *fsm.State) {
			destroyed = s.Destroyed
			for _, sh := range s.Keys["tang/a"].Tang().Shares {
				if len(sh.Sealed) > 0 {
					t.Errorf("after round %d the state still holds %s's sealed share", round, sh.NodeID)
				}
			}
		})
		c.waitFor(settleTimeout, func() (bool, string) {
			for _, tn := range c.members() {
				if tn.n.ErasedThrough() < destroyed {
					return false, fmt.Sprintf("%s has not erased its log through %d", tn.id(), destroyed)
				}
			}
			return true, ""
		})
		exchange(nn)

		// Replace an original holder that does not lead (the harness
		// removes followers).
		var victim *testNode
		for _, tn := range originals {
			if tn != c.leader() && !slicesContainsNode(retiredNodes, tn) {
				victim = tn
				break
			}
		}
		vIndex := nodeIndex(t, victim)
		c.waitFor(settleTimeout, func() (bool, string) {
			return victim.n.shares.tang(st.Epoch, "kid-tang/a") != nil, victim.id() + " holds no tang share in its store"
		})
		for _, sh := range readShareFile(t, copyDir(t, victim.cfg.DataDir)).Current.Tang {
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
		if got := tangSharesIn(t, dir, victim.id(), vIndex, c.clusterID, sealed); len(got) > 0 {
			t.Errorf("the removed %s's data directory holds %d tang shares", victim.id(), len(got))
		}
		retired, retiredNodes = append(retired, dir), append(retiredNodes, victim)
		for _, tn := range staying {
			exchange(tn)
		}
	}
	current := c.members()
	if len(current) != 3 {
		t.Fatalf("%d members, want 3", len(current))
	}
	for _, tn := range current {
		if slicesContainsNode(retiredNodes, tn) {
			t.Fatalf("retired %s is still a member", tn.id())
		}
	}
	st := c.status(current[0])
	var kept []*shamir.P256Share
	for _, tn := range current {
		sh := tn.n.shares.tang(st.Epoch, "kid-tang/a")
		if sh == nil {
			t.Fatalf("%s holds no share of tang/a in epoch %d", tn.id(), st.Epoch)
		}
		kept = append(kept, sh)
	}
	if !rebuildsTang(t, pub, kept[:st.Threshold]) {
		t.Fatal("t current shares do not rebuild the key: the test's interpolation is wrong")
	}
	// A removed node's share from before its removal with t-1 current ones.
	if rebuildsTang(t, pub, append(append([]*shamir.P256Share{}, before...), kept[:st.Threshold-1]...)) {
		t.Fatal("removed nodes' shares from before their removal combine with current ones into the key")
	}
	// The disks: t-1 current members' with every retired node's.
	var stolen []*shamir.P256Share
	for _, tn := range current[:st.Threshold-1] {
		c.stop(tn)
		stolen = append(stolen, tangSharesIn(t, copyDir(t, tn.cfg.DataDir), tn.id(), nodeIndex(t, tn), c.clusterID, sealed)...)
	}
	for i, dir := range retired {
		stolen = append(stolen, tangSharesIn(t, dir, retiredNodes[i].id(), 0, c.clusterID, sealed)...)
	}
	if len(stolen) == 0 {
		t.Fatal("the current members' disks hold no tang share: the test looks in the wrong place")
	}
	if rebuildsTang(t, pub, stolen) {
		t.Fatalf("%d tang shares from t-1 current and %d retired data directories rebuild the key", len(stolen), len(retired))
	}
}

func slicesCloneNodes(list []*testNode) []*testNode { return append([]*testNode(nil), list...) }

func slicesContainsNode(list []*testNode, tn *testNode) bool {
	for _, x := range list {
		if x == tn {
			return true
		}
	}
	return false
}

// TestBadTangDealIsComplainedAgainst: a holder deals one member a Tang
// sub-share that does not open, first. The member's complaint against
// that Tang deal disqualifies the dealer, the round completes with the
// other holders' deals, and the member's new share serves exchanges.
func TestBadTangDealIsComplainedAgainst(t *testing.T) {
	c := newTestCluster(t, 3)
	pub, _ := c.createTang("tang/a")
	cheat, victim := c.nodes[2], c.nodes[1]
	cheatIndex, victimIndex := nodeIndex(t, cheat), nodeIndex(t, victim)
	epoch := c.status(c.nodes[0]).Epoch
	setHooks(t, &reshareHooks{
		gate: func(id string, r *fsm.Reshare) bool {
			return id == cheat.id() || r.HasDealt(cheatIndex) || strings.Contains(fmt.Sprint(r.Disqualified), fmt.Sprint(cheatIndex))
		},
		tamperTang: func(id, key string, d *shamir.P256Deal) {
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
	victim.n.fsm.Read(func(s *fsm.State) { last = cloneRound(s.LastRound) })
	if last == nil || last.HasDealt(cheatIndex) || !strings.Contains(fmt.Sprint(last.Disqualified), fmt.Sprint(cheatIndex)) {
		t.Fatalf("the round: %+v, want %s disqualified by the complaint against its tang deal", last, cheat.id())
	}
	if victim.n.shares.tang(st.Epoch, "kid-tang/a") == nil {
		t.Fatalf("%s holds no share of tang/a in epoch %d", victim.id(), st.Epoch)
	}
	// With the cheat down, an exchange needs the victim's share: t' = 3 of
	// the three members left.
	c.stop(cheat)
	got, err := victim.n.Exchange(ctxOp(t), "tang/a", p256Generator(), "test")
	if err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("exchange with the victim's new share: %x, %v", got, err)
	}
}
