package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// testMachine is a registered machine's key, as keyagent or a klefki
// client holds it.
type testMachine struct {
	id   string
	priv ed25519.PrivateKey
}

func (c *testCluster) addMachine(name string) *testMachine {
	c.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	m := &testMachine{id: fsm.PrincipalID(pub), priv: priv}
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddMachine, AddMachine: &fsm.Machine{ID: m.id, Name: name, PublicKey: pub,
		Keys: []string{"luks/*"}, Approval: true}}); err != nil {
		c.t.Fatalf("adding machine %s: %v", name, err)
	}
	return m
}

// release is the machine's signed release request for key, issued at.
func (m *testMachine) release(t *testing.T, key string, at time.Time) *fsm.Signed {
	t.Helper()
	cmd := &fsm.Command{Type: fsm.TypeRelease, Nonce: randomBytes(t, 16), IssuedAt: at.UnixNano(),
		Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpGet, Ephemeral: randomBytes(t, 32)}}
	sg, err := fsm.Sign(m.id, m.priv, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// getKey is the machine's signed GetKey (klefki's flow), signed at.
func (m *testMachine) getKey(t *testing.T, at time.Time) *fsm.GetKeyRequest {
	t.Helper()
	pub := m.priv.Public().(ed25519.PublicKey)
	r := &fsm.GetKeyRequest{Machine: m.id, Nonce: randomBytes(t, 16), SignedAt: at.UnixNano()}
	r.Signature = ed25519.Sign(m.priv, fsm.GetKeySigningInput(fsm.KlefkiID(pub), r.Nonce, r.SignedAt, nil))
	return r
}

// machineState is what the machine flow keeps in a node's state.
type machineState struct {
	uses      int // left on the machine's approval of luks/m1
	granted   int
	sessions  int
	submitted []byte
	by        string
}

func readMachineState(tn *testNode, machine string) machineState {
	var st machineState
	tn.n.fsm.Read(func(s *fsm.State) {
		for _, a := range s.Approvals {
			if a.Machine == machine {
				st.uses += a.Uses
			}
		}
		st.granted, st.sessions = len(s.Granted), len(s.Sessions)
		if k := s.Submitted[machine]; k != nil {
			st.submitted, st.by = bytes.Clone(k.Sealed), k.By
		}
	})
	return st
}

// TestMachineDecisionsNeedTheMachinesSignature: a node running attacker
// code, with its own valid key, cannot spend an approval on a request the
// machine did not make, plant a passphrase, name another operator as its
// submitter, or discard a submitted passphrase the machine did not ask
// for; every replica refuses the entry and the state stays as it was. The
// honest flows (the approved unlock and klefki's GetKey, SubmitKey) still
// work.
func TestMachineDecisionsNeedTheMachinesSignature(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("luks/m1", randomBytes(t, 32))
	m1, m2 := c.addMachine("m1"), c.addMachine("m2")
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: m1.id, Key: "luks/m1", Uses: 2}}); err != nil {
		t.Fatal(err)
	}
	evil := c.running()[0]
	asNode := func(cmd *fsm.Command) error {
		sg, err := evil.n.nodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = evil.n.submit(ctxOp(t), sg)
		return err
	}
	refused := func(what string, err error, want Kind, before machineState) {
		t.Helper()
		if KindOf(err) != want {
			t.Errorf("%s: %v, want %s", what, err, want)
		}
		for _, tn := range c.running() {
			want := applied(evil)
			c.waitFor(settleTimeout, func() (bool, string) {
				return applied(tn) >= want, tn.id() + " did not apply the entry"
			})
			if got := readMachineState(tn, m1.id); !equalMachineState(got, before) {
				t.Errorf("%s changed %s's state: %+v, was %+v", what, tn.id(), got, before)
			}
		}
	}

	before := readMachineState(evil, m1.id)
	now := time.Now()
	req2 := m2.release(t, "luks/m1", now)
	attacks := []struct {
		name string
		cmd  *fsm.Command
		want Kind
	}{
		{"use_approval with no machine request", &fsm.Command{Type: fsm.TypeUseApproval,
			UseApproval: &fsm.UseApproval{Machine: m1.id, Key: "luks/m1", Nonce: randomBytes(t, 16)}}, KindInvalid},
		{"use_approval with another machine's request", &fsm.Command{Type: fsm.TypeUseApproval,
			UseApproval: &fsm.UseApproval{Machine: m1.id, Key: "luks/m1", Nonce: decodeNonce(t, req2), Request: req2}}, KindInvalid},
		{"record_session with no machine request", &fsm.Command{Type: fsm.TypeRecordSession,
			RecordSession: &fsm.RecordSession{Addr: "192.0.2.9"}}, KindInvalid},
		{"record_session with an old GetKey", &fsm.Command{Type: fsm.TypeRecordSession,
			RecordSession: &fsm.RecordSession{GetKey: m1.getKey(t, now.Add(-fsm.MaxClockSkew-time.Minute))}}, KindClockSkew},
		{"submit_key signed by a node", &fsm.Command{Type: fsm.TypeSubmitKey,
			SubmitKey: &fsm.SubmittedKey{Machine: m1.id, Sealed: []byte("planted"), By: c.opID}}, KindUnauthenticated},
	}
	old := m1.release(t, "luks/m1", now.Add(-fsm.MaxClockSkew-time.Minute))
	attacks = append(attacks, struct {
		name string
		cmd  *fsm.Command
		want Kind
	}{"use_approval with an old request", &fsm.Command{Type: fsm.TypeUseApproval,
		UseApproval: &fsm.UseApproval{Machine: m1.id, Key: "luks/m1", Nonce: decodeNonce(t, old), Request: old}}, KindClockSkew})
	for _, a := range attacks {
		refused(a.name, asNode(a.cmd), a.want, before)
	}

	// The relay of a request the machine made spends one use, once.
	req := m1.release(t, "luks/m1", time.Now())
	use := &fsm.Command{Type: fsm.TypeUseApproval, UseApproval: &fsm.UseApproval{Machine: m1.id, Key: "luks/m1", Nonce: decodeNonce(t, req), Request: req}}
	if err := asNode(use); err != nil {
		t.Fatalf("spending a use on the machine's request: %v", err)
	}
	spent := readMachineState(evil, m1.id)
	if spent.uses != 1 || spent.granted != 1 {
		t.Fatalf("after one use: %+v", spent)
	}
	refused("the same request replayed", asNode(use), KindUnauthenticated, spent)

	// klefki's flow: the machine waits; an operator signs its SubmitKey;
	// the machine takes the key once, on any node.
	honest := c.running()[1]
	if _, err := honest.n.TakeSubmittedKey(ctxOp(t), m1.getKey(t, time.Now()), "192.0.2.8"); KindOf(err) != KindNotFound {
		t.Fatalf("before a key is submitted: %v, want not_found", err)
	}
	list, err := c.running()[2].n.Sessions(ctxOp(t))
	if err != nil || len(list) != 1 || list[0].Machine != m1.id || list[0].Addr != "192.0.2.8" || list[0].Key != "" {
		t.Fatalf("sessions %+v, %v: want m1 waiting", list, err)
	}
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	op2 := fsm.PrincipalID(opPub)
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeAddOperator, AddOperator: &fsm.Operator{ID: op2, Name: "bob", PublicKey: opPub}}); err != nil {
		t.Fatal(err)
	}
	waiting := readMachineState(evil, m1.id)
	err = evil.n.SubmitKey(ctxOp(t), signWith(t, op2, opKey, &fsm.Command{Type: fsm.TypeSubmitKey,
		SubmitKey: &fsm.SubmittedKey{Machine: m1.id, Sealed: []byte("sealed passphrase"), By: c.opID}}))
	refused("an operator naming another in By", err, KindDenied, waiting)
	if err := evil.n.SubmitKey(ctxOp(t), signWith(t, op2, opKey, &fsm.Command{Type: fsm.TypeSubmitKey,
		SubmitKey: &fsm.SubmittedKey{Machine: m1.id, Sealed: []byte("sealed passphrase")}})); err != nil {
		t.Fatalf("the operator's SubmitKey: %v", err)
	}
	if st := readMachineState(evil, m1.id); string(st.submitted) != "sealed passphrase" || st.by != op2 || st.sessions != 0 {
		t.Fatalf("after SubmitKey: %+v", st)
	}
	if err := evil.n.SubmitKey(ctxOp(t), c.sign(&fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: m1.id, Key: "luks/m1", Uses: 1}})); KindOf(err) != KindInvalid {
		t.Errorf("SubmitKey with another command: %v, want invalid", err)
	}

	submitted := readMachineState(evil, m1.id)
	sum := sha256.Sum256(submitted.submitted)
	refused("delivered with no GetKey", asNode(&fsm.Command{Type: fsm.TypeDelivered,
		Delivered: &fsm.Delivered{Machine: m1.id, SHA256: sum[:]}}), KindInvalid, submitted)
	refused("delivered with another machine's GetKey", asNode(&fsm.Command{Type: fsm.TypeDelivered,
		Delivered: &fsm.Delivered{Machine: m1.id, SHA256: sum[:], Request: m2.getKey(t, time.Now())}}), KindInvalid, submitted)

	got, err := honest.n.TakeSubmittedKey(ctxOp(t), m1.getKey(t, time.Now()), "192.0.2.8")
	if err != nil || string(got) != "sealed passphrase" {
		t.Fatalf("GetKey after SubmitKey: %q, %v", got, err)
	}
	if _, err := c.running()[2].n.TakeSubmittedKey(ctxOp(t), m1.getKey(t, time.Now()), "192.0.2.8"); KindOf(err) != KindNotFound {
		t.Fatalf("a second GetKey: %v, want not_found: the key is delivered once", err)
	}
}

func applied(tn *testNode) uint64 {
	var i uint64
	tn.n.fsm.Read(func(s *fsm.State) { i = s.Applied })
	return i
}

func decodeNonce(t *testing.T, sg *fsm.Signed) []byte {
	t.Helper()
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	return cmd.Nonce
}

func equalMachineState(a, b machineState) bool {
	return a.uses == b.uses && a.granted == b.granted && a.sessions == b.sessions && bytes.Equal(a.submitted, b.submitted) && a.by == b.by
}
