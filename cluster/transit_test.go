package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// Transit keys (transit.go, docs/transit.md), on real raft on disk.

// transitDeal deals a fresh version to the current holders, as the
// client does.
func (c *testCluster) transitDeal(name string) *fsm.FROSTKey {
	c.t.Helper()
	st := c.status(c.anyRunning())
	var holders []MemberStatus
	for _, m := range st.Members {
		if m.Holder {
			holders = append(holders, m)
		}
	}
	fk, err := api.NewTransitSharing(rand.Reader, name, st.ClusterID, st.Epoch, st.Threshold, holders)
	if err != nil {
		c.t.Fatal(err)
	}
	return fk
}

// createTransit creates a transit key as the client does.
func (c *testCluster) createTransit(name, cipher string, derived bool) {
	c.t.Helper()
	ck := &fsm.CreateKey{Name: name, Type: fsm.KeyTypeTransit, Transit: &fsm.TransitKey{Cipher: cipher, Derived: derived,
		Versions: []fsm.TransitVersion{{Sharing: c.transitDeal(name)}}}}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: ck}); err != nil {
		c.t.Fatalf("creating %q: %v", name, err)
	}
	for _, tn := range c.running() {
		c.waitHasKey(tn, name)
	}
}

// transitMeta is key name's metadata as the leader has applied it.
func (c *testCluster) transitMeta(name string) *fsm.Key {
	return storedKey(c.t, c.leader(), name).Metadata()
}

func (c *testCluster) encrypt(name string, plaintext, context []byte) string {
	c.t.Helper()
	ct, err := api.TransitEncrypt(rand.Reader, c.transitMeta(name), plaintext, context)
	if err != nil {
		c.t.Fatal(err)
	}
	return ct
}

// decryptCall is one decryption request through a node, and what the
// caller needs to open its reply.
type decryptCall struct {
	sg    *fsm.Signed
	eph   *ecdh.PrivateKey
	items []*api.TransitCiphertext
	ctxs  [][]byte
	reply *api.TransitDecryptReply
	err   error
}

func (c *testCluster) decryptThrough(tn *testNode, ref string, cts []string, ctxs [][]byte, exclude ...uint32) *decryptCall {
	c.t.Helper()
	call := &decryptCall{ctxs: ctxs}
	var points []fsm.TransitPoint
	for i, s := range cts {
		ct, err := api.ParseTransitCiphertext(s)
		if err != nil {
			c.t.Fatal(err)
		}
		call.items = append(call.items, ct)
		points = append(points, ct.Point(ctxs[i]))
	}
	var err error
	if call.eph, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		c.t.Fatal(err)
	}
	call.sg = c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: ref, Op: fsm.OpDecrypt,
		Ephemeral: call.eph.PublicKey().Bytes(), Points: points, Exclude: exclude}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call.reply, call.err = tn.n.TransitDecrypt(ctx, call.sg)
	return call
}

func (c *testCluster) open(call *decryptCall, name string) ([]api.TransitResult, error) {
	c.t.Helper()
	if call.err != nil {
		c.t.Fatalf("decrypting: %v", call.err)
	}
	return api.OpenTransitDecrypt(call.reply, c.clusterID, c.transitMeta(name), call.items, call.ctxs, call.sg.Payload, call.eph)
}

// TestTransitDecryptsThroughEveryNode: ciphertexts made on the client
// with a version's public key decrypt through every node, a batch in one
// request, each item with its own result: a good item opens, a ciphertext
// of another key or context (wrong_key), a tampered one (tampered) and one
// of a version the key does not have (not_found) each fail alone, each
// with its own kind. A rotation encrypts with the new version and the
// old one still decrypts, until min_decryption_version passes it. A
// request may name the key by its ID.
func TestTransitDecryptsThroughEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	c.createTransit("enc/b", shamir.CipherChaCha20, true)
	good := c.encrypt("enc/a", []byte("attack at dawn"), nil)
	other := c.encrypt("enc/b", []byte("of another key"), []byte("tenant-1"))
	otherAsA := "kq:v1:" + strings.SplitN(other, ":", 3)[2] // same version number, another key
	ct, _ := api.ParseTransitCiphertext(good)
	ct.Sealed = bytes.Clone(ct.Sealed)
	ct.Sealed[len(ct.Sealed)-1] ^= 1
	tampered := ct.String()
	ct.Version = 9
	missing := ct.String()
	for _, tn := range c.nodes {
		call := c.decryptThrough(tn, "enc/a", []string{good, otherAsA, tampered, missing}, make([][]byte, 4))
		res, err := c.open(call, "enc/a")
		if err != nil {
			t.Fatalf("through %s: %v", tn.id(), err)
		}
		if string(res[0].Plaintext) != "attack at dawn" || res[0].Error != nil {
			t.Errorf("through %s: the good item gave %q, %v", tn.id(), res[0].Plaintext, res[0].Error)
		}
		for i, kind := range map[int]Kind{1: KindWrongKey, 2: KindTampered, 3: KindNotFound} {
			if res[i].Error == nil || res[i].Error.Kind != kind || res[i].Plaintext != nil {
				t.Errorf("through %s: item %d gave %q, %v; want a %s error", tn.id(), i, res[i].Plaintext, res[i].Error, kind)
			}
		}
	}
	// A derived key: the context is bound. One batch holds a good item,
	// another context's, another key's, a tampered body and a missing
	// version: each gets its own kind, the good one opens.
	ct, _ = api.ParseTransitCiphertext(other)
	ct.Sealed = bytes.Clone(ct.Sealed)
	ct.Sealed[0] ^= 1
	otherTampered := ct.String()
	ct.Version = 9
	otherMissing := ct.String()
	t1, t2 := []byte("tenant-1"), []byte("tenant-2")
	call := c.decryptThrough(c.nodes[0], "enc/b", []string{other, other, good, otherTampered, otherMissing}, [][]byte{t1, t2, t1, t1, t1})
	res, err := c.open(call, "enc/b")
	if err != nil || string(res[0].Plaintext) != "of another key" || res[0].Error != nil {
		t.Fatalf("derived: %+v, %v", res, err)
	}
	for i, kind := range map[int]Kind{1: KindWrongKey, 2: KindWrongKey, 3: KindTampered, 4: KindNotFound} {
		if res[i].Error == nil || res[i].Error.Kind != kind || res[i].Plaintext != nil {
			t.Errorf("derived: item %d gave %q, %v; want a %s error", i, res[i].Plaintext, res[i].Error, kind)
		}
	}

	// Rotate: version 2 encrypts; version 1 still decrypts.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: "enc/a", Sharing: c.transitDeal("enc/a")}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return storedKey(t, c.leader(), "enc/a").Version == 2, "the leader has not applied the rotation"
	})
	newer := c.encrypt("enc/a", []byte("after the rotation"), nil)
	if !strings.HasPrefix(newer, "kq:v2:") {
		t.Fatalf("after a rotation the ciphertext is %q, want version 2", newer[:8])
	}
	id := c.transitMeta("enc/a").ID
	res, err = c.open(c.decryptThrough(c.nodes[1], id, []string{good, newer}, make([][]byte, 2)), "enc/a")
	if err != nil || string(res[0].Plaintext) != "attack at dawn" || string(res[1].Plaintext) != "after the rotation" {
		t.Fatalf("both versions by ID: %+v, %v", res, err)
	}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeConfigureKey, ConfigureKey: &fsm.ConfigureKey{Name: "enc/a", MinDecryptionVersion: 2}}); err != nil {
		t.Fatal(err)
	}
	res, err = c.open(c.decryptThrough(c.nodes[2], "enc/a", []string{good, newer}, make([][]byte, 2)), "enc/a")
	if err != nil || res[0].Error == nil || res[0].Error.Kind != KindDenied || string(res[1].Plaintext) != "after the rotation" {
		t.Fatalf("below min_decryption_version: %+v, %v", res, err)
	}
}

// shareIndex is tn's share index.
func (c *testCluster) shareIndex(tn *testNode) uint32 {
	var i uint32
	c.leader().n.fsm.Read(func(s *fsm.State) { i = s.Nodes[tn.id()].Index })
	return i
}

// TestTransitLyingHolder: a holder whose partials are wrong is named by
// the caller (its proof fails against its public share), and a request
// that leaves it out completes with another holder.
func TestTransitLyingHolder(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	good := c.encrypt("enc/a", []byte("attack at dawn"), nil)
	liar := c.nodes[1]
	liar.n.transitHook = func(answers []api.TransitItemPartial) {
		for _, a := range answers {
			if a.Partial != nil {
				a.Partial.Value = bytes.Clone(c.transitMeta("enc/a").Transit().Latest().Sharing.Commits[0])
			}
		}
	}
	// Coordinated by the liar, whose own answer is always among t.
	_, err := c.open(c.decryptThrough(liar, "enc/a", []string{good}, make([][]byte, 1)), "enc/a")
	var bad api.BadAnswers
	if !errors.As(err, &bad) || bad[c.shareIndex(liar)] == "" || len(bad) != 1 {
		t.Fatalf("a lying holder's partial: %v; want it named alone", err)
	}
	res, err := c.open(c.decryptThrough(liar, "enc/a", []string{good}, make([][]byte, 1), c.shareIndex(liar)), "enc/a")
	if err != nil || string(res[0].Plaintext) != "attack at dawn" {
		t.Fatalf("without the liar: %+v, %v", res, err)
	}
}

// TestTransitLyingCoordinator: what a coordinator relays is checked by the
// caller: an answer it changed, the answers of another request, a changed
// epoch (the proofs' context) are each refused and named; with fewer than
// t answers no item opens. It never sees a plaintext: the caller sends
// only the ciphertexts' points.
func TestTransitLyingCoordinator(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	good := c.encrypt("enc/a", []byte("attack at dawn"), nil)
	for name, lie := range map[string]func(call *decryptCall){
		"a changed answer": func(call *decryptCall) {
			p := &call.reply.Partials[0]
			p.Sealed = bytes.Clone(p.Sealed)
			p.Sealed[0] ^= 1
		},
		"another request's answers": func(call *decryptCall) {
			call.reply = c.decryptThrough(c.nodes[0], "enc/a", []string{good}, make([][]byte, 1)).reply
		},
		"another epoch": func(call *decryptCall) { call.reply.Epoch++ },
		"a duplicated answer": func(call *decryptCall) {
			call.reply.Partials[1] = call.reply.Partials[0]
		},
	} {
		call := c.decryptThrough(c.nodes[0], "enc/a", []string{good}, make([][]byte, 1))
		lie(call)
		res, err := c.open(call, "enc/a")
		var bad api.BadAnswers
		if !errors.As(err, &bad) || res != nil {
			t.Errorf("%s: %v, %+v; want the answers refused", name, err, res)
		}
	}
	call := c.decryptThrough(c.nodes[0], "enc/a", []string{good}, make([][]byte, 1))
	call.reply.Partials = call.reply.Partials[:1]
	res, err := c.open(call, "enc/a")
	if err != nil || res[0].Error == nil || res[0].Error.Kind != KindNoQuorum || res[0].Plaintext != nil {
		t.Fatalf("fewer than t answers: %+v, %v", res, err)
	}
}

// transitShares are the shares of version v of transit key name in the
// store of data directory dir (a copy), current and pending.
func transitShares(t *testing.T, dir, name string, v uint64) []*shamir.Share {
	t.Helper()
	var out []*shamir.Share
	f := readShareFile(t, dir)
	for _, e := range []*epochShare{f.Current, f.Pending} {
		if e != nil {
			for sid, sh := range e.Frost {
				if strings.HasPrefix(sid, fsm.SharingRef(name, v)+"/") {
					out = append(out, sh)
				}
			}
		}
	}
	return out
}

// combineAt is what shares combine to at point E: s*E when they are t
// shares of the same sharing.
func combineAt(t testing.TB, E []byte, threshold int, shares []*shamir.Share) []byte {
	t.Helper()
	parts := map[uint32][]byte{}
	for _, sh := range shares {
		p, err := shamir.ComputePartial(rand.Reader, sh, E, []byte("test"))
		if err != nil {
			t.Fatal(err)
		}
		parts[p.Index] = p.Value
	}
	K, err := shamir.CombinePoints(parts, threshold)
	if err != nil {
		t.Fatal(err)
	}
	return K
}

// TestTransitKeyFollowsMembership: every version of a transit key is
// reshared with the cluster key when the members change (the same
// resharing path as FROST keys: fsm/sharings.go), so old ciphertexts of
// every version still decrypt through the new members; the share a
// removed node held before its removal, with t-1 current shares, does not
// give the key's s*E.
func TestTransitKeyFollowsMembership(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	ct1 := c.encrypt("enc/a", []byte("version one"), nil)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: "enc/a", Sharing: c.transitDeal("enc/a")}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return storedKey(t, c.leader(), "enc/a").Version == 2, "the leader has not applied the rotation"
	})
	ct2 := c.encrypt("enc/a", []byte("version two"), nil)
	decrypts := func(tn *testNode, when string) {
		t.Helper()
		res, err := c.open(c.decryptThrough(tn, "enc/a", []string{ct1, ct2}, make([][]byte, 2)), "enc/a")
		if err != nil || string(res[0].Plaintext) != "version one" || string(res[1].Plaintext) != "version two" {
			t.Fatalf("%s, through %s: %+v, %v", when, tn.id(), res, err)
		}
	}
	decrypts(c.nodes[0], "before")

	nn := c.addNode()
	c.join(nn)
	st := c.status(nn)
	nn.n.fsm.Read(func(s *fsm.State) {
		for _, v := range s.Keys["enc/a"].Transit().Versions {
			if v.Sharing.Epoch != s.Epoch || len(v.Sharing.Shares) != 4 || len(v.Sharing.Shares[0].Sealed) != 0 {
				t.Errorf("after the join version %d is of epoch %d (state %d), %d holders: want reshared to 4", v.Version, v.Sharing.Epoch, s.Epoch, len(v.Sharing.Shares))
			}
		}
	})
	decrypts(nn, "after the join")

	victim := c.nodes[1]
	if victim == c.leader() {
		victim = c.nodes[2]
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return len(transitShares(t, victim.cfg.DataDir, "enc/a", 1)) > 0, victim.id() + " holds no transit share in its store"
	})
	before := transitShares(t, copyDir(t, victim.cfg.DataDir), "enc/a", 1)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: victim.id()}); err != nil {
		t.Fatalf("removing %s: %v", victim.id(), err)
	}
	var staying []*testNode
	for _, tn := range c.members() {
		if tn != victim {
			staying = append(staying, tn)
		}
	}
	st = c.waitSettled(st.Epoch, staying...)
	for _, tn := range staying {
		decrypts(tn, "after the removal")
	}

	// The key's s*E for version 1's ciphertext, from t current shares,
	// and what the removed node's old share gives with t-1 of them.
	parsed, _ := api.ParseTransitCiphertext(ct1)
	var current []*shamir.Share
	for _, tn := range staying {
		var fk fsm.FROSTKey
		tn.n.fsm.Read(func(s *fsm.State) { fk = *s.Keys["enc/a"].Transit().Version(1).Sharing })
		if sh := tn.n.shares.frost(st.Epoch, frostStoreID(fsm.SharingRef("enc/a", 1), &fk)); sh != nil {
			current = append(current, sh)
		}
	}
	if len(current) < st.Threshold || len(before) == 0 {
		t.Fatalf("%d current shares (t=%d), %d of the removed node", len(current), st.Threshold, len(before))
	}
	want := combineAt(t, parsed.E, st.Threshold, current[:st.Threshold])
	mixed := append(append([]*shamir.Share{}, before[0]), current[:st.Threshold-1]...)
	if slices.ContainsFunc(mixed[1:], func(sh *shamir.Share) bool { return sh.Index == before[0].Index }) {
		mixed = append([]*shamir.Share{before[0]}, current[1:st.Threshold]...)
	}
	if got := combineAt(t, parsed.E, st.Threshold, mixed); bytes.Equal(got, want) {
		t.Fatal("the removed node's share from before its removal combines with t-1 current shares to the key's s*E")
	}
}
