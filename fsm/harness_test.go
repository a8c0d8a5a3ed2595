package fsm_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// t0 is the leader's append time of every entry unless a test moves it: no
// test reads the wall clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// principal is anyone who signs: an operator (ID = fsm.PrincipalID) or a
// node (ID = its node ID).
type principal struct {
	ID  string
	Key ed25519.PrivateKey
}

func (p principal) pub() ed25519.PublicKey { return p.Key.Public().(ed25519.PublicKey) }

// seededKey is a deterministic Ed25519 key.
func seededKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func operatorPrincipal(seed byte) principal {
	k := seededKey(seed)
	return principal{ID: fsm.PrincipalID(k.Public().(ed25519.PublicKey)), Key: k}
}

var (
	admin    = operatorPrincipal(1) // founds the cluster: always an admin
	op       = operatorPrincipal(2) // a non-admin operator, added by readyState
	admin2   = operatorPrincipal(3) // a second admin, added where a test needs one
	stranger = operatorPrincipal(4) // never known to the cluster
)

// node i is "node-i", with a key seeded 10+i and its own addresses.
func node(i int) principal {
	return principal{ID: fmt.Sprintf("node-%d", i), Key: seededKey(byte(10 + i))}
}

func nodeSpec(i int) *fsm.Node {
	return &fsm.Node{
		ID:         node(i).ID,
		RaftAddr:   fmt.Sprintf("10.0.0.%d:7000", i),
		APIAddr:    fmt.Sprintf("10.0.0.%d:8443", i),
		GossipAddr: fmt.Sprintf("10.0.0.%d:7946", i),
		SignKey:    node(i).pub(),
		EncKey:     bytes.Repeat([]byte{byte(0x40 + i)}, 32),
	}
}

func operatorSpec(p principal, name string, isAdmin bool) *fsm.Operator {
	return &fsm.Operator{ID: p.ID, Name: name, PublicKey: p.pub(), Admin: isAdmin}
}

// fixedPoly is what the fake checker's CombinePublic returns; Poly[0] is
// the cluster public key.
func fixedPoly() [][]byte {
	return [][]byte{bytes.Repeat([]byte{0xA0}, 32), bytes.Repeat([]byte{0xA1}, 32)}
}

// fakeChecker accepts deals whose bytes are "ok" and refuses any other.
// It records the old commitments CheckDeal was given.
type fakeChecker struct {
	combineErr error      // when set, CombinePublic fails with it
	oldPolys   [][][]byte // the oldPoly argument of every CheckDeal call
}

func (c *fakeChecker) CheckDeal(r *fsm.Reshare, oldPoly [][]byte, dealer uint32, deal []byte) error {
	c.oldPolys = append(c.oldPolys, oldPoly)
	if string(deal) != "ok" {
		return errors.New("deal does not verify")
	}
	return nil
}

// CheckComplaint upholds a complaint whose proof is "holds" against a
// deal the round has.
func (c *fakeChecker) CheckComplaint(clusterID string, r *fsm.Reshare, m *fsm.Member, dealer uint32, deal, proof []byte) error {
	if string(proof) != "holds" {
		return errors.New("the sub-share matches the commitments")
	}
	return nil
}

func (c *fakeChecker) CombinePublic(r *fsm.Reshare) ([][]byte, error) {
	if c.combineErr != nil {
		return nil, c.combineErr
	}
	return fixedPoly(), nil
}

// harness drives one FSM: it numbers entries, stamps them with its entry
// time and gives every command a fresh, deterministic nonce.
type harness struct {
	t       testing.TB
	checker *fakeChecker
	f       *fsm.FSM
	index   uint64
	at      time.Time
	nonces  uint64
	log     []logEntry // every entry applied, in order
}

// logEntry is one applied entry, to replay on another FSM.
type logEntry struct {
	index uint64
	at    time.Time
	data  []byte
}

func newHarness(t testing.TB) *harness {
	c := &fakeChecker{}
	return &harness{t: t, checker: c, f: fsm.New(c), at: t0}
}

// nonce returns a 16-byte nonce never returned before by this harness.
func (h *harness) nonce() []byte {
	h.nonces++
	n := make([]byte, 16)
	copy(n, "test-nonce")
	binary.BigEndian.PutUint64(n[8:], h.nonces)
	return n
}

// prepare copies c and fills in a fresh Nonce and IssuedAt = the entry time
// when c leaves them unset.
func (h *harness) prepare(c *fsm.Command) *fsm.Command {
	cc := *c
	if cc.Nonce == nil {
		cc.Nonce = h.nonce()
	}
	if cc.IssuedAt == 0 {
		cc.IssuedAt = h.at.UnixNano()
	}
	return &cc
}

// signed is the Signed for c by p, with fsm.Sign.
func (h *harness) signed(p principal, c *fsm.Command) *fsm.Signed {
	h.t.Helper()
	sg, err := fsm.Sign(p.ID, p.Key, h.prepare(c))
	if err != nil {
		h.t.Fatalf("Sign: %v", err)
	}
	return sg
}

// entry is the log entry for c signed by p.
func (h *harness) entry(p principal, c *fsm.Command) []byte {
	h.t.Helper()
	return encode(h.t, h.signed(p, c))
}

// signBytes signs a raw payload as fsm.Sign would.
func signBytes(p principal, payload []byte) []byte {
	return ed25519.Sign(p.Key, fsm.SigningInput(payload))
}

func encode(t testing.TB, sg *fsm.Signed) []byte {
	t.Helper()
	b, err := json.Marshal(sg)
	if err != nil {
		t.Fatalf("encoding a Signed: %v", err)
	}
	return b
}

// apply appends data as the next entry.
func (h *harness) apply(data []byte) *fsm.Result {
	h.t.Helper()
	h.index++
	h.log = append(h.log, logEntry{h.index, h.at, data})
	held := holdSlices(h.f) // slices_test.go
	heldKeys := fsm.HoldKeysForTest(h.f)
	res := h.f.Apply(h.index, h.at, data)
	if res == nil {
		h.t.Fatalf("Apply(%d) returned nil", h.index)
	}
	if got, err := h.f.Hash(); err != nil {
		h.t.Fatalf("Hash after entry %d: %v", h.index, err)
	} else if want, _ := fsm.HashFromScratchForTest(h.f); got != want {
		h.t.Errorf("after entry %d the kept state hash is %x, the whole state's %x", h.index, got, want)
	}
	if !fsm.NameIndexForTest(h.f) {
		h.t.Errorf("after entry %d the index of key names is not the state's keys", h.index)
	}
	if !fsm.NonceIndexForTest(h.f) {
		h.t.Errorf("after entry %d the index of nonces by expiry is not the state's nonces", h.index)
	}
	if !fsm.TangIndexForTest(h.f) {
		h.t.Errorf("after entry %d the index of Tang keys is not what a scan of every key finds", h.index)
	}
	if !fsm.SharingIndexForTest(h.f) {
		h.t.Errorf("after entry %d the index of keys with a sharing does not give the sharings a scan of every key finds", h.index)
	}
	if bad := heldKeys(); len(bad) != 0 {
		h.t.Errorf("entry %d changed keys in place, under a checkpoint's clone of them: %v", h.index, bad)
	}
	if bad := changedInPlace(held); len(bad) != 0 {
		h.t.Errorf("entry %d wrote into slices of the state that a reader may hold: %v", h.index, bad)
	}
	if res.Index != h.index {
		h.t.Errorf("Result.Index = %d, want %d", res.Index, h.index)
	}
	return res
}

// do signs c by p and applies it.
func (h *harness) do(p principal, c *fsm.Command) *fsm.Result {
	h.t.Helper()
	return h.apply(h.entry(p, c))
}

// must applies c signed by p and fails the test if it is refused.
func (h *harness) must(p principal, c *fsm.Command) *fsm.Result {
	h.t.Helper()
	res := h.do(p, c)
	if res.Error != nil {
		h.t.Fatalf("%s by %s refused: %v", c.Type, p.ID, res.Error)
	}
	return res
}

// state returns a deep copy of the state, read through FSM.Read.
func (h *harness) state() *fsm.State {
	h.t.Helper()
	var b []byte
	var err error
	h.f.Read(func(s *fsm.State) { b, err = json.Marshal(s) })
	if err != nil {
		h.t.Fatalf("encoding the state: %v", err)
	}
	var s fsm.State
	if err := json.Unmarshal(b, &s); err != nil {
		h.t.Fatalf("decoding the state: %v", err)
	}
	return &s
}

// snapshot is the state's encoding (fsm.FSM.StateBytes).
func (h *harness) snapshot() []byte {
	h.t.Helper()
	b, err := h.f.StateBytes()
	if err != nil {
		h.t.Fatalf("StateBytes: %v", err)
	}
	return b
}

// round is the number of the resharing round in progress.
func (h *harness) round() uint64 {
	h.t.Helper()
	s := h.state()
	if s.Reshare == nil {
		h.t.Fatalf("no resharing round in progress")
	}
	return s.Reshare.Round
}

// nodeByIndex is the principal of the node with share index i.
func (h *harness) nodeByIndex(i uint32) principal {
	h.t.Helper()
	var id string
	h.f.Read(func(s *fsm.State) {
		if n := s.NodeByIndex(i); n != nil {
			id = n.ID
		}
	})
	if id == "" {
		h.t.Fatalf("no node has index %d", i)
	}
	return h.nodeNamed(id)
}

// nodeNamed is the principal of the harness's node with the ID.
func (h *harness) nodeNamed(id string) principal {
	h.t.Helper()
	var i int
	if _, err := fmt.Sscanf(id, "node-%d", &i); err != nil || node(i).ID != id {
		h.t.Fatalf("node %q was not made by the harness", id)
	}
	return node(i)
}

// dealAll deals "ok" from as many dealers as the round needs, in index
// order, then acknowledges from every member: the round completes.
func (h *harness) dealAll() {
	h.t.Helper()
	s := h.state()
	r := s.Reshare
	for _, d := range r.Dealers[:r.Needed] {
		h.must(h.nodeByIndex(d), dealCmd(r.Round, d, "ok"))
	}
	h.ackAll()
}

// ackAll acknowledges the qualified round from every member.
func (h *harness) ackAll() {
	h.t.Helper()
	r := h.state().Reshare
	for _, m := range r.Members {
		h.must(h.nodeNamed(m.NodeID), ackCmd(r.Round))
	}
	if s := h.state(); s.Reshare != nil {
		h.t.Fatalf("round %d did not complete", r.Round)
	}
}

// Command builders. The harness fills in Nonce and IssuedAt.

func initCmd() *fsm.Command {
	return &fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{
		ClusterID: "kq-test",
		CACert:    []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
		Operator:  operatorSpec(admin, "alice", true),
		Node:      nodeSpec(1),
		// One, so the lifecycle tests can run a round per step; the
		// initial size has tests of its own.
		InitialNodes: 1,
	}}
}

func addNodeCmd(n *fsm.Node) *fsm.Command { return &fsm.Command{Type: fsm.TypeAddNode, AddNode: n} }
func promoteCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypePromoteNode, PromoteNode: id}
}

// admit adds the node as an admin does and, once the cluster has its key,
// promotes it as the leader does after its stable period (signed by the
// first promoted member): the round that gives it a share starts. It
// returns the result of the entry that started the round.
func (h *harness) admit(n *fsm.Node) *fsm.Result {
	h.t.Helper()
	res := h.must(admin, addNodeCmd(n))
	s := h.state()
	if m := s.Nodes[n.ID]; m == nil || !m.Pending {
		return res
	}
	for _, m := range sortedByID(s.Nodes) {
		if !m.Leaving && !m.Pending {
			return h.must(h.nodeNamed(m.ID), promoteCmd(n.ID))
		}
	}
	h.t.Fatalf("no promoted member to promote %s", n.ID)
	return nil
}

// admitting is admit as a setup step.
func admitting(n *fsm.Node) func(h *harness) {
	return func(h *harness) { h.admit(n) }
}

// sortedByID lists the nodes in ID order.
func sortedByID(m map[string]*fsm.Node) []*fsm.Node {
	var out []*fsm.Node
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[id])
	}
	return out
}
func removeNodeCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRemoveNode, RemoveNode: id}
}
func addOperatorCmd(o *fsm.Operator) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeAddOperator, AddOperator: o}
}
func removeOperatorCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRemoveOperator, RemoveOperator: id}
}
func putRuleCmd(id, principal, key string, ops ...string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypePutRule, PutRule: &fsm.Rule{ID: id, Principal: principal, Key: key, Ops: ops}}
}
func deleteRuleCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeDeleteRule, DeleteRule: id}
}

// point and sealed are well-formed stand-ins for sealed material.
func point(b byte) []byte  { return bytes.Repeat([]byte{b}, 32) }
func sealed(b byte) []byte { return bytes.Repeat([]byte{b}, 48) }

func createKeyCmd(name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: name, Type: fsm.KeyTypeSecret, R: point(1), Sealed: sealed(1)}}
}
func replaceKeyCmd(name string, expect uint64) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeReplaceKey, ReplaceKey: &fsm.ReplaceKey{
		Name: name, ExpectVersion: expect, OldSHA256: make([]byte, 32), R: point(2), Sealed: sealed(2)}}
}
func revokeKeyCmd(name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRevokeKey, RevokeKey: name}
}
func destroyKeyCmd(name string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: name}
}
func dealCmd(round uint64, dealer uint32, deal string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeDeal, Deal: &fsm.DealCommand{Round: round, Dealer: dealer, Deal: []byte(deal)}}
}
func complaintCmd(round uint64, dealer uint32, proof string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeComplaint, Complaint: &fsm.Complaint{Round: round, Dealer: dealer, Proof: []byte(proof)}}
}
func restartCmd(exclude ...uint32) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRestartReshare, RestartReshare: &fsm.RestartReshare{Exclude: exclude}}
}
func ackCmd(round uint64) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeReshareAck, ReshareAck: &fsm.ReshareAck{Round: round}}
}

// Starting states, each built by applying commands.

// initialized: the cluster is founded; the first DKG (one member) runs.
func initialized(h *harness) { h.must(admin, initCmd()) }

// ready: epoch 1 with node-1 the only holder, the non-admin operator op
// added.
func ready(h *harness) {
	initialized(h)
	h.dealAll()
	h.must(admin, addOperatorCmd(operatorSpec(op, "bob", false)))
}

// withKey: ready, and an active key "db/a" at version 1.
func withKey(h *harness) {
	ready(h)
	h.must(admin, createKeyCmd("db/a"))
}

// twoHolders: epoch 2 with node-1 and node-2 holding shares, threshold 2.
func twoHolders(h *harness) {
	ready(h)
	h.admit(nodeSpec(2))
	h.dealAll()
}

// threeHolders: epoch 3 with node-1..3 holding shares, threshold 2.
func threeHolders(h *harness) {
	twoHolders(h)
	h.admit(nodeSpec(3))
	h.dealAll()
}

// then runs starting states and commands in order.
func then(steps ...func(h *harness)) func(h *harness) {
	return func(h *harness) {
		for _, s := range steps {
			s(h)
		}
	}
}

// doing returns a setup step that applies c signed by p and requires it to
// be accepted.
func doing(p principal, c *fsm.Command) func(h *harness) {
	return func(h *harness) { h.must(p, c) }
}

// normalized is a snapshot without the fields named: a refused entry may
// change "applied" and "chain", nothing else (not even the clock
// "last_time").
func normalized(t testing.TB, snap []byte, drop ...string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(snap, &m); err != nil {
		t.Fatalf("snapshot is not a JSON object: %v", err)
	}
	for _, k := range drop {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertUnchanged fails unless before and after are the same snapshot apart
// from the fields in drop (always "applied" and "chain", which every entry
// moves). It names the fields that differ.
func assertUnchanged(t testing.TB, before, after []byte, drop ...string) {
	t.Helper()
	drop = append(slices.Clone(drop), "applied", "chain")
	b, a := normalized(t, before, drop...), normalized(t, after, drop...)
	if bytes.Equal(b, a) {
		return
	}
	var mb, ma map[string]json.RawMessage
	json.Unmarshal(b, &mb)
	json.Unmarshal(a, &ma)
	for k := range ma {
		if _, ok := mb[k]; !ok {
			mb[k] = nil
		}
	}
	for _, k := range slices.Sorted(maps.Keys(mb)) {
		if !bytes.Equal(mb[k], ma[k]) {
			t.Errorf("a refused entry changed the state's %q:\nbefore: %s\nafter:  %s", k, mb[k], ma[k])
		}
	}
}

func codeOf(res *fsm.Result) fsm.Code {
	if res.Error == nil {
		return ""
	}
	return res.Error.Code
}
