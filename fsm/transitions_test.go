package fsm_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

func member(i int) fsm.Member {
	n := nodeSpec(i)
	return fsm.Member{NodeID: n.ID, Index: uint32(i), EncKey: n.EncKey}
}

func wantRound(t *testing.T, got *fsm.Reshare, want fsm.Reshare) {
	t.Helper()
	if got == nil {
		t.Fatalf("no resharing round, want %+v", want)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("resharing round\n got %+v\nwant %+v", *got, want)
	}
}

func TestInit(t *testing.T) {
	initWith := func(change func(*fsm.Init)) *fsm.Command {
		c := initCmd()
		change(c.Init)
		return c
	}
	mallory := principal{ID: "mallory", Key: stranger.Key}
	runTransition(t, []transitionCase{
		{name: "founds the cluster and starts the first DKG", by: admin, cmd: initCmd(),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				s := h.state()
				if !s.Initialized() || s.ClusterID != "kq-test" || !bytes.Equal(s.CACert, initCmd().Init.CACert) {
					t.Errorf("cluster ID %q, CA %q", s.ClusterID, s.CACert)
				}
				if s.Epoch != 0 || s.PublicKey() != nil || s.Threshold != 0 {
					t.Errorf("epoch %d, threshold %d, public key %x before any DKG", s.Epoch, s.Threshold, s.PublicKey())
				}
				if o := s.Operators[admin.ID]; len(s.Operators) != 1 || o == nil || !o.Admin || o.Name != "alice" || !bytes.Equal(o.PublicKey, admin.pub()) {
					t.Errorf("operators %+v, want alice as the only admin", s.Operators)
				}
				n := s.Nodes["node-1"]
				if len(s.Nodes) != 1 || n == nil || n.Index != 1 || n.Holder || n.Leaving || !bytes.Equal(n.SignKey, node(1).pub()) {
					t.Errorf("nodes %+v, want node-1 with index 1 holding nothing yet", s.Nodes)
				}
				if s.NextIndex != 2 {
					t.Errorf("next index %d, want 2", s.NextIndex)
				}
				wantRound(t, s.Reshare, fsm.Reshare{Round: res.Index, Fresh: true, Threshold: 1,
					Members: []fsm.Member{member(1)}, Dealers: []uint32{1}, Needed: 1})
			}},
		{name: "makes the founder an admin", by: admin, cmd: initWith(func(in *fsm.Init) { in.Operator.Admin = false }),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if o := h.state().Operators[admin.ID]; o == nil || !o.Admin {
					t.Errorf("founder %+v is not an admin", o)
				}
			}},
		{name: "ignores the index and holder flags it is given", by: admin,
			cmd: initWith(func(in *fsm.Init) {
				in.Node.Index, in.Node.Holder, in.Node.Leaving, in.Node.Pending = 9, true, true, true
			}),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if n := h.state().Nodes["node-1"]; n.Index != 1 || n.Holder || n.Leaving || n.Pending {
					t.Errorf("node %+v, want index 1, not holder, not leaving, not waiting", n)
				}
			}},
		{name: "issued within the clock skew ago", by: admin, cmd: issued(initCmd(), -fsm.MaxClockSkew+time.Second)},
		{name: "issued within the clock skew ahead", by: admin, cmd: issued(initCmd(), fsm.MaxClockSkew-time.Second)},

		{name: "already initialized", setup: initialized, by: admin, cmd: initCmd(), code: fsm.CodeState},
		{name: "already initialized, by another founder", setup: initialized, by: stranger,
			cmd: initWith(func(in *fsm.Init) { in.Operator = operatorSpec(stranger, "eve", true) }), code: fsm.CodeState},
		{name: "signed by someone it does not name", by: stranger, cmd: initCmd(), code: fsm.CodeBadSignature},
		{name: "signed with the named key under another signer ID", entry: signedWith("someone-else", admin, initCmd()),
			code: fsm.CodeBadSignature},
		{name: "unsigned", entry: unsigned(admin, initCmd()), code: fsm.CodeBadSignature},
		{name: "signed with another key", entry: signedWith(admin.ID, stranger, initCmd()), code: fsm.CodeBadSignature},
		{name: "changed after signing", code: fsm.CodeBadSignature,
			entry: tampered(admin, initCmd(), func(c *fsm.Command) { c.Init.ClusterID = "evil" })},
		{name: "operator ID not its key's", by: mallory, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Operator = &fsm.Operator{ID: "mallory", Name: "m", PublicKey: stranger.pub()} })},
		{name: "operator key of 31 bytes", by: admin, code: fsm.CodeBadSignature,
			cmd: initWith(func(in *fsm.Init) { in.Operator.PublicKey = admin.pub()[:31] })},
		{name: "operator without a name", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Operator.Name = "" })},
		{name: "operator name of 201 bytes", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Operator.Name = longName })},
		{name: "no operator", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.Operator = nil })},
		{name: "no init body", by: admin, code: fsm.CodeInvalid, cmd: &fsm.Command{Type: fsm.TypeInit}},
		{name: "no cluster ID", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.ClusterID = "" })},
		{name: "no CA certificate", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.CACert = nil })},
		{name: "no node", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.Node = nil })},
		{name: "node ID ../x", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.Node.ID = "../x" })},
		{name: "empty node ID", by: admin, code: fsm.CodeInvalid, cmd: initWith(func(in *fsm.Init) { in.Node.ID = "" })},
		{name: "node ID of 65 bytes", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Node.ID = strings.Repeat("n", 65) })},
		{name: "node without a raft address", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Node.RaftAddr = "" })},
		{name: "node signing key of 31 bytes", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Node.SignKey = in.Node.SignKey[:31] })},
		{name: "node encryption key of 33 bytes", by: admin, code: fsm.CodeInvalid,
			cmd: initWith(func(in *fsm.Init) { in.Node.EncKey = append(in.Node.EncKey, 0) })},
		{name: "issued more than the clock skew ago", by: admin, code: fsm.CodeClockSkew,
			cmd: issued(initCmd(), -fsm.MaxClockSkew-time.Second)},
		{name: "issued more than the clock skew ahead", by: admin, code: fsm.CodeClockSkew,
			cmd: issued(initCmd(), fsm.MaxClockSkew+time.Second)},
		{name: "nonce of 15 bytes", by: admin, code: fsm.CodeInvalid,
			cmd: with(initCmd(), func(c *fsm.Command) { c.Nonce = make([]byte, 15) })},
		{name: "no nonce", by: admin, code: fsm.CodeInvalid,
			cmd: with(initCmd(), func(c *fsm.Command) { c.Nonce = []byte{} })},
		{name: "entry that is not JSON", code: fsm.CodeInvalid,
			entry: func(*harness) []byte { return []byte("init please") }},
		{name: "payload that is not JSON", code: fsm.CodeInvalid, entry: func(h *harness) []byte {
			payload := []byte(`{"type":"init"`)
			return encode(h.t, &fsm.Signed{Signer: admin.ID, Payload: payload, Signature: signBytes(admin, payload)})
		}},
	})
}

func TestAddNode(t *testing.T) {
	spec := func(change func(*fsm.Node)) *fsm.Node {
		n := nodeSpec(2)
		change(n)
		return n
	}
	runTransition(t, []transitionCase{
		{name: "adds a node waiting for its promotion, in no round", setup: ready, by: admin, cmd: addNodeCmd(nodeSpec(2)),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				s := h.state()
				if n := s.Nodes["node-2"]; n == nil || n.Index != 2 || n.Holder || n.Leaving || !n.Pending || n.APIAddr != nodeSpec(2).APIAddr {
					t.Errorf("node-2 = %+v, want index 2, pending, holding nothing", n)
				}
				if s.NextIndex != 3 || s.Epoch != 1 || !s.Nodes["node-1"].Holder {
					t.Errorf("next index %d, epoch %d, node-1 holder %v", s.NextIndex, s.Epoch, s.Nodes["node-1"].Holder)
				}
				if s.Reshare != nil {
					t.Errorf("round %+v started before node-2's promotion", s.Reshare)
				}
			}},
		{name: "before the first DKG the round is fresh", setup: initialized, by: admin, cmd: addNodeCmd(nodeSpec(2)),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				if h.state().Nodes["node-2"].Pending {
					t.Error("a node admitted before the first key waits for a promotion")
				}
				wantRound(t, h.state().Reshare, fsm.Reshare{Round: res.Index, Fresh: true, Threshold: 2,
					Members: []fsm.Member{member(1), member(2)}, Dealers: []uint32{1, 2}, Needed: 2})
			}},
		{name: "leaves the round in progress alone",
			setup: then(ready, admitting(nodeSpec(2)), func(h *harness) {
				h.must(node(1), dealCmd(h.round(), 1, "ok"))
			}),
			by: admin, cmd: addNodeCmd(nodeSpec(3)),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				r := h.state().Reshare
				if r == nil || r.Round == res.Index || len(r.Members) != 2 || len(r.Deals) != 1 {
					t.Errorf("round %+v, want node-2's, with its deal", r)
				}
			}},
		{name: "ignores a waiting flag it is given before the first key", setup: initialized, by: admin,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.Pending = true })),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if n := h.state().Nodes["node-2"]; n.Pending {
					t.Errorf("node-2 = %+v, want a member of the first key's round", n)
				}
			}},
		{name: "ignores the index and holder flags it is given", setup: ready, by: admin,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.Index, n.Holder, n.Leaving = 1, true, true })),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if n := h.state().Nodes["node-2"]; n.Index != 2 || n.Holder || n.Leaving {
					t.Errorf("node-2 = %+v, want index 2, not holder, not leaving", n)
				}
			}},
		{name: "node ID of 64 bytes", setup: ready, by: admin,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.ID = strings.Repeat("n", 64) }))},

		{name: "not initialized", by: admin, cmd: addNodeCmd(nodeSpec(2)), code: fsm.CodeState},
		{name: "by a non-admin", setup: ready, by: op, cmd: addNodeCmd(nodeSpec(2)), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: ready, by: stranger, cmd: addNodeCmd(nodeSpec(2)), code: fsm.CodeBadSignature},
		{name: "by a node", setup: ready, by: node(1), cmd: addNodeCmd(nodeSpec(2)), code: fsm.CodeBadSignature},
		{name: "signed with another key", setup: ready, entry: signedWith(admin.ID, op, addNodeCmd(nodeSpec(2))),
			code: fsm.CodeBadSignature},
		{name: "unsigned", setup: ready, entry: unsigned(admin, addNodeCmd(nodeSpec(2))), code: fsm.CodeBadSignature},
		{name: "changed after signing", setup: ready, code: fsm.CodeBadSignature,
			entry: tampered(admin, addNodeCmd(nodeSpec(2)), func(c *fsm.Command) { c.AddNode = nodeSpec(3) })},
		{name: "node ID taken", setup: ready, by: admin, code: fsm.CodeExists,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.ID = "node-1" }))},
		{name: "raft address taken", setup: ready, by: admin, code: fsm.CodeExists,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.RaftAddr = nodeSpec(1).RaftAddr }))},
		{name: "API address taken", setup: ready, by: admin, code: fsm.CodeExists,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.APIAddr = nodeSpec(1).APIAddr }))},
		{name: "node ID ../x", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.ID = "../x" }))},
		{name: "empty node ID", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.ID = "" }))},
		{name: "node ID of 65 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.ID = strings.Repeat("n", 65) }))},
		{name: "no gossip address", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.GossipAddr = "" }))},
		{name: "signing key of 33 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.SignKey = append(n.SignKey, 0) }))},
		{name: "encryption key of 31 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addNodeCmd(spec(func(n *fsm.Node) { n.EncKey = n.EncKey[:31] }))},
		{name: "no node", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: &fsm.Command{Type: fsm.TypeAddNode}},
		{name: "stale", setup: ready, by: admin, code: fsm.CodeClockSkew,
			cmd: issued(addNodeCmd(nodeSpec(2)), -fsm.MaxClockSkew-time.Nanosecond)},
		{name: "nonce of 8 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(addNodeCmd(nodeSpec(2)), func(c *fsm.Command) { c.Nonce = make([]byte, 8) })},
	})
}

func TestRemoveNode(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "marks the node leaving and reshares without it", setup: twoHolders, by: admin, cmd: removeNodeCmd("node-2"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				s := h.state()
				if n := s.Nodes["node-2"]; n == nil || !n.Leaving || !n.Holder {
					t.Errorf("node-2 = %+v, want still a holder, leaving", n)
				}
				if s.Epoch != 2 || s.Threshold != 2 {
					t.Errorf("epoch %d threshold %d, want 2 and 2 until the round completes", s.Epoch, s.Threshold)
				}
				wantRound(t, s.Reshare, fsm.Reshare{Round: res.Index, Threshold: 1,
					Members: []fsm.Member{member(1)}, Dealers: []uint32{1, 2}, Needed: 2})
			}},
		{name: "before the first DKG", setup: then(initialized, admitting(nodeSpec(2))),
			by: admin, cmd: removeNodeCmd("node-1"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				wantRound(t, h.state().Reshare, fsm.Reshare{Round: res.Index, Fresh: true, Threshold: 1,
					Members: []fsm.Member{member(2)}, Dealers: []uint32{2}, Needed: 1})
			}},

		{name: "not initialized", by: admin, cmd: removeNodeCmd("node-1"), code: fsm.CodeState},
		{name: "unknown node", setup: twoHolders, by: admin, cmd: removeNodeCmd("node-9"), code: fsm.CodeNotFound},
		{name: "already leaving", setup: then(twoHolders, doing(admin, removeNodeCmd("node-2"))),
			by: admin, cmd: removeNodeCmd("node-2"), code: fsm.CodeState},
		{name: "the only node", setup: ready, by: admin, cmd: removeNodeCmd("node-1"), code: fsm.CodeState},
		{name: "the last node not leaving", setup: then(twoHolders, doing(admin, removeNodeCmd("node-2"))),
			by: admin, cmd: removeNodeCmd("node-1"), code: fsm.CodeState},
		{name: "by a non-admin", setup: twoHolders, by: op, cmd: removeNodeCmd("node-2"), code: fsm.CodeDenied},
		{name: "by the node itself", setup: twoHolders, by: node(2), cmd: removeNodeCmd("node-2"), code: fsm.CodeBadSignature},
		{name: "by an unknown operator", setup: twoHolders, by: stranger, cmd: removeNodeCmd("node-2"), code: fsm.CodeBadSignature},
	})
}

func TestAddOperator(t *testing.T) {
	spec := func(change func(*fsm.Operator)) *fsm.Operator {
		o := operatorSpec(admin2, "carol", false)
		change(o)
		return o
	}
	runTransition(t, []transitionCase{
		{name: "adds an operator who can then sign", setup: ready, by: admin, cmd: addOperatorCmd(operatorSpec(admin2, "carol", false)),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				o := h.state().Operators[admin2.ID]
				if o == nil || o.Admin || o.Name != "carol" || !bytes.Equal(o.PublicKey, admin2.pub()) {
					t.Fatalf("operator = %+v, want carol, not an admin", o)
				}
				// Known, so its signature verifies; not an admin, so it is denied.
				refusedWith(t, h, admin2, addNodeCmd(nodeSpec(2)), fsm.CodeDenied)
			}},
		{name: "adds an admin", setup: ready, by: admin, cmd: addOperatorCmd(operatorSpec(admin2, "carol", true)),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				h.must(admin2, addNodeCmd(nodeSpec(2)))
			}},
		{name: "name of 200 bytes", setup: ready, by: admin, cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.Name = maxName }))},

		{name: "not initialized", by: admin, cmd: addOperatorCmd(operatorSpec(admin2, "carol", false)), code: fsm.CodeState},
		{name: "operator exists", setup: ready, by: admin, cmd: addOperatorCmd(operatorSpec(op, "bob again", true)), code: fsm.CodeExists},
		{name: "ID not its key's", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.ID = "carol" }))},
		{name: "another operator's ID", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.PublicKey = stranger.pub() }))},
		{name: "key of 31 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.PublicKey = o.PublicKey[:31] }))},
		{name: "no name", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.Name = "" }))},
		{name: "name of 201 bytes", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: addOperatorCmd(spec(func(o *fsm.Operator) { o.Name = longName }))},
		{name: "no operator", setup: ready, by: admin, code: fsm.CodeInvalid, cmd: &fsm.Command{Type: fsm.TypeAddOperator}},
		{name: "by a non-admin", setup: ready, by: op, cmd: addOperatorCmd(operatorSpec(admin2, "carol", true)), code: fsm.CodeDenied},
		{name: "by itself", setup: ready, by: admin2, cmd: addOperatorCmd(operatorSpec(admin2, "carol", true)), code: fsm.CodeBadSignature},
		{name: "signed with another key", setup: ready, code: fsm.CodeBadSignature,
			entry: signedWith(admin.ID, admin2, addOperatorCmd(operatorSpec(admin2, "carol", true)))},
		{name: "admin flag raised after signing", setup: ready, code: fsm.CodeBadSignature,
			entry: tampered(admin, addOperatorCmd(operatorSpec(admin2, "carol", false)), func(c *fsm.Command) { c.AddOperator.Admin = true })},
	})
}

func TestRemoveOperator(t *testing.T) {
	withAdmin2 := then(ready, doing(admin, addOperatorCmd(operatorSpec(admin2, "carol", true))))
	runTransition(t, []transitionCase{
		{name: "removes an operator, whose signature no longer counts", setup: ready, by: admin, cmd: removeOperatorCmd(op.ID),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if o := h.state().Operators[op.ID]; o != nil {
					t.Errorf("operator %+v still there", o)
				}
				refusedWith(t, h, op, createKeyCmd("db/x"), fsm.CodeBadSignature)
			}},
		{name: "an admin removes itself while another admin remains", setup: withAdmin2, by: admin, cmd: removeOperatorCmd(admin.ID),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				refusedWith(t, h, admin, addNodeCmd(nodeSpec(2)), fsm.CodeBadSignature)
				h.must(admin2, addNodeCmd(nodeSpec(2)))
			}},
		{name: "an admin removes another admin", setup: withAdmin2, by: admin2, cmd: removeOperatorCmd(admin.ID)},

		{name: "not initialized", by: admin, cmd: removeOperatorCmd(op.ID), code: fsm.CodeState},
		{name: "unknown operator", setup: ready, by: admin, cmd: removeOperatorCmd(stranger.ID), code: fsm.CodeNotFound},
		{name: "the last admin", setup: ready, by: admin, cmd: removeOperatorCmd(admin.ID), code: fsm.CodeState},
		{name: "by a non-admin", setup: ready, by: op, cmd: removeOperatorCmd(admin.ID), code: fsm.CodeDenied},
		{name: "a non-admin removing itself", setup: ready, by: op, cmd: removeOperatorCmd(op.ID), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: ready, by: stranger, cmd: removeOperatorCmd(op.ID), code: fsm.CodeBadSignature},
	})
}

func TestPutRule(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "grants operations on a prefix", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "db/*", fsm.OpGet, fsm.OpRead),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				want := &fsm.Rule{ID: "r1", Principal: op.ID, Key: "db/*", Ops: []string{fsm.OpGet, fsm.OpRead}}
				if got := h.state().Rules["r1"]; !reflect.DeepEqual(got, want) {
					t.Errorf("rule %+v, want %+v", got, want)
				}
				for _, c := range []struct {
					op, key string
					want    bool
				}{{fsm.OpGet, "db/x", true}, {fsm.OpRead, "db/x/y", true}, {fsm.OpGet, "web/x", false},
					{fsm.OpGet, "db", false}, {fsm.OpCreate, "db/x", false}} {
					if got := allowed(h, op, c.op, c.key); got != c.want {
						t.Errorf("Allowed(op, %s, %s) = %v, want %v", c.op, c.key, got, c.want)
					}
				}
			}},
		{name: "grants operations on one key", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "db/a", fsm.OpGet),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if !allowed(h, op, fsm.OpGet, "db/a") || allowed(h, op, fsm.OpGet, "db/ab") {
					t.Errorf("a rule on db/a must allow db/a and nothing else")
				}
			}},
		{name: "replaces the rule with the same ID", setup: then(ready, doing(admin, putRuleCmd("r1", op.ID, "db/*", fsm.OpGet))),
			by: admin, cmd: putRuleCmd("r1", op.ID, "db/*", fsm.OpCreate),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if allowed(h, op, fsm.OpGet, "db/x") || !allowed(h, op, fsm.OpCreate, "db/x") {
					t.Errorf("the new rule must replace the old one")
				}
			}},

		{name: "not initialized", by: admin, cmd: putRuleCmd("r1", admin.ID, "db/*", fsm.OpGet), code: fsm.CodeState},
		{name: "unknown principal", setup: ready, by: admin, cmd: putRuleCmd("r1", stranger.ID, "db/*", fsm.OpGet), code: fsm.CodeNotFound},
		{name: "a node as principal", setup: ready, by: admin, cmd: putRuleCmd("r1", "node-1", "db/*", fsm.OpGet), code: fsm.CodeNotFound},
		{name: "empty ID", setup: ready, by: admin, cmd: putRuleCmd("", op.ID, "db/*", fsm.OpGet), code: fsm.CodeInvalid},
		{name: "ID of 201 bytes", setup: ready, by: admin, cmd: putRuleCmd(longName, op.ID, "db/*", fsm.OpGet), code: fsm.CodeInvalid},
		{name: "key ../x", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "../x", fsm.OpGet), code: fsm.CodeInvalid},
		{name: "prefix ../*", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "../*", fsm.OpGet), code: fsm.CodeInvalid},
		{name: "key with a space", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "db/a b", fsm.OpGet), code: fsm.CodeInvalid},
		{name: "no operation", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "db/*"), code: fsm.CodeInvalid},
		{name: "unknown operation", setup: ready, by: admin, cmd: putRuleCmd("r1", op.ID, "db/*", fsm.OpGet, "admin"), code: fsm.CodeInvalid},
		{name: "no rule", setup: ready, by: admin, cmd: &fsm.Command{Type: fsm.TypePutRule}, code: fsm.CodeInvalid},
		{name: "by a non-admin granting itself", setup: ready, by: op, cmd: putRuleCmd("r1", op.ID, "*", fsm.OpGet), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: ready, by: stranger, cmd: putRuleCmd("r1", op.ID, "*", fsm.OpGet), code: fsm.CodeBadSignature},
		{name: "principal changed after signing", setup: ready, code: fsm.CodeBadSignature,
			entry: tampered(admin, putRuleCmd("r1", op.ID, "db/*", fsm.OpGet), func(c *fsm.Command) { c.PutRule.Key = "*" })},
	})
}

func TestDeleteRule(t *testing.T) {
	withRule := then(ready, doing(admin, putRuleCmd("r1", op.ID, "db/*", fsm.OpGet)))
	runTransition(t, []transitionCase{
		{name: "deletes the rule and its grant", setup: withRule, by: admin, cmd: deleteRuleCmd("r1"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if r := h.state().Rules["r1"]; r != nil || allowed(h, op, fsm.OpGet, "db/x") {
					t.Errorf("rule %+v still grants", r)
				}
			}},
		{name: "not initialized", by: admin, cmd: deleteRuleCmd("r1"), code: fsm.CodeState},
		{name: "unknown rule", setup: withRule, by: admin, cmd: deleteRuleCmd("r2"), code: fsm.CodeNotFound},
		{name: "by a non-admin", setup: withRule, by: op, cmd: deleteRuleCmd("r1"), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: withRule, by: stranger, cmd: deleteRuleCmd("r1"), code: fsm.CodeBadSignature},
	})
}

func TestCreateKey(t *testing.T) {
	canCreate := then(ready, doing(admin, putRuleCmd("create-db", op.ID, "db/*", fsm.OpCreate)))
	keyWith := func(change func(*fsm.CreateKey)) *fsm.Command {
		c := createKeyCmd("db/k")
		change(c.CreateKey)
		return c
	}
	runTransition(t, []transitionCase{
		{name: "an admin creates a key", setup: canCreate, by: admin,
			// The key's times are the entry's, not the signer's clock.
			cmd: issued(keyWith(func(k *fsm.CreateKey) { k.ExpiresAt = t0.Add(time.Hour).UnixNano() }), -time.Minute),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				k := keyOf(t, h, "db/k")
				if !fsm.IsKeyID(k.ID) {
					t.Errorf("key ID %q", k.ID)
				}
				want := &fsm.Key{ID: k.ID, Name: "db/k", Type: fsm.KeyTypeSecret, Version: 1, State: fsm.KeyActive,
					CreatedAt: t0.UnixNano(), UpdatedAt: t0.UnixNano(), ExpiresAt: t0.Add(time.Hour).UnixNano(),
					R: point(1), Sealed: sealed(1)}
				if !reflect.DeepEqual(k, want) {
					t.Errorf("key\n got %+v\nwant %+v", k, want)
				}
				if !reflect.DeepEqual(res.Key, want.Metadata()) || res.Key.R != nil || res.Key.Sealed != nil {
					t.Errorf("result key %+v, want the metadata without material", res.Key)
				}
			}},
		{name: "an operator with a create rule on the prefix", setup: canCreate, by: op, cmd: createKeyCmd("db/k")},
		{name: "name of 200 bytes", setup: canCreate, by: admin, cmd: createKeyCmd(maxName)},
		{name: "sealed material of 64 KiB", setup: canCreate, by: admin,
			cmd: keyWith(func(k *fsm.CreateKey) { k.Sealed = make([]byte, fsm.MaxSealedSize) })},
		{name: "the name of a destroyed key, at the next version", by: admin,
			setup: then(canCreate, doing(admin, createKeyCmd("db/k")), doing(admin, destroyKeyCmd("db/k"))),
			cmd:   keyWith(func(k *fsm.CreateKey) { k.R, k.Sealed = point(7), sealed(7) }),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				k := keyOf(t, h, "db/k")
				if k.Version != 2 || k.State != fsm.KeyActive || !bytes.Equal(k.Sealed, sealed(7)) || res.Key.Version != 2 {
					t.Errorf("key %+v, want active at version 2 with the new material", k)
				}
			}},

		{name: "not initialized", by: admin, cmd: createKeyCmd("db/k"), code: fsm.CodeState},
		{name: "before the cluster key exists", setup: initialized, by: admin, cmd: createKeyCmd("db/k"), code: fsm.CodeState},
		{name: "an operator outside its prefix", setup: canCreate, by: op, cmd: createKeyCmd("web/k"), code: fsm.CodeDenied},
		{name: "an operator without a rule", setup: ready, by: op, cmd: createKeyCmd("db/k"), code: fsm.CodeDenied},
		{name: "an operator with a get rule only", setup: then(ready, doing(admin, putRuleCmd("g", op.ID, "db/*", fsm.OpGet))),
			by: op, cmd: createKeyCmd("db/k"), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: canCreate, by: stranger, cmd: createKeyCmd("db/k"), code: fsm.CodeBadSignature},
		{name: "by a node", setup: canCreate, by: node(1), cmd: createKeyCmd("db/k"), code: fsm.CodeBadSignature},
		{name: "unsigned", setup: canCreate, entry: unsigned(admin, createKeyCmd("db/k")), code: fsm.CodeBadSignature},
		{name: "material changed after signing", setup: canCreate, code: fsm.CodeBadSignature,
			entry: tampered(admin, createKeyCmd("db/k"), func(c *fsm.Command) { c.CreateKey.Sealed = sealed(9) })},
		{name: "name taken", setup: then(canCreate, doing(admin, createKeyCmd("db/k"))), by: admin,
			cmd: createKeyCmd("db/k"), code: fsm.CodeExists},
		{name: "name of a revoked key", setup: then(canCreate, doing(admin, createKeyCmd("db/k")), doing(admin, revokeKeyCmd("db/k"))),
			by: admin, cmd: createKeyCmd("db/k"), code: fsm.CodeExists},
		{name: "name ../x", setup: canCreate, by: admin, cmd: createKeyCmd("../x"), code: fsm.CodeInvalid},
		{name: "name db/../x", setup: canCreate, by: admin, cmd: createKeyCmd("db/../x"), code: fsm.CodeInvalid},
		{name: "name db//x", setup: canCreate, by: admin, cmd: createKeyCmd("db//x"), code: fsm.CodeInvalid},
		{name: "name db/./x", setup: canCreate, by: admin, cmd: createKeyCmd("db/./x"), code: fsm.CodeInvalid},
		{name: "name db/", setup: canCreate, by: admin, cmd: createKeyCmd("db/"), code: fsm.CodeInvalid},
		{name: "empty name", setup: canCreate, by: admin, cmd: createKeyCmd(""), code: fsm.CodeInvalid},
		{name: "name of 201 bytes", setup: canCreate, by: admin, cmd: createKeyCmd(longName), code: fsm.CodeInvalid},
		{name: "absolute name", setup: canCreate, by: admin, cmd: createKeyCmd("/db/k"), code: fsm.CodeInvalid},
		{name: "name with a space", setup: canCreate, by: admin, cmd: createKeyCmd("db/k k"), code: fsm.CodeInvalid},
		{name: "wrong key type", setup: canCreate, by: admin, code: fsm.CodeInvalid,
			cmd: keyWith(func(k *fsm.CreateKey) { k.Type = "rsa" })},
		{name: "no key type", setup: canCreate, by: admin, code: fsm.CodeInvalid,
			cmd: keyWith(func(k *fsm.CreateKey) { k.Type = "" })},
		{name: "point of 31 bytes", setup: canCreate, by: admin, code: fsm.CodeInvalid,
			cmd: keyWith(func(k *fsm.CreateKey) { k.R = k.R[:31] })},
		{name: "no sealed material", setup: canCreate, by: admin, code: fsm.CodeInvalid,
			cmd: keyWith(func(k *fsm.CreateKey) { k.Sealed = nil })},
		{name: "sealed material over 64 KiB", setup: canCreate, by: admin, code: fsm.CodeInvalid,
			cmd: keyWith(func(k *fsm.CreateKey) { k.Sealed = make([]byte, fsm.MaxSealedSize+1) })},
		{name: "no key", setup: canCreate, by: admin, cmd: &fsm.Command{Type: fsm.TypeCreateKey}, code: fsm.CodeInvalid},
		{name: "stale", setup: canCreate, by: admin, cmd: issued(createKeyCmd("db/k"), -fsm.MaxClockSkew-time.Second), code: fsm.CodeClockSkew},
		{name: "from the future", setup: canCreate, by: admin, cmd: issued(createKeyCmd("db/k"), fsm.MaxClockSkew+time.Second), code: fsm.CodeClockSkew},
	})
}

func TestReplaceKey(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "swaps the material at the expected version", setup: withKey, by: admin, cmd: replaceKeyCmd("db/a", 1),
			advance: time.Minute,
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				k := keyOf(t, h, "db/a")
				if k.Version != 2 || k.State != fsm.KeyActive || !bytes.Equal(k.R, point(2)) || !bytes.Equal(k.Sealed, sealed(2)) {
					t.Errorf("key %+v, want version 2 with the new material", k)
				}
				if k.CreatedAt != t0.UnixNano() || k.UpdatedAt != t0.Add(time.Minute).UnixNano() {
					t.Errorf("created %d updated %d, want the entry times", k.CreatedAt, k.UpdatedAt)
				}
				if res.Key == nil || res.Key.Version != 2 || res.Key.R != nil || res.Key.Sealed != nil {
					t.Errorf("result key %+v, want version 2 without material", res.Key)
				}
			}},
		{name: "an operator with a cas rule", setup: then(withKey, doing(admin, putRuleCmd("cas", op.ID, "db/*", fsm.OpCAS))),
			by: op, cmd: replaceKeyCmd("db/a", 1)},
		{name: "twice in a row", setup: then(withKey, doing(admin, replaceKeyCmd("db/a", 1))), by: admin, cmd: replaceKeyCmd("db/a", 2)},

		{name: "not initialized", by: admin, cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeState},
		{name: "expected version 0", setup: withKey, by: admin, cmd: replaceKeyCmd("db/a", 0), code: fsm.CodeConflict},
		{name: "expected version 2", setup: withKey, by: admin, cmd: replaceKeyCmd("db/a", 2), code: fsm.CodeConflict},
		{name: "a second swap from the same version", setup: then(withKey, doing(admin, replaceKeyCmd("db/a", 1))),
			by: admin, cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeConflict},
		{name: "unknown key", setup: withKey, by: admin, cmd: replaceKeyCmd("db/b", 1), code: fsm.CodeNotFound},
		{name: "revoked key", setup: then(withKey, doing(admin, revokeKeyCmd("db/a"))), by: admin,
			cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeState},
		{name: "destroyed key", setup: then(withKey, doing(admin, destroyKeyCmd("db/a"))), by: admin,
			cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeState},
		{name: "an operator without a rule", setup: withKey, by: op, cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeDenied},
		{name: "an operator with get and create only", by: op, cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeDenied,
			setup: then(withKey, doing(admin, putRuleCmd("gc", op.ID, "db/*", fsm.OpGet, fsm.OpCreate)))},
		{name: "by an unknown operator", setup: withKey, by: stranger, cmd: replaceKeyCmd("db/a", 1), code: fsm.CodeBadSignature},
		{name: "expected version changed after signing", setup: withKey, code: fsm.CodeBadSignature,
			entry: tampered(admin, replaceKeyCmd("db/a", 0), func(c *fsm.Command) { c.ReplaceKey.ExpectVersion = 1 })},
		{name: "point of 31 bytes", setup: withKey, by: admin, code: fsm.CodeInvalid,
			cmd: with(replaceKeyCmd("db/a", 1), func(c *fsm.Command) { c.ReplaceKey.R = point(2)[:31] })},
		{name: "no sealed material", setup: withKey, by: admin, code: fsm.CodeInvalid,
			cmd: with(replaceKeyCmd("db/a", 1), func(c *fsm.Command) { c.ReplaceKey.Sealed = nil })},
		{name: "no body", setup: withKey, by: admin, cmd: &fsm.Command{Type: fsm.TypeReplaceKey}, code: fsm.CodeInvalid},
	})
}

func TestRevokeKey(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "revokes the key", setup: withKey, by: admin, cmd: revokeKeyCmd("db/a"), advance: time.Minute,
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				k := keyOf(t, h, "db/a")
				if k.State != fsm.KeyRevoked || k.Version != 1 || k.UpdatedAt != t0.Add(time.Minute).UnixNano() {
					t.Errorf("key %+v, want revoked at version 1, updated at the entry time", k)
				}
				if res.Key == nil || res.Key.State != fsm.KeyRevoked || res.Key.Sealed != nil {
					t.Errorf("result key %+v", res.Key)
				}
			}},
		{name: "an operator with a revoke rule", setup: then(withKey, doing(admin, putRuleCmd("rv", op.ID, "db/*", fsm.OpRevoke))),
			by: op, cmd: revokeKeyCmd("db/a")},

		{name: "not initialized", by: admin, cmd: revokeKeyCmd("db/a"), code: fsm.CodeState},
		{name: "unknown key", setup: withKey, by: admin, cmd: revokeKeyCmd("db/b"), code: fsm.CodeNotFound},
		{name: "no name", setup: withKey, by: admin, cmd: revokeKeyCmd(""), code: fsm.CodeNotFound},
		{name: "already revoked", setup: then(withKey, doing(admin, revokeKeyCmd("db/a"))), by: admin,
			cmd: revokeKeyCmd("db/a"), code: fsm.CodeState},
		{name: "destroyed", setup: then(withKey, doing(admin, destroyKeyCmd("db/a"))), by: admin,
			cmd: revokeKeyCmd("db/a"), code: fsm.CodeState},
		{name: "an operator without a rule", setup: withKey, by: op, cmd: revokeKeyCmd("db/a"), code: fsm.CodeDenied},
		{name: "an operator with destroy only", setup: then(withKey, doing(admin, putRuleCmd("d", op.ID, "db/*", fsm.OpDestroy))),
			by: op, cmd: revokeKeyCmd("db/a"), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: withKey, by: stranger, cmd: revokeKeyCmd("db/a"), code: fsm.CodeBadSignature},
	})
}

func TestDestroyKey(t *testing.T) {
	runTransition(t, []transitionCase{
		{name: "destroys the key and erases its material", setup: withKey, by: admin, cmd: destroyKeyCmd("db/a"),
			check: func(t *testing.T, h *harness, res *fsm.Result) {
				k := keyOf(t, h, "db/a")
				if k.State != fsm.KeyDestroyed || k.R != nil || k.Sealed != nil {
					t.Errorf("key %+v, want destroyed without material", k)
				}
				if res.Key == nil || res.Key.State != fsm.KeyDestroyed {
					t.Errorf("result key %+v", res.Key)
				}
			}},
		{name: "destroys a revoked key", setup: then(withKey, doing(admin, revokeKeyCmd("db/a"))), by: admin, cmd: destroyKeyCmd("db/a"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if k := keyOf(t, h, "db/a"); k.State != fsm.KeyDestroyed || k.Sealed != nil {
					t.Errorf("key %+v, want destroyed without material", k)
				}
			}},
		{name: "an operator with a destroy rule", setup: then(withKey, doing(admin, putRuleCmd("d", op.ID, "db/a", fsm.OpDestroy))),
			by: op, cmd: destroyKeyCmd("db/a")},

		{name: "not initialized", by: admin, cmd: destroyKeyCmd("db/a"), code: fsm.CodeState},
		{name: "unknown key", setup: withKey, by: admin, cmd: destroyKeyCmd("db/b"), code: fsm.CodeNotFound},
		{name: "already destroyed", setup: then(withKey, doing(admin, destroyKeyCmd("db/a"))), by: admin,
			cmd: destroyKeyCmd("db/a"), code: fsm.CodeState},
		{name: "an operator without a rule", setup: withKey, by: op, cmd: destroyKeyCmd("db/a"), code: fsm.CodeDenied},
		{name: "an operator with revoke only", setup: then(withKey, doing(admin, putRuleCmd("rv", op.ID, "db/*", fsm.OpRevoke))),
			by: op, cmd: destroyKeyCmd("db/a"), code: fsm.CodeDenied},
		{name: "by an unknown operator", setup: withKey, by: stranger, cmd: destroyKeyCmd("db/a"), code: fsm.CodeBadSignature},
	})
}

func TestDeal(t *testing.T) {
	// freshTwo: the first DKG with two members, which needs both deals.
	freshTwo := then(initialized, admitting(nodeSpec(2)))
	dealBy := func(i int, deal string) func(h *harness) {
		return func(h *harness) { h.must(node(i), dealCmd(h.round(), uint32(i), deal)) }
	}
	inRound := func(dealer uint32, deal string) func(h *harness) *fsm.Command {
		return func(h *harness) *fsm.Command { return dealCmd(h.round(), dealer, deal) }
	}
	runTransition(t, []transitionCase{
		{name: "the only member's deal qualifies the first DKG", setup: initialized, by: node(1), cmdAt: inRound(1, "ok"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				r := s.Reshare
				if !r.Qualified() || !reflect.DeepEqual(r.Poly, fixedPoly()) || !reflect.DeepEqual(r.Deals, []fsm.Deal{{Dealer: 1, Deal: []byte("ok")}}) {
					t.Errorf("round %+v, want qualified with the combined commitments", r)
				}
				if s.Epoch != 0 || s.Poly != nil {
					t.Errorf("epoch %d, poly %x: the epoch changes only when every member acknowledged", s.Epoch, s.Poly)
				}
				if got := h.checker.oldPolys[len(h.checker.oldPolys)-1]; got != nil {
					t.Errorf("a fresh round's deal was checked against %x, want no commitments", got)
				}
			}},
		{name: "a deal short of qualifying", setup: freshTwo, by: node(2), cmdAt: inRound(2, "ok"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if r := h.state().Reshare; r.Qualified() || !r.HasDealt(2) || r.HasDealt(1) {
					t.Errorf("round %+v, want node 2's deal only, not qualified", r)
				}
			}},
		{name: "a resharing deal is checked against the current commitments",
			setup: then(ready, admitting(nodeSpec(2))), by: node(1), cmdAt: inRound(1, "ok"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if got := h.checker.oldPolys[len(h.checker.oldPolys)-1]; !reflect.DeepEqual(got, fixedPoly()) {
					t.Errorf("deal checked against %x, want the current epoch's commitments", got)
				}
				if !h.state().Reshare.Qualified() {
					t.Errorf("one deal must qualify a resharing from threshold 1")
				}
			}},
		{name: "a leaving holder deals", setup: then(twoHolders, doing(admin, removeNodeCmd("node-2"))),
			by: node(2), cmdAt: inRound(2, "ok")},

		{name: "not initialized", by: node(1), cmd: dealCmd(1, 1, "ok"), code: fsm.CodeState},
		{name: "refused by the checker", setup: initialized, by: node(1), cmdAt: inRound(1, "forged"), code: fsm.CodeInvalid},
		{name: "no round in progress", setup: ready, by: node(1), cmd: dealCmd(1, 1, "ok"), code: fsm.CodeState},
		{name: "for another round", setup: initialized, by: node(1), code: fsm.CodeState,
			cmdAt: func(h *harness) *fsm.Command { return dealCmd(h.round()+1, 1, "ok") }},
		{name: "for a replaced round", setup: freshTwo, by: node(1), code: fsm.CodeState,
			cmdAt: func(h *harness) *fsm.Command { return dealCmd(1, 1, "ok") }},
		{name: "as another dealer", setup: freshTwo, by: node(1), cmdAt: inRound(2, "ok"), code: fsm.CodeDenied},
		{name: "from a node that is not a dealer", setup: then(ready, admitting(nodeSpec(2))),
			by: node(2), cmdAt: inRound(2, "ok"), code: fsm.CodeDenied},
		{name: "a second deal from the same dealer", setup: then(freshTwo, dealBy(1, "ok")),
			by: node(1), cmdAt: inRound(1, "ok"), code: fsm.CodeExists},
		{name: "after the round qualified", by: node(3), cmdAt: inRound(3, "ok"), code: fsm.CodeState,
			setup: then(threeHolders, admitting(nodeSpec(4)), dealBy(1, "ok"), dealBy(2, "ok"))},
		{name: "from an operator", setup: initialized, by: admin, cmdAt: inRound(1, "ok"), code: fsm.CodeBadSignature},
		{name: "from an unknown node", setup: initialized, by: node(9), cmdAt: inRound(1, "ok"), code: fsm.CodeBadSignature},
		{name: "signed with another node's key", setup: freshTwo, code: fsm.CodeBadSignature,
			entry: func(h *harness) []byte { return signedWith("node-1", node(2), dealCmd(h.round(), 1, "ok"))(h) }},
		{name: "unsigned", setup: initialized, code: fsm.CodeBadSignature,
			entry: func(h *harness) []byte { return unsigned(node(1), dealCmd(h.round(), 1, "ok"))(h) }},
		{name: "no deal", setup: initialized, by: node(1), cmd: &fsm.Command{Type: fsm.TypeDeal}, code: fsm.CodeInvalid},
		{name: "stale", setup: initialized, by: node(1), code: fsm.CodeClockSkew,
			cmdAt: func(h *harness) *fsm.Command {
				return issued(dealCmd(h.round(), 1, "ok"), -fsm.MaxClockSkew-time.Second)
			}},
	})
}

func TestReshareAck(t *testing.T) {
	freshTwo := then(initialized, admitting(nodeSpec(2)))
	dealt := func(h *harness) {
		r := h.round()
		h.must(node(1), dealCmd(r, 1, "ok"))
		h.must(node(2), dealCmd(r, 2, "ok"))
	}
	ackBy := func(i int) func(h *harness) {
		return func(h *harness) { h.must(node(i), ackCmd(h.round())) }
	}
	inRound := func(h *harness) *fsm.Command { return ackCmd(h.round()) }
	runTransition(t, []transitionCase{
		{name: "a member acknowledges", setup: then(freshTwo, dealt), by: node(1), cmdAt: inRound,
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if s.Reshare == nil || !reflect.DeepEqual(s.Reshare.Acks, []string{"node-1"}) || s.Epoch != 0 {
					t.Errorf("round %+v epoch %d, want node-1's ack and no new epoch yet", s.Reshare, s.Epoch)
				}
			}},
		{name: "the last ack completes the round", setup: then(freshTwo, dealt, ackBy(1)), by: node(2), cmdAt: inRound,
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if s.Reshare != nil || s.Epoch != 1 || s.Threshold != 2 || !reflect.DeepEqual(s.Poly, fixedPoly()) ||
					!bytes.Equal(s.PublicKey(), fixedPoly()[0]) {
					t.Errorf("round %+v epoch %d threshold %d poly %x", s.Reshare, s.Epoch, s.Threshold, s.Poly)
				}
				if hs := s.Holders(); len(hs) != 2 || hs[0].ID != "node-1" || hs[1].ID != "node-2" {
					t.Errorf("holders %+v, want node-1 and node-2", hs)
				}
			}},

		{name: "not initialized", by: node(1), cmd: ackCmd(1), code: fsm.CodeState},
		{name: "before the round qualified", setup: freshTwo, by: node(1), cmdAt: inRound, code: fsm.CodeState},
		{name: "with one deal of two", setup: then(freshTwo, func(h *harness) { h.must(node(1), dealCmd(h.round(), 1, "ok")) }),
			by: node(2), cmdAt: inRound, code: fsm.CodeState},
		{name: "no round in progress", setup: ready, by: node(1), cmd: ackCmd(99), code: fsm.CodeState},
		{name: "the last round, acknowledged already", setup: ready, by: node(1), cmd: ackCmd(1), code: fsm.CodeExists},
		{name: "for another round", setup: then(freshTwo, dealt), by: node(1), code: fsm.CodeState,
			cmdAt: func(h *harness) *fsm.Command { return ackCmd(h.round() + 1) }},
		{name: "twice", setup: then(freshTwo, dealt, ackBy(1)), by: node(1), cmdAt: inRound, code: fsm.CodeExists},
		{name: "from a leaving node, not a member",
			setup: then(twoHolders, doing(admin, removeNodeCmd("node-2")), func(h *harness) {
				h.must(node(1), dealCmd(h.round(), 1, "ok"))
				h.must(node(2), dealCmd(h.round(), 2, "ok"))
			}),
			by: node(2), cmdAt: inRound, code: fsm.CodeDenied},
		{name: "from an operator", setup: then(freshTwo, dealt), by: admin, cmdAt: inRound, code: fsm.CodeBadSignature},
		{name: "signed with another node's key", setup: then(freshTwo, dealt), code: fsm.CodeBadSignature,
			entry: func(h *harness) []byte { return signedWith("node-1", node(2), ackCmd(h.round()))(h) }},
		{name: "no body", setup: then(freshTwo, dealt), by: node(1), cmd: &fsm.Command{Type: fsm.TypeReshareAck}, code: fsm.CodeInvalid},
	})
}

// Commands the log must never hold: unknown types, and release requests,
// which share holders authorize but never apply.
func TestUnknownCommand(t *testing.T) {
	release := &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "db/a", Op: fsm.OpGet}}
	runTransition(t, []transitionCase{
		{name: "unknown type", setup: ready, by: admin, cmd: &fsm.Command{Type: "grant_everything"}, code: fsm.CodeInvalid},
		{name: "no type", setup: ready, by: admin, cmd: &fsm.Command{}, code: fsm.CodeInvalid},
		{name: "a release request", setup: withKey, by: admin, cmd: release, code: fsm.CodeInvalid},
	})
}
