package fsm_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// cryptoChecker is the harness's checker with real threshold cryptography
// behind it: each round's commitments and shares come from shamir (a
// fresh DKG, then resharings that keep the cluster key), drawn from a
// generator seeded by the round and its deals, so that every replica of a
// history, and every replay of it, gets the same ones. Deals are accepted
// when they start with "ok": a forged history deals "ok-forged" and gets
// its own key. It verifies checkpoint partials as the cluster does.
type cryptoChecker struct {
	fakeChecker
	old    [][]byte                            // oldPoly of the round being dealt
	shares map[string]map[uint32]*shamir.Share // by commitments, the members' shares
}

func newCryptoChecker() *cryptoChecker {
	return &cryptoChecker{shares: map[string]map[uint32]*shamir.Share{}}
}

func polyKey(poly [][]byte) string { return string(bytes.Join(poly, nil)) }

func (c *cryptoChecker) CheckDeal(r *fsm.Reshare, oldPoly [][]byte, dealer uint32, deal []byte) error {
	if !strings.HasPrefix(string(deal), "ok") {
		return fmt.Errorf("deal does not verify")
	}
	c.old = oldPoly
	return nil
}

// drbg is a deterministic randomness source: SHA-256 in counter mode.
type drbg struct {
	seed [32]byte
	n    uint64
	buf  []byte
}

func (d *drbg) Read(p []byte) (int, error) {
	for i := range p {
		if len(d.buf) == 0 {
			d.n++
			b := sha256.Sum256(binary.BigEndian.AppendUint64(d.seed[:], d.n))
			d.buf = b[:]
		}
		p[i], d.buf = d.buf[0], d.buf[1:]
	}
	return len(p), nil
}

func (c *cryptoChecker) CombinePublic(r *fsm.Reshare) ([][]byte, error) {
	seed, _ := json.Marshal(r)
	rnd := &drbg{seed: sha256.Sum256(seed)}
	var recips []shamir.Recipient
	privs := map[uint32][]byte{}
	for _, m := range r.Members {
		priv, pub, err := shamir.GenerateEncryptionKey(rnd)
		if err != nil {
			return nil, err
		}
		privs[m.Index] = priv
		recips = append(recips, shamir.Recipient{Index: m.Index, EncPub: pub})
	}
	old := c.shares[polyKey(c.old)]
	var deals []*shamir.Deal
	for _, d := range r.Deals {
		var deal *shamir.Deal
		var err error
		if r.Fresh {
			deal, err = shamir.NewFreshDeal(rnd, d.Dealer, r.Threshold, recips, nil)
		} else {
			deal, err = shamir.NewReshareDeal(rnd, old[d.Dealer], r.Threshold, recips, nil)
		}
		if err != nil {
			return nil, err
		}
		deals = append(deals, deal)
	}
	combine := shamir.CombineReshare
	if r.Fresh {
		combine = shamir.CombineFresh
	}
	shares := map[uint32]*shamir.Share{}
	var poly *shamir.PublicPoly
	for _, m := range r.Members {
		mine := map[uint32][]byte{}
		for _, d := range deals {
			sub, err := shamir.OpenDeal(d, m.Index, privs[m.Index], nil)
			if err != nil {
				return nil, err
			}
			mine[d.Dealer] = sub
		}
		sh, p, err := combine(deals, mine, m.Index)
		if err != nil {
			return nil, err
		}
		shares[m.Index], poly = sh, p
	}
	c.shares[polyKey(poly.Commits)] = shares
	return poly.Commits, nil
}

func toShamir(p *fsm.Partial) *shamir.Partial {
	return &shamir.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}
}

func (c *cryptoChecker) VerifyCheckpointPartial(poly [][]byte, msg []byte, p *fsm.Partial) error {
	pp := &shamir.PublicPoly{Commits: poly}
	if err := pp.Validate(); err != nil {
		return err
	}
	R, err := shamir.HashToPoint(fsm.CheckpointLabel, msg)
	if err != nil {
		return err
	}
	return shamir.VerifyPartial(pp, R, toShamir(p), msg)
}

// checkpointPartial is what share holder sh computes over a checkpoint.
func checkpointPartial(t testing.TB, sh *shamir.Share, clusterID string, index uint64, hash []byte) *fsm.Partial {
	t.Helper()
	msg := fsm.CheckpointMessage(clusterID, index, hash)
	R, err := shamir.HashToPoint(fsm.CheckpointLabel, msg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := shamir.ComputePartial(rand.Reader, sh, R, msg)
	if err != nil {
		t.Fatal(err)
	}
	return &fsm.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}
}

func attestCmd(index uint64, hash []byte, p *fsm.Partial) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeAttest, Attest: &fsm.Attest{Index: index, Hash: hash, Partial: p}}
}

// checkpointEvery is the tests' checkpoint interval.
const checkpointEvery = 8

func newCryptoFSM(c *cryptoChecker) *fsm.FSM {
	f := fsm.New(c)
	f.CheckpointEvery = checkpointEvery
	return f
}

// newCryptoHarness is a harness whose FSM has real cryptography and
// checkpoints every checkpointEvery entries.
func newCryptoHarness(t testing.TB) (*harness, *cryptoChecker) {
	c := newCryptoChecker()
	return &harness{t: t, checker: &c.fakeChecker, f: newCryptoFSM(c), at: t0}, c
}

// attestPending has the holders of the current epoch attest the newest
// pending checkpoint, in share index order, until it is certified; it
// returns the checkpoint's index.
func (h *harness) attestPending(c *cryptoChecker) uint64 {
	h.t.Helper()
	s := h.state()
	if len(s.Pending) == 0 {
		h.t.Fatal("no checkpoint is pending")
	}
	pc := s.Pending[len(s.Pending)-1]
	shares := c.shares[polyKey(s.Poly)]
	for _, n := range s.Holders() {
		if st := h.state(); st.Checkpoint != nil && st.Checkpoint.Index == pc.Index {
			break
		}
		h.must(h.nodeNamed(n.ID), attestCmd(pc.Index, pc.Hash, checkpointPartial(h.t, shares[n.Index], s.ClusterID, pc.Index, pc.Hash)))
	}
	if st := h.state(); st.Checkpoint == nil || st.Checkpoint.Index != pc.Index {
		h.t.Fatalf("checkpoint %d is not certified after every holder attested", pc.Index)
	}
	return pc.Index
}

// certified: three holders (t = 2) with real shares, a checkpoint
// certified, and entries applied after it.
func certified(h *harness, c *cryptoChecker) {
	threeHolders(h)
	// db/0 at least, in the checkpoint: the tests name it and edit keys.
	h.must(admin, createKeyCmd("db/0"))
	created := h.index
	for i := 1; ; i++ {
		s := h.state()
		if n := len(s.Pending); n > 0 && s.Pending[n-1].Epoch == s.Epoch && s.Pending[n-1].Index >= created {
			break
		}
		h.must(admin, createKeyCmd(fmt.Sprintf("db/%d", i)))
	}
	h.attestPending(c)
	h.must(admin, createKeyCmd("db/after"))
	h.do(stranger, createKeyCmd("db/refused"))
}

func clusterKey(h *harness) []byte { return h.state().PublicKey() }

// TestCheckpointCertified: t holders' partials certify a checkpoint; a
// partial from a non-holder, over another hash, from the wrong share, or
// twice, is refused.
func TestCheckpointCertified(t *testing.T) {
	h, c := newCryptoHarness(t)
	threeHolders(h)
	for s := h.state(); len(s.Pending) == 0 || s.Pending[len(s.Pending)-1].Epoch != s.Epoch; s = h.state() {
		h.must(admin, createKeyCmd(fmt.Sprintf("db/%d", h.index)))
	}
	s := h.state()
	pc := s.Pending[len(s.Pending)-1]
	shares := c.shares[polyKey(s.Poly)]
	n1 := s.Nodes[node(1).ID]
	good := checkpointPartial(t, shares[n1.Index], s.ClusterID, pc.Index, pc.Hash)
	other := s.Nodes[node(2).ID]
	for name, tc := range map[string]struct {
		p    principal
		cmd  *fsm.Command
		code fsm.Code
	}{
		"operator":       {admin, attestCmd(pc.Index, pc.Hash, good), fsm.CodeBadSignature},
		"other share":    {node(2), attestCmd(pc.Index, pc.Hash, good), fsm.CodeInvalid},
		"other hash":     {node(1), attestCmd(pc.Index, make([]byte, 32), good), fsm.CodeConflict},
		"other index":    {node(1), attestCmd(pc.Index+1, pc.Hash, good), fsm.CodeState},
		"forged proof":   {node(2), attestCmd(pc.Index, pc.Hash, &fsm.Partial{Index: other.Index, Value: good.Value, Challenge: good.Challenge, Response: good.Response}), fsm.CodeBadSignature},
		"no partial":     {node(1), attestCmd(pc.Index, pc.Hash, nil), fsm.CodeInvalid},
		"proof for hash": {node(1), attestCmd(pc.Index, pc.Hash, checkpointPartial(t, shares[n1.Index], s.ClusterID, pc.Index, make([]byte, 32))), fsm.CodeBadSignature},
	} {
		before := h.snapshot()
		if res := h.do(tc.p, tc.cmd); codeOf(res) != tc.code {
			t.Errorf("%s: %v, want %s", name, res.Error, tc.code)
		}
		// The index moving on may take the next checkpoint.
		assertUnchanged(t, before, h.snapshot(), "pending_checkpoints")
	}
	h.must(node(1), attestCmd(pc.Index, pc.Hash, good))
	if res := h.do(node(1), attestCmd(pc.Index, pc.Hash, checkpointPartial(t, shares[n1.Index], s.ClusterID, pc.Index, pc.Hash))); codeOf(res) != fsm.CodeConflict {
		t.Errorf("a second partial of share %d: %v, want a conflict", n1.Index, res.Error)
	}
	if h.state().Checkpoint != nil {
		t.Fatal("one partial certified a checkpoint of a 2-of-3 key")
	}
	n2 := h.state().Nodes[node(2).ID]
	h.must(node(2), attestCmd(pc.Index, pc.Hash, checkpointPartial(t, shares[n2.Index], s.ClusterID, pc.Index, pc.Hash)))
	got := h.state().Checkpoint
	if got == nil || got.Index != pc.Index || !bytes.Equal(got.Hash, pc.Hash) || len(got.Partials) != 2 || !bytes.Equal(got.Poly[0], clusterKey(h)) {
		t.Fatalf("certified checkpoint %+v, want index %d with 2 partials", got, pc.Index)
	}
	// The checkpoint is what a replica that applied the same log hashed.
	g := newCryptoFSM(c)
	for _, e := range h.log {
		if e.index > pc.Index {
			break
		}
		g.Apply(e.index, e.at, e.data)
	}
	var b []byte
	g.Read(func(s *fsm.State) { s.Pending = s.Pending[:len(s.Pending)-1]; b, _ = json.Marshal(s) })
	if _, sum, err := fsm.CheckpointHash(b); err != nil || !bytes.Equal(sum[:], pc.Hash) {
		t.Errorf("the checkpoint's hash is not the state hash at index %d (%v)", pc.Index, err)
	}
}

// TestSnapshotWithCheckpointRestores: an honest snapshot (certified
// checkpoint and the entries after it) restores on a fresh replica with
// the pinned key, to the same state, which goes on like the original.
func TestSnapshotWithCheckpointRestores(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	snap := snapshotFor(t, h.f)
	var sn fsm.Snap
	json.Unmarshal(snap, &sn)
	if sn.Certificate == nil || len(sn.Entries) >= len(h.log) {
		t.Fatalf("snapshot has certificate %v and %d of %d entries: no checkpoint in it", sn.Certificate, len(sn.Entries), len(h.log))
	}
	f := newCryptoFSM(c)
	f.PinClusterKey(clusterKey(h))
	r, err := f.RestoreSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if r.TOFU || r.Checkpoint != sn.Certificate.Index || r.Applied != h.index {
		t.Errorf("restored %+v", r)
	}
	if hashOf(t, f) != hashOf(t, h.f) {
		t.Fatalf("restored state differs:\n%s\n%s", snapshotOf(t, f), h.snapshot())
	}
	if !bytes.Equal(snapshotFor(t, f), snap) {
		t.Errorf("the restored replica's snapshot differs from the one it restored")
	}
	// It goes on like the original, through the next checkpoint.
	for range 2 * checkpointEvery {
		e := h.entry(admin, createKeyCmd(fmt.Sprintf("db/next%d", h.index)))
		h.apply(e)
		f.Apply(h.index, h.at, e)
	}
	h.attestPending(c)
	for _, e := range h.log[len(h.log)-2:] {
		f.Apply(e.index, e.at, e.data)
	}
	if hashOf(t, f) != hashOf(t, h.f) || !bytes.Equal(snapshotFor(t, f), snapshotFor(t, h.f)) {
		t.Fatalf("the restored replica diverged")
	}

	// Without a pin, the same snapshot restores on trust, and says so.
	g := newCryptoFSM(c)
	if r, err := g.RestoreSnapshot(snap); err != nil || !r.TOFU {
		t.Errorf("unpinned restore: %+v, %v; want TOFU", r, err)
	}
}

// forge decodes an honest snapshot, lets edit change it and encodes it.
func forge(t *testing.T, snap []byte, edit func(*fsm.Snap)) []byte {
	t.Helper()
	var sn fsm.Snap
	if err := json.Unmarshal(snap, &sn); err != nil {
		t.Fatal(err)
	}
	edit(&sn)
	b, err := json.Marshal(&sn)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stateHash is the state hash of a checkpoint's state encoding, as a
// holder certifies it.
func stateHash(t *testing.T, checkpoint []byte) [32]byte {
	t.Helper()
	_, sum, err := fsm.CheckpointHash(checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// stateAt is the state encoding a replica that applied log up to index
// has.
func stateAt(t *testing.T, c *cryptoChecker, log []logEntry, index uint64) []byte {
	t.Helper()
	g := newCryptoFSM(c)
	for _, e := range log {
		if e.index <= index {
			g.Apply(e.index, e.at, e.data)
		}
	}
	b, err := g.StateBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withEve is a checkpoint state with the stranger made an admin.
func withEve(t *testing.T, state []byte) []byte {
	t.Helper()
	var st map[string]json.RawMessage
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	var ops map[string]*fsm.Operator
	json.Unmarshal(st["operators"], &ops)
	ops[stranger.ID] = operatorSpec(stranger, "eve", true)
	st["operators"], _ = json.Marshal(ops)
	b, _ := json.Marshal(st)
	return b
}

// withNonces is a state encoding whose nonces edit changed: a sender that
// drops a spent nonce, or moves its expiry earlier, would let a command
// signed before the checkpoint be applied again. The state must hold a
// nonce to change.
func withNonces(t *testing.T, state []byte, edit func(map[string]int64)) []byte {
	t.Helper()
	var st map[string]json.RawMessage
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	var nonces map[string]int64
	json.Unmarshal(st["nonces"], &nonces)
	if len(nonces) == 0 {
		t.Fatal("the checkpoint's state holds no nonce to change")
	}
	edit(nonces)
	st["nonces"], _ = json.Marshal(nonces)
	b, _ := json.Marshal(st)
	return b
}

// withKeyRepeated is a state encoding whose first key is followed by
// times copies of itself at version 99, in the keys' object: a decoder
// that took the last of a duplicated name would keep the copy, and LtHash,
// which sums modulo 2^16, would not see 2^16 copies of an entry.
func withKeyRepeated(t *testing.T, state []byte, times int) []byte {
	t.Helper()
	var st map[string]json.RawMessage
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	json.Unmarshal(st["keys"], &keys)
	names := slices.Sorted(maps.Keys(keys))
	if len(names) == 0 {
		t.Fatal("no key to repeat")
	}
	var k fsm.Key
	json.Unmarshal(keys[names[0]], &k)
	k.Version = 99
	edited, _ := json.Marshal(&k)
	var obj bytes.Buffer
	obj.WriteString("{")
	for i, name := range names {
		if i > 0 {
			obj.WriteString(",")
		}
		n, _ := json.Marshal(name)
		fmt.Fprintf(&obj, "%s:%s", n, keys[name])
		for j := 0; i == 0 && j < times; j++ {
			fmt.Fprintf(&obj, ",%s:%s", n, edited)
		}
	}
	obj.WriteString("}")
	st["keys"] = json.RawMessage(`"@keys@"`)
	b, _ := json.Marshal(st)
	return bytes.Replace(b, []byte(`"@keys@"`), obj.Bytes(), 1)
}

// TestForgedSnapshotAddsAdmin is the attack of issue 9: whoever can send
// a replica a Raft InstallSnapshot edits the state to make its own key an
// admin operator. Every forgery is refused and the replica keeps its
// state; a forged entry appended is refused by Apply as it would be in
// the log.
func TestForgedSnapshotAddsAdmin(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	snap := snapshotFor(t, h.f)
	X := clusterKey(h)

	// The attacker's own sharing (t = 2 of 3) of a key it knows, as t-1
	// compromised nodes could run among themselves.
	evil := newCryptoChecker()
	evilPoly, err := evil.CombinePublic(&fsm.Reshare{Round: 99, Fresh: true, Threshold: 2,
		Members: []fsm.Member{{NodeID: "a", Index: 1}, {NodeID: "b", Index: 2}, {NodeID: "c", Index: 3}},
		Deals:   []fsm.Deal{{Dealer: 1, Deal: []byte("ok-forged")}, {Dealer: 2, Deal: []byte("ok-forged")}}})
	if err != nil {
		t.Fatal(err)
	}
	evilShares := evil.shares[polyKey(evilPoly)]
	resign := func(sn *fsm.Snap, poly [][]byte, indexes ...uint32) {
		sum := stateHash(t, sn.Checkpoint)
		sn.Certificate.Hash, sn.Certificate.Poly, sn.Certificate.Partials = sum[:], poly, nil
		for _, i := range indexes {
			sn.Certificate.Partials = append(sn.Certificate.Partials, checkpointPartial(t, evilShares[i], "kq-test", sn.Certificate.Index, sum[:]))
		}
	}
	addEve := h.entry(stranger, addOperatorCmd(operatorSpec(stranger, "eve", true)))
	var forgedAdmin fsm.Signed
	json.Unmarshal(addEve, &forgedAdmin)
	forgedAdmin.Signer = admin.ID
	asAdmin := encode(t, &forgedAdmin)
	last := h.log[len(h.log)-1]

	cases := map[string]func(*fsm.Snap){
		"checkpoint edited": func(sn *fsm.Snap) { sn.Checkpoint = withEve(t, sn.Checkpoint) },
		"checkpoint edited, hash too": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			sum := stateHash(t, sn.Checkpoint)
			sn.Certificate.Hash = sum[:]
		},
		// Before snapshot version 2 a certificate signed the SHA-256 of
		// the checkpoint's bytes, which the sender could then match.
		"checkpoint edited, hashed as version 1 did": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			sum := sha256.Sum256(sn.Checkpoint)
			sn.Certificate.Hash = sum[:]
		},
		// A restore hashes each key from its bytes in the snapshot: 2^16
		// copies of a key at another version add nothing to the sum, and
		// the last would be the one kept, with the honest certificate.
		"a key given 2^16 more times, edited": func(sn *fsm.Snap) {
			sn.Checkpoint = withKeyRepeated(t, sn.Checkpoint, 1<<16)
		},
		"a key given twice": func(sn *fsm.Snap) { sn.Checkpoint = withKeyRepeated(t, sn.Checkpoint, 1) },
		// The nonces are summed apart from the keys, on every CPU: a
		// spent nonce left out, or expiring sooner, reopens a replay.
		"a spent nonce left out": func(sn *fsm.Snap) {
			sn.Checkpoint = withNonces(t, sn.Checkpoint, func(m map[string]int64) {
				for nk := range m {
					delete(m, nk)
					return
				}
			})
		},
		"a spent nonce expiring sooner": func(sn *fsm.Snap) {
			sn.Checkpoint = withNonces(t, sn.Checkpoint, func(m map[string]int64) {
				for nk := range m {
					m[nk] = 1
					return
				}
			})
		},
		// json's field names match case-insensitively: a second field
		// taken for the keys.
		"the keys given twice": func(sn *fsm.Snap) {
			sn.Checkpoint = bytes.Replace(sn.Checkpoint, []byte(`"keys":`), []byte(`"Keys":{},"keys":`), 1)
		},
		"labelled version 1": func(sn *fsm.Snap) { sn.Version = 1 },
		// Version 2 expanded the state hash's entries with SHAKE128: its
		// certificates sign another hash, under another label.
		"labelled version 2": func(sn *fsm.Snap) { sn.Version = 2 },
		// The honest certificate, with the state of another index: the
		// state after the certified one, which no holder certified.
		"certificate for another index": func(sn *fsm.Snap) {
			sn.Checkpoint = stateAt(t, c, h.log, sn.Certificate.Index+1)
		},
		"certificate moved to another index": func(sn *fsm.Snap) {
			sn.Checkpoint = stateAt(t, c, h.log, sn.Certificate.Index+1)
			sn.Certificate.Index++
			sn.Entries = sn.Entries[1:]
		},
		// The state a replica kept for a checkpoint still being attested
		// (uncertified), with the certified checkpoint's certificate.
		"an uncertified checkpoint's state": func(sn *fsm.Snap) {
			sn.Checkpoint = stateAt(t, c, h.log, h.index)
		},
		"re-signed by another key": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			resign(sn, evilPoly, 1, 2)
		},
		"re-signed, commitments claiming the cluster key": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			resign(sn, [][]byte{X, evilPoly[1]}, 1, 2)
		},
		"re-signed, one coefficient": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			resign(sn, [][]byte{X}, 1)
		},
		"fewer than t partials": func(sn *fsm.Snap) {
			sn.Checkpoint = withEve(t, sn.Checkpoint)
			resign(sn, evilPoly, 1)
			sn.Certificate.Poly = sn.Certificate.Poly[:1]
		},
		"honest partials dropped to one": func(sn *fsm.Snap) { sn.Certificate.Partials = sn.Certificate.Partials[:1] },
		"a partial twice": func(sn *fsm.Snap) {
			sn.Certificate.Partials = append(sn.Certificate.Partials[:1], sn.Certificate.Partials[0])
		},
		"certificate without checkpoint": func(sn *fsm.Snap) { sn.Checkpoint = nil },
		"checkpoint without certificate": func(sn *fsm.Snap) { sn.Certificate = nil },
		"entries out of order": func(sn *fsm.Snap) {
			sn.Entries = append(sn.Entries, sn.Entries[0])
		},
		"attestations left out": func(sn *fsm.Snap) {
			var keep []fsm.Entry
			for _, e := range sn.Entries {
				var sg fsm.Signed
				var cmd fsm.Command
				json.Unmarshal(e.Data, &sg)
				json.Unmarshal(sg.Payload, &cmd)
				if cmd.Type != fsm.TypeAttest {
					keep = append(keep, e)
				}
			}
			sn.Entries = keep
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			forged := forge(t, snap, edit)
			// A fresh replica with the pinned key, and a replica with the
			// honest state, both refuse and keep what they have.
			fresh := newCryptoFSM(c)
			fresh.PinClusterKey(X)
			replica := newCryptoFSM(c)
			if err := replica.Restore(snapshotFor(t, replay(t, h.log[:len(h.log)/2]))); err != nil {
				t.Fatal(err)
			}
			for _, v := range []*fsm.FSM{fresh, replica} {
				before := snapshotOf(t, v)
				err := v.Restore(forged)
				if err == nil {
					t.Fatalf("forged snapshot restored")
				}

				if !bytes.Equal(snapshotOf(t, v), before) {
					t.Fatalf("refused snapshot changed the state")
				}
				if bytes.Contains([]byte(err.Error()), X) {
					t.Errorf("error carries key bytes")
				}
			}
		})
	}

	// Appended entries are applied as Apply would: an admin command signed
	// by a stranger, or claiming the admin, is refused; eve is no admin.
	for name, e := range map[string][]byte{"signed by the stranger": addEve, "claiming the admin": asAdmin} {
		forged := forge(t, snap, func(sn *fsm.Snap) {
			sn.Entries = append(sn.Entries, fsm.Entry{Index: last.index + 1, Time: last.at.UnixNano(), Data: e})
		})
		v := newCryptoFSM(c)
		v.PinClusterKey(X)
		v.Restore(forged)
		v.Read(func(s *fsm.State) {
			if s.Operators[stranger.ID] != nil {
				t.Errorf("%s: an appended entry made eve an operator", name)
			}
		})
	}
}

// TestForgedHistoryRefusedByPin: a snapshot without a checkpoint that
// replays a history of the attacker's own (its own init, operators and
// DKG, all validly signed by its own keys) gives another cluster key: a
// replica with the pin, or with a state of its own, refuses it.
func TestForgedHistoryRefusedByPin(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	X := clusterKey(h)

	evil, _ := newCryptoHarness(t)
	in := initCmd()
	in.Init.Operator = operatorSpec(stranger, "eve", true)
	evil.must(stranger, in)
	r := evil.state().Reshare
	evil.must(node(1), dealCmd(r.Round, 1, "ok-forged"))
	evil.must(node(1), ackCmd(r.Round))
	forged := snapshotFor(t, evil.f)
	var sn fsm.Snap
	json.Unmarshal(forged, &sn)
	if sn.Certificate != nil || len(evil.state().Poly) == 0 {
		t.Fatal("the forged history should have a key and no checkpoint")
	}

	pinned := newCryptoFSM(c)
	pinned.PinClusterKey(X)
	replica := newCryptoFSM(c)
	if err := replica.Restore(snapshotFor(t, h.f)); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*fsm.FSM{"pinned": pinned, "replica": replica} {
		before := snapshotOf(t, v)
		if err := v.Restore(forged); err == nil {
			t.Errorf("%s: restored a forged history", name)
		}
		if !bytes.Equal(snapshotOf(t, v), before) {
			t.Errorf("%s: a refused snapshot changed the state", name)
		}
	}
	// Without a pin or a state, it is taken on trust, and flagged.
	if r, err := newCryptoFSM(c).RestoreSnapshot(forged); err != nil || !r.TOFU {
		t.Errorf("unpinned fresh replica: %+v, %v; want a TOFU restore", r, err)
	}
}

// TestRestoreRefusesRollback: an honest but older snapshot does not take
// a replica back.
func TestRestoreRefusesRollback(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	old := snapshotFor(t, h.f)
	for range 2 * checkpointEvery {
		h.must(admin, createKeyCmd(fmt.Sprintf("db/next%d", h.index)))
	}
	h.attestPending(c)
	before := h.snapshot()
	if err := h.f.Restore(old); err == nil {
		t.Fatal("an older snapshot was restored")
	}
	if !bytes.Equal(h.snapshot(), before) {
		t.Fatal("a refused snapshot changed the state")
	}
}

// FuzzRestore feeds arbitrary snapshots to a replica with a state: Restore
// never panics, and a refused snapshot leaves the state as it was.
func FuzzRestore(f *testing.F) {
	h, c := newCryptoHarness(f)
	certified(h, c)
	honest := snapshotFor(f, h.f)
	half := snapshotFor(f, replay(f, h.log[:len(h.log)/2]))
	f.Add(honest)
	f.Add(half)
	f.Add([]byte(`{"version":3,"entries":[]}`))
	f.Add([]byte(`{"version":3,"checkpoint":"e30=","certificate":{"index":1,"hash":"","epoch":1,"poly":[""],"partials":[null]},"entries":null}`))
	X := clusterKey(h)
	base := fsm.New(c)
	base.CheckpointEvery = checkpointEvery
	if err := base.Restore(half); err != nil {
		f.Fatal(err)
	}
	baseState := snapshotOf(f, base)
	f.Fuzz(func(t *testing.T, data []byte) {
		v := newCryptoFSM(c)
		v.PinClusterKey(X)
		if err := fsm.LoadStateForTest(v, baseState); err != nil {
			t.Fatal(err)
		}
		if err := v.Restore(data); err != nil && !bytes.Equal(snapshotOf(t, v), baseState) {
			t.Fatalf("a refused snapshot (%v) changed the state", err)
		}
	})
}

// TestOwnSnapshotFromBeforeTheKeyRestoresWithThePin: a node keeps the
// cluster key once it has it and pins it before Raft restores its own
// latest snapshot at a restart; that snapshot may be from before the first
// key generation (no key in it yet) and must restore.
func TestOwnSnapshotFromBeforeTheKeyRestoresWithThePin(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	X := clusterKey(h)
	young, _ := newCryptoHarness(t) // the same history, stopped after init
	young.must(admin, initCmd())
	early := snapshotFor(t, young.f)

	restarted := newCryptoFSM(c)
	restarted.PinClusterKey(X)
	if err := restarted.Restore(early); err != nil {
		t.Fatalf("the node's own snapshot from before the first key, with the key pinned: %v", err)
	}

	if hashOf(t, restarted) != hashOf(t, young.f) {
		t.Error("the restored state is not the state after init")
	}
}

// TestSnapWriteToIsBytes: a snapshot written as a stream is byte for byte
// the snapshot Bytes encodes, with a certified checkpoint and without, and
// restores; a writer that fails stops it with the writer's error.
func TestSnapWriteToIsBytes(t *testing.T) {
	plain := newHarness(t)
	ready(plain)
	h, c := newCryptoHarness(t)
	certified(h, c)
	// Keys sort as encoding/json sorts a map's; a destroy takes a
	// checkpoint at its own index, which the holders certify.
	for _, name := range []string{"db/a/b", "db/Z", "db/a.b", "db/a-b"} {
		h.must(admin, createKeyCmd(name))
	}
	h.must(admin, &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "db/0"})
	h.attestPending(c)
	for name, f := range map[string]*fsm.FSM{"empty": fsm.New(&fakeChecker{}), "no checkpoint": plain.f, "certified": h.f} {
		sn := f.Capture()
		var got bytes.Buffer
		n, err := sn.WriteTo(&got)
		if err != nil || n != int64(got.Len()) {
			t.Fatalf("%s: WriteTo wrote %d bytes, said %d (%v)", name, got.Len(), n, err)
		}
		// What WriteTo wrote is encoding/json's encoding of the Snap it
		// decodes to, whose checkpoint is encoding/json's encoding of the
		// state a replica had at the certified index.
		var dec fsm.Snap
		if err := json.Unmarshal(got.Bytes(), &dec); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want, _ := json.Marshal(&dec); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: WriteTo wrote\n%.300s\nnot encoding/json's\n%.300s", name, got.Bytes(), want)
		}
		if b, err := sn.Bytes(); err != nil || !bytes.Equal(b, got.Bytes()) {
			t.Errorf("%s: Bytes is not WriteTo's bytes (%v)", name, err)
		}
		if dec.Certificate != nil {
			// The state as it was before the checkpoint was added to
			// Pending, as holders hash it.
			var st fsm.State
			json.Unmarshal(stateAt(t, c, h.log, dec.Certificate.Index), &st)
			st.Pending = st.Pending[:len(st.Pending)-1]
			if len(st.Pending) == 0 {
				st.Pending = nil
			}
			if want, _ := json.Marshal(&st); !bytes.Equal(dec.Checkpoint, want) {
				t.Errorf("%s: the checkpoint is\n%.300s\nnot the state at %d\n%.300s", name, dec.Checkpoint, dec.Certificate.Index, want)
			}
			if !bytes.Contains(dec.Checkpoint, []byte(`"db/a-b":`)) {
				t.Errorf("%s: the certified state lacks the last keys", name)
			}
		}
	}
	r := newCryptoFSM(c)
	r.PinClusterKey(clusterKey(h))
	var b bytes.Buffer
	if _, err := h.f.Capture().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(b.Bytes()); err != nil {
		t.Fatalf("a streamed snapshot does not restore: %v", err)
	}
	if _, err := h.f.Capture().WriteTo(failingWriter{}); err == nil || err.Error() != "disk full" {
		t.Errorf("WriteTo to a failing writer: %v, want its error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestForgedFoundingReplaysTheRealKeyGeneration: the attack on a snapshot
// or backup without a certified checkpoint. A holder of one node's key
// (here, none is even needed) writes a founding entry of its own, naming
// eve the admin, with the real cluster ID and founding node, and replays
// the real key generation's node-signed deals and acknowledgements after
// it, at the same indexes: the deals bind nothing of the founding entry,
// so the forged history reaches the real cluster key X, with eve as the
// admin. Neither a fresh replica with X pinned (a node restoring a
// backup, joining, or restarting) nor a replica with the real state not
// yet certified installs it; nor a history that stops before the key,
// which would take a replica's key away.
func TestForgedFoundingReplaysTheRealKeyGeneration(t *testing.T) {
	h, c := newCryptoHarness(t)
	threeHolders(h)
	X := clusterKey(h)
	if len(h.state().Pending) == 0 || h.state().Checkpoint != nil {
		t.Fatal("the real history should have a checkpoint pending and none certified")
	}
	// Nor does an honest replica make such a snapshot (Raft's, a backup)
	// until its key's checkpoint is certified.
	if _, err := h.f.CaptureCertified(); !errors.Is(err, fsm.ErrNotCertified) {
		t.Fatalf("CaptureCertified of a keyed state without a certified checkpoint: %v, want ErrNotCertified", err)
	}
	defer func() {
		h.attestPending(c)
		if sn, err := h.f.CaptureCertified(); err != nil || sn.Certificate == nil {
			t.Errorf("CaptureCertified once certified: %v", err)
		}
	}()

	// The real key generation: init at 1, node-1's deal at 2 and its
	// acknowledgement at 3.
	evil := &harness{t: t, checker: &c.fakeChecker, f: newCryptoFSM(c), at: t0, nonces: 1000}
	in := initCmd()
	in.Init.Operator = operatorSpec(stranger, "eve", true)
	evil.must(stranger, in)
	for _, e := range h.log[1:3] {
		evil.at = e.at
		if res := evil.apply(e.data); res.Error != nil {
			t.Fatalf("replaying the real entry %d after the forged founding: %v", e.index, res.Error)
		}
	}
	keyless, _ := json.Marshal(&fsm.Snap{Version: 3, Entries: []fsm.Entry{{Index: h.index + 5, Time: t0.UnixNano(), Data: evil.log[0].data}}})
	evil.index = h.index + 10
	evil.must(stranger, putRuleCmd("eve-all", stranger.ID, "*", fsm.OpGet))
	s := evil.state()
	if !bytes.Equal(s.PublicKey(), X) || s.Operators[stranger.ID] == nil || !s.Operators[stranger.ID].Admin || s.Operators[admin.ID] != nil {
		t.Fatalf("the forged history should reach the real cluster key with eve as its only admin: key %x, operators %v", s.PublicKey(), s.Operators)
	}
	forged := snapshotFor(t, evil.f)

	for name, tc := range map[string]struct {
		snap   []byte
		victim func() *fsm.FSM
	}{
		"pinned fresh replica": {forged, func() *fsm.FSM {
			v := newCryptoFSM(c)
			v.PinClusterKey(X)
			return v
		}},
		"replica before its first certified checkpoint": {forged, func() *fsm.FSM {
			v := newCryptoFSM(c)
			for _, e := range h.log {
				v.Apply(e.index, e.at, e.data)
			}
			return v
		}},
		"keyless history, replica with a key": {keyless, func() *fsm.FSM {
			v := newCryptoFSM(c)
			for _, e := range h.log {
				v.Apply(e.index, e.at, e.data)
			}
			return v
		}},
	} {
		t.Run(name, func(t *testing.T) {
			v := tc.victim()
			before := snapshotOf(t, v)
			err := v.Restore(tc.snap)
			if err == nil {
				t.Fatal("the forged history was installed")
			}
			if !strings.Contains(err.Error(), "certified checkpoint") {
				t.Errorf("refused with %q; want it to say a certified checkpoint is needed", err)
			}
			if !bytes.Equal(snapshotOf(t, v), before) {
				t.Error("a refused snapshot changed the state")
			}
		})
	}
}

// TestPinnedFoundingRefusesForgedLog: the attack on a member that
// restarts without a Raft snapshot. Its state is empty and a lying
// leader sends it a log from index 1: a founding entry of its own (eve
// the admin, the real cluster ID and founding node) and the real key
// generation replayed after it, which reaches the real cluster key X, so
// the key pin alone does not stop it (the unpinned replica below takes
// it). With the founding entry's hash pinned, Apply refuses the forged
// founding entry and so everything after it, while the real log still
// applies.
func TestPinnedFoundingRefusesForgedLog(t *testing.T) {
	h, c := newCryptoHarness(t)
	threeHolders(h)
	X := clusterKey(h)
	founding := h.f.Founding()
	var sg fsm.Signed
	if err := json.Unmarshal(h.log[0].data, &sg); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(sg.Payload); !bytes.Equal(founding, sum[:]) {
		t.Fatalf("Founding() = %x, want the SHA-256 of the init command's signed payload", founding)
	}

	evil := &harness{t: t, checker: &c.fakeChecker, f: newCryptoFSM(c), at: t0, nonces: 1000}
	in := initCmd()
	in.Init.Operator = operatorSpec(stranger, "eve", true)
	evil.must(stranger, in)
	for _, e := range h.log[1:3] {
		evil.at = e.at
		if res := evil.apply(e.data); res.Error != nil {
			t.Fatalf("replaying the real entry %d after the forged founding: %v", e.index, res.Error)
		}
	}
	evil.must(stranger, putRuleCmd("eve-all", stranger.ID, "*", fsm.OpGet))

	victim := func(pinFounding bool) (*fsm.FSM, []*fsm.Result) {
		v := newCryptoFSM(c)
		v.PinClusterKey(X)
		if pinFounding {
			v.PinFounding(founding)
		}
		var res []*fsm.Result
		for _, e := range evil.log {
			res = append(res, v.Apply(e.index, e.at, e.data))
		}
		return v, res
	}
	t.Run("key pin only: the forged log is taken", func(t *testing.T) {
		v, _ := victim(false)
		var s *fsm.State
		v.Read(func(st *fsm.State) { s = st })
		if !bytes.Equal(s.PublicKey(), X) || s.Operators[stranger.ID] == nil || s.Operators[admin.ID] != nil {
			t.Fatal("without the founding pin the forged log should reach the real key with eve as admin (the attack)")
		}
	})
	t.Run("founding pinned: the forged log is refused", func(t *testing.T) {
		v, res := victim(true)
		if res[0].Error == nil || res[0].Error.Code != fsm.CodeState || !strings.Contains(res[0].Error.Message, "founding entry") {
			t.Fatalf("the forged founding entry: %v, want refused as not the pinned founding entry", res[0].Error)
		}
		var initialized, keyed, eve bool
		v.Read(func(s *fsm.State) {
			initialized, keyed, eve = s.Initialized(), s.PublicKey() != nil, s.Operators[stranger.ID] != nil
		})
		if initialized || keyed || eve {
			t.Fatalf("after the forged log: initialized %v, keyed %v, eve an operator %v; want none", initialized, keyed, eve)
		}
		if v.Founding() != nil {
			t.Error("a refused founding entry was recorded as this replica's")
		}
	})
	t.Run("founding pinned: the real log applies", func(t *testing.T) {
		v := newCryptoFSM(c)
		v.PinClusterKey(X)
		v.PinFounding(founding)
		for _, e := range h.log {
			v.Apply(e.index, e.at, e.data)
		}
		if !bytes.Equal(snapshotOf(t, v), snapshotOf(t, h.f)) {
			t.Fatal("the real log gave another state on a replica with the founding pinned")
		}
	})
	t.Run("founding pinned: a snapshot replaying a forged founding is refused", func(t *testing.T) {
		keyless, _ := json.Marshal(&fsm.Snap{Version: 3, Entries: []fsm.Entry{{Index: 1, Time: t0.UnixNano(), Data: evil.log[0].data}}})
		v := newCryptoFSM(c)
		v.PinClusterKey(X)
		v.PinFounding(founding)
		if err := v.Restore(keyless); err != nil {
			t.Fatalf("a snapshot whose entries are refused restores as a refusal: %v", err)
		}
		var initialized bool
		v.Read(func(s *fsm.State) { initialized = s.Initialized() })
		if initialized {
			t.Fatal("a snapshot replaying a forged founding entry initialized the replica")
		}
	})
}

// TestPinnedKeyRefusesAnotherKeyGeneration: a replica with the cluster
// key pinned (a restarted node, sent its log again from index 1) does not
// take a first key generation that makes another key: the acknowledgement
// that would complete it is refused, and the state stays without a key.
func TestPinnedKeyRefusesAnotherKeyGeneration(t *testing.T) {
	h, c := newCryptoHarness(t)
	threeHolders(h)
	other := bytes.Clone(clusterKey(h))
	other[0] ^= 1
	v := newCryptoFSM(c)
	v.PinClusterKey(other)
	var refused *fsm.Error
	for _, e := range h.log {
		if res := v.Apply(e.index, e.at, e.data); res.Error != nil && strings.Contains(res.Error.Message, "another cluster key") {
			refused = res.Error
		}
	}
	if refused == nil || refused.Code != fsm.CodeState {
		t.Fatalf("the completing acknowledgement: %v, want refused for making another key", refused)
	}
	v.Read(func(s *fsm.State) {
		if s.Epoch != 0 || s.PublicKey() != nil {
			t.Fatalf("a key generation to another key than the pin took effect: epoch %d", s.Epoch)
		}
	})
}

// TestSnapshotWrittenWhileApplying: a captured snapshot is written in
// another goroutine (as Raft's snapshot sink does) while entries that
// create, change, revoke and destroy keys apply, some of them the keys it
// holds: it writes the certified state as it was, byte for byte (and
// -race sees no shared write).
func TestSnapshotWrittenWhileApplying(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	sn := h.f.Capture()
	want, err := sn.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	go func() {
		var b bytes.Buffer
		for range 20 {
			b.Reset()
			if _, err := sn.WriteTo(&b); err != nil {
				t.Error(err)
			}
		}
		done <- b.Bytes()
	}()
	for i := range 200 {
		name := fmt.Sprintf("db/%d", i%8)
		switch i % 4 {
		case 0:
			h.do(admin, createKeyCmd(fmt.Sprintf("db/new-%d", i)))
		case 1:
			h.do(admin, replaceKeyCmd(name, 1))
		case 2:
			h.do(admin, revokeKeyCmd(name))
		case 3:
			h.do(admin, &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: name})
		}
	}
	if got := <-done; !bytes.Equal(got, want) {
		t.Errorf("the snapshot written while entries applied is not the one captured")
	}
	if got, _ := sn.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("the snapshot written after entries applied is not the one captured")
	}
}

// TestCapturedSnapMarshalsWithItsCheckpoint: encoding/json on a captured
// snapshot, whose certified state is held unencoded, gives WriteTo's
// bytes, checkpoint included.
func TestCapturedSnapMarshalsWithItsCheckpoint(t *testing.T) {
	h, c := newCryptoHarness(t)
	certified(h, c)
	sn := h.f.Capture()
	want, err := sn.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(sn)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("json.Marshal of a captured snapshot: %v\n%.200s\nnot\n%.200s", err, got, want)
	}
	var dec fsm.Snap
	if err := json.Unmarshal(got, &dec); err != nil || dec.Checkpoint == nil {
		t.Fatalf("it decodes without its checkpoint: %v", err)
	}
}

// TestBulkLoadReachesACheckpoint: create_keys entries take a checkpoint
// once their bytes since the last one reach CheckpointBytes, long before
// CheckpointEvery entries, so that once it is certified a replica keeps
// (and a snapshot carries) only the entries after it, not the whole
// load; a replica restored from that snapshot takes the next checkpoints
// where the original does.
func TestBulkLoadReachesACheckpoint(t *testing.T) {
	h, c := newCryptoHarness(t)
	h.f.CheckpointEvery = 1 << 20
	h.f.CheckpointBytes = 64 << 10
	threeHolders(h)
	h.attestPending(c)
	start := h.index
	var load []uint64
	for i := 0; len(h.state().Pending) == 0 || h.state().Pending[len(h.state().Pending)-1].Index <= start; i++ {
		if i == 20 {
			t.Fatalf("20 create_keys entries of 100 keys took no checkpoint after the key's at %d", start)
		}
		names := make([]string, 100)
		for j := range names {
			names[j] = fmt.Sprintf("bulk/%02d/%03d", i, j)
		}
		h.must(admin, createKeysCmd(names...))
		load = append(load, h.index)
	}
	if len(load) < 2 {
		t.Fatalf("the first create_keys entry took a checkpoint: the test's entries are too large for its CheckpointBytes")
	}
	certifiedAt := h.attestPending(c)
	if certifiedAt != load[len(load)-1] {
		t.Fatalf("checkpoint certified at %d, want the load's last entry %d", certifiedAt, load[len(load)-1])
	}
	var sn fsm.Snap
	snap := snapshotFor(t, h.f)
	if err := json.Unmarshal(snap, &sn); err != nil {
		t.Fatal(err)
	}
	for _, e := range sn.Entries {
		if e.Index <= certifiedAt {
			t.Errorf("the snapshot carries entry %d, before its certified checkpoint %d", e.Index, certifiedAt)
		}
	}
	g := newCryptoFSM(c)
	g.CheckpointEvery, g.CheckpointBytes = h.f.CheckpointEvery, h.f.CheckpointBytes
	g.PinClusterKey(clusterKey(h))
	if _, err := g.RestoreSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	// The same load again, under other names, on both: the restored
	// replica counts the bytes from the checkpoint it restored.
	for i := range len(load) {
		names := make([]string, 100)
		for j := range names {
			names[j] = fmt.Sprintf("more/%02d/%03d", i, j)
		}
		e := h.entry(admin, createKeysCmd(names...))
		h.apply(e)
		if res := g.Apply(h.index, h.at, e); res.Error != nil {
			t.Fatal(res.Error)
		}
		if hashOf(t, g) != hashOf(t, h.f) {
			t.Fatalf("after entry %d the restored replica's state differs from the original's:\n%s\n%s", h.index, snapshotOf(t, g), h.snapshot())
		}
	}
	if p := h.state().Pending; len(p) == 0 || p[len(p)-1].Index <= certifiedAt {
		t.Errorf("the second load took no checkpoint")
	}
}
