package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"sort"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

func ctxOp(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestGatewayReleasesNeedTheKeysAccess: a node releases for a legacy
// gateway only the keys an operator opened to that gateway, from any node.
func TestGatewayReleasesNeedTheKeysAccess(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 48)
	ct := c.seal("host/disk", secret)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "host/disk", Type: fsm.KeyTypeSecret,
		R: ct.R, Sealed: ct.Sealed, Access: &fsm.Access{Gateways: []string{fsm.GatewayKxd}}}}); err != nil {
		t.Fatal(err)
	}
	c.createSecret("host/closed", secret)
	for _, tn := range c.running() {
		got, k, err := tn.n.ReleaseFor(ctxOp(t), fsm.GatewayKxd, "host/disk", "test client")
		if err != nil || !bytes.Equal(got, secret) || k.Name != "host/disk" {
			t.Fatalf("%s: ReleaseFor: %v", tn.id(), err)
		}
	}
	n := c.anyRunning().n
	if _, _, err := n.ReleaseFor(ctxOp(t), fsm.GatewayTLV, "host/disk", "x"); KindOf(err) != KindDenied {
		t.Errorf("another gateway: %v, want denied", err)
	}
	if _, _, err := n.ReleaseFor(ctxOp(t), fsm.GatewayKxd, "host/closed", "x"); KindOf(err) != KindDenied {
		t.Errorf("a key not opened to kxd: %v, want denied", err)
	}
}

// TestTangExchangeByQuorum: a Tang key dealt to the holders answers s*X
// from every node, with one node down too; the secret is never rebuilt.
func TestTangExchangeByQuorum(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
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
	kid := "test-kid"
	tk := &fsm.TangKey{Adv: []byte(`{"payload":"e30"}`), Kid: kid, Thp: "test-thp", Threshold: st.Threshold}
	for i, h := range holders {
		sealed, err := shamir.SealP256Share(rand.Reader, h.SignKey, shares[i], TangShareContext(c.clusterID, kid))
		if err != nil {
			t.Fatal(err)
		}
		tk.Shares = append(tk.Shares, fsm.TangShare{NodeID: h.ID, Index: h.Index, PublicShare: publicShares[h.Index], Sealed: sealed})
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{Name: "tang/a", Type: fsm.KeyTypeTang,
		Public: pub, Tang: tk, Access: &fsm.Access{Gateways: []string{fsm.GatewayTang}}}}); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the uncompressed encoding of P-256's generator, which Exchange takes
	g := elliptic.Marshal(elliptic.P256(), elliptic.P256().Params().Gx, elliptic.P256().Params().Gy)
	for _, tn := range c.running() {
		got, err := tn.n.Exchange(ctxOp(t), "tang/a", g, "test")
		if err != nil || !bytes.Equal(got, pub) {
			t.Fatalf("%s: s*G = %x, %v; want the public key", tn.id(), got, err)
		}
	}
	victim := c.nodes[2]
	c.stop(victim)
	if got, err := c.anyRunning().n.Exchange(ctxOp(t), "tang/a", g, "test"); err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("with one node down: %v", err)
	}
	// The README's claim: a Tang key keeps working while t of the holders
	// it was dealt to are members, across a resharing without the others.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
		t.Fatal(err)
	}
	after := c.waitSettled(st.Epoch, c.nodes[0], c.nodes[1])
	if after.Epoch == st.Epoch {
		t.Fatalf("no resharing after the removal: epoch %d", after.Epoch)
	}
	if got, err := c.nodes[1].n.Exchange(ctxOp(t), "tang/a", g, "test"); err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("after removing a holder and resharing: %v", err)
	}
	if _, err := c.anyRunning().n.Exchange(ctxOp(t), "tang/a", []byte{0}, "test"); KindOf(err) != KindInvalid {
		t.Errorf("a point of one byte: %v, want invalid", err)
	}
}

// TestMachineUnlockCombinesOnTheClient: a machine's partials come sealed
// to its ephemeral key and combine only there; with approval required, the
// request waits as a session until an operator approves one use.
func TestMachineUnlockCombinesOnTheClient(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("luks/m1", secret)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	id := fsm.PrincipalID(pub)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddMachine, AddMachine: &fsm.Machine{ID: id, Name: "m1", PublicKey: pub,
		Keys: []string{"luks/*"}, Approval: true}}); err != nil {
		t.Fatal(err)
	}
	unlock := func(tn *testNode) ([]byte, error) {
		ephPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sg := signWith(t, id, priv, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "luks/m1", Op: fsm.OpGet, Ephemeral: ephPriv.PublicKey().Bytes()}})
		out, _, err := tn.n.MachineUnlock(ctxOp(t), sg, "192.0.2.7", 0)
		if err != nil {
			return nil, err
		}
		rctx := fsm.ReleaseContext(out.ClusterID, out.Key, out.Version, out.Epoch, sg.Payload)
		var partials []*shamir.Partial
		for _, sp := range out.Partials {
			plain, err := shamir.OpenX25519(ephPriv, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(rctx, sp.Index))
			if err != nil {
				t.Fatalf("opening the partial of share %d: %v", sp.Index, err)
			}
			var p shamir.Partial
			if err := json.Unmarshal(plain, &p); err != nil {
				t.Fatal(err)
			}
			partials = append(partials, &p)
		}
		return shamir.Open(&shamir.PublicPoly{Commits: out.Poly}, &shamir.Ciphertext{R: out.R, Sealed: out.Sealed},
			fsm.SealInfo(out.ClusterID, out.Key), partials, rctx)
	}
	n1 := c.running()[0]
	if _, err := unlock(n1); KindOf(err) != KindPendingApproval {
		t.Fatalf("before approval: %v, want pending_approval", err)
	}
	for _, tn := range c.running() {
		list, err := tn.n.Sessions(ctxOp(t))
		if err != nil || len(list) != 1 || list[0].Machine != id || list[0].Addr != "192.0.2.7" {
			t.Fatalf("%s: sessions %+v, %v", tn.id(), list, err)
		}
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: id, Key: "luks/m1", Uses: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := unlock(c.running()[1])
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("after approval: %v", err)
	}
	if _, err := unlock(n1); KindOf(err) != KindPendingApproval {
		t.Fatalf("the one use was spent: %v, want pending_approval", err)
	}
	// A holder never answers a machine's request in the clear, even to a
	// coordinator that asks.
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ephPub := eph.PublicKey().Bytes()
	sg := signWith(t, id, priv, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "luks/m1", Op: fsm.OpGet, Ephemeral: ephPub}})
	if _, err := n1.n.Release(ctxOp(t), sg); err == nil {
		t.Fatalf("a machine's request released through the operator path")
	}
	if _, _, err := n1.n.release(ctxOp(t), sg); err == nil {
		t.Fatalf("a machine's request released in the clear through the gateway path")
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRevokeMachine, RevokeMachine: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := unlock(n1); KindOf(err) != KindDenied {
		t.Fatalf("a revoked machine: %v, want denied", err)
	}
}
