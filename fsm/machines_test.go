package fsm_test

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

var (
	laptop = operatorPrincipal(20) // a machine: machines sign like operators, with their own keys
	server = operatorPrincipal(21)
)

func machineSpec(p principal, name string, approval bool, keys ...string) *fsm.Machine {
	return &fsm.Machine{ID: p.ID, Name: name, PublicKey: p.pub(), Keys: keys, Approval: approval}
}

func addMachineCmd(m *fsm.Machine) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeAddMachine, AddMachine: m}
}
func revokeMachineCmd(id string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRevokeMachine, RevokeMachine: id}
}
func approveCmd(machine, key string, uses int, until time.Time) *fsm.Command {
	a := &fsm.Approval{Machine: machine, Key: key, Uses: uses}
	if !until.IsZero() {
		a.Until = until.UnixNano()
	}
	return &fsm.Command{Type: fsm.TypeApprove, Approve: a}
}
func recordSessionCmd(machine, key string) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.Session{Machine: machine, Key: key, Addr: "10.1.2.3"}}
}
func useApprovalCmd(machine, key string, nonce []byte) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeUseApproval, UseApproval: &fsm.UseApproval{Machine: machine, Key: key, Nonce: nonce}}
}

// machines: ready, the secrets luks/a and luks/b, laptop (needs approval,
// may fetch luks/*) and server (no approval, may fetch luks/a).
func machines(h *harness) {
	ready(h)
	h.must(admin, createKeyCmd("luks/a"))
	h.must(admin, createKeyCmd("luks/b"))
	h.must(admin, addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*")))
	h.must(admin, addMachineCmd(machineSpec(server, "server", false, "luks/a")))
}

var requestNonce = bytes.Repeat([]byte{7}, 16)

func TestMachineCommands(t *testing.T) {
	soon := t0.Add(time.Hour)
	runTransition(t, []transitionCase{
		{name: "add a machine", setup: ready, by: admin, cmd: addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*"))},
		{name: "add a machine again", setup: machines, by: admin, cmd: addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*")), code: fsm.CodeExists},
		{name: "add a revoked machine again", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: admin,
			cmd: addMachineCmd(machineSpec(laptop, "laptop", false, "luks/a"))},
		{name: "add a machine by a non-admin", setup: ready, by: op, cmd: addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*")), code: fsm.CodeDenied},
		{name: "a machine whose ID is not its key's", setup: ready, by: admin, code: fsm.CodeInvalid,
			cmd: with(addMachineCmd(machineSpec(laptop, "laptop", true, "luks/*")), func(c *fsm.Command) { c.AddMachine.ID = server.ID })},
		{name: "a machine without keys", setup: ready, by: admin, cmd: addMachineCmd(machineSpec(laptop, "laptop", true)), code: fsm.CodeInvalid},
		{name: "a machine with a bad key pattern", setup: ready, by: admin, cmd: addMachineCmd(machineSpec(laptop, "laptop", true, "../x")), code: fsm.CodeInvalid},
		{name: "a machine without a name", setup: ready, by: admin, cmd: addMachineCmd(machineSpec(laptop, "", true, "luks/a")), code: fsm.CodeInvalid},
		{name: "a machine with an operator's key", setup: ready, by: admin, cmd: addMachineCmd(machineSpec(op, "bob", true, "luks/a")), code: fsm.CodeExists},

		{name: "revoke a machine", setup: then(machines, doing(admin, approveCmd(laptop.ID, "", 0, soon))), by: admin, cmd: revokeMachineCmd(laptop.ID),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if s.Machines[laptop.ID].State != fsm.MachineRevoked || len(s.Approvals) != 0 {
					t.Errorf("machine %+v, approvals %v: want revoked, approvals gone", s.Machines[laptop.ID], s.Approvals)
				}
			}},
		{name: "revoke a machine twice", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: admin, cmd: revokeMachineCmd(laptop.ID), code: fsm.CodeState},
		{name: "revoke an unknown machine", setup: machines, by: admin, cmd: revokeMachineCmd("nope"), code: fsm.CodeNotFound},

		{name: "approve one use", setup: machines, by: admin, cmd: approveCmd(laptop.ID, "luks/a", 1, time.Time{})},
		{name: "approve a window", setup: machines, by: admin, cmd: approveCmd(laptop.ID, "", 0, soon)},
		{name: "approve by an operator with the approve rule", setup: then(machines, doing(admin, putRuleCmd("ap", op.ID, "luks/*", fsm.OpApprove))),
			by: op, cmd: approveCmd(laptop.ID, "luks/b", 1, time.Time{})},
		{name: "approve by an operator without it", setup: machines, by: op, cmd: approveCmd(laptop.ID, "luks/b", 1, time.Time{}), code: fsm.CodeDenied},
		{name: "approve every key, by a non-admin", setup: then(machines, doing(admin, putRuleCmd("ap", op.ID, "luks/*", fsm.OpApprove))),
			by: op, cmd: approveCmd(laptop.ID, "", 1, time.Time{}), code: fsm.CodeDenied},
		{name: "approve nothing", setup: machines, by: admin, cmd: approveCmd(laptop.ID, "luks/a", 0, time.Time{}), code: fsm.CodeInvalid},
		{name: "approve a window in the past", setup: machines, by: admin, cmd: approveCmd(laptop.ID, "luks/a", 0, t0.Add(-time.Second)), code: fsm.CodeInvalid},
		{name: "approve a window of a year", setup: machines, by: admin, cmd: approveCmd(laptop.ID, "luks/a", 0, t0.Add(365*24*time.Hour)), code: fsm.CodeInvalid},
		{name: "approve a key the machine may not fetch", setup: machines, by: admin, cmd: approveCmd(server.ID, "luks/b", 1, time.Time{}), code: fsm.CodeInvalid},
		{name: "approve a revoked machine", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: admin,
			cmd: approveCmd(laptop.ID, "luks/a", 1, time.Time{}), code: fsm.CodeState},

		{name: "a node records a session", setup: machines, by: node(1), cmd: recordSessionCmd(laptop.ID, "luks/a"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				ss := h.state().Sessions[laptop.ID]
				if ss == nil || ss.Attempts != 1 || ss.Addr != "10.1.2.3" || ss.Name != "laptop" || !bytes.Equal(ss.PublicKey, laptop.pub()) {
					t.Errorf("session %+v", ss)
				}
			}},
		{name: "an operator records a session", setup: machines, by: admin, cmd: recordSessionCmd(laptop.ID, "luks/a"), code: fsm.CodeBadSignature},
		{name: "a session of a revoked machine", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: node(1),
			cmd: recordSessionCmd(laptop.ID, "luks/a"), code: fsm.CodeNotFound},

		{name: "a node spends a use", setup: then(machines, doing(node(1), recordSessionCmd(laptop.ID, "luks/a")), doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))),
			by: node(1), cmd: useApprovalCmd(laptop.ID, "luks/a", requestNonce),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if len(s.Approvals) != 0 || s.Sessions[laptop.ID] != nil || len(s.Granted) != 1 {
					t.Errorf("approvals %v, sessions %v, granted %v: want the use spent, the session gone, the request granted", s.Approvals, s.Sessions, s.Granted)
				}
			}},
		{name: "a use with none left", setup: machines, by: node(1), cmd: useApprovalCmd(laptop.ID, "luks/a", requestNonce), code: fsm.CodeDenied},
		{name: "a use for the same request twice",
			setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 2, time.Time{})), doing(node(1), useApprovalCmd(laptop.ID, "luks/a", requestNonce))),
			by:    node(1), cmd: useApprovalCmd(laptop.ID, "luks/a", requestNonce), code: fsm.CodeReplay},
		{name: "a use by an operator", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))),
			by: admin, cmd: useApprovalCmd(laptop.ID, "luks/a", requestNonce), code: fsm.CodeBadSignature},
	})
}

// TestAuthorizeMachineRelease: a machine gets the secrets it may fetch,
// only with an ephemeral key; one that needs approval is pending until an
// operator approves one use (spent on one request) or a window.
func TestAuthorizeMachineRelease(t *testing.T) {
	eph := bytes.Repeat([]byte{9}, 32)
	get := func(key string) *fsm.Command {
		c := releaseCmd(key, fsm.OpGet)
		c.Release.Ephemeral = eph
		c.Nonce = requestNonce
		return c
	}
	cases := []struct {
		name  string
		setup func(h *harness)
		by    principal
		cmd   *fsm.Command
		code  fsm.Code
	}{
		{"a machine without approval", nil, server, get("luks/a"), ""},
		{"a key outside its list", nil, server, get("luks/b"), fsm.CodeDenied},
		{"without an ephemeral key", nil, server, with(get("luks/a"), func(c *fsm.Command) { c.Release.Ephemeral = nil }), fsm.CodeInvalid},
		{"a revoked machine", doing(admin, revokeMachineCmd(server.ID)), server, get("luks/a"), fsm.CodeDenied},
		{"a revoked key", doing(admin, revokeKeyCmd("luks/a")), server, get("luks/a"), fsm.CodeDenied},
		{"an unknown key", nil, server, get("luks/zz"), fsm.CodeNotFound},
		{"an unregistered machine", nil, operatorPrincipal(22), get("luks/a"), fsm.CodeBadSignature},
		{"needs approval", nil, laptop, get("luks/a"), fsm.CodePending},
		{"an unspent use is not yet a grant", doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})), laptop, get("luks/a"), fsm.CodePending},
		{"a spent use grants this request", then(doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})), doing(node(1), useApprovalCmd(laptop.ID, "luks/a", requestNonce))),
			laptop, get("luks/a"), ""},
		{"a spent use grants no other request", then(doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})), doing(node(1), useApprovalCmd(laptop.ID, "luks/a", requestNonce))),
			laptop, with(get("luks/a"), func(c *fsm.Command) { c.Nonce = bytes.Repeat([]byte{8}, 16) }), fsm.CodePending},
		{"a window", doing(admin, approveCmd(laptop.ID, "", 0, t0.Add(time.Minute))), laptop, get("luks/b"), ""},
		{"a window for another key", doing(admin, approveCmd(laptop.ID, "luks/b", 0, t0.Add(time.Minute))), laptop, get("luks/a"), fsm.CodePending},
		{"an operator sending an ephemeral key", nil, admin, get("luks/a"), fsm.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			machines(h)
			if tc.setup != nil {
				tc.setup(h)
			}
			_, _, err := authorize(h, h.signed(tc.by, tc.cmd), h.at)
			if got := codeOf(&fsm.Result{Error: err}); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
		})
	}
	t.Run("a window closes", func(t *testing.T) {
		h := newHarness(t)
		machines(h)
		h.must(admin, approveCmd(laptop.ID, "", 0, t0.Add(time.Minute)))
		_, _, err := authorize(h, h.signed(laptop, issued(get("luks/a"), time.Minute)), t0.Add(time.Minute))
		if codeOf(&fsm.Result{Error: err}) != fsm.CodePending {
			t.Errorf("at the window's end: %v, want pending", err)
		}
	})
}

func TestSubmitAndDeliver(t *testing.T) {
	submit := func(machine, by string, sealed []byte) *fsm.Command {
		return &fsm.Command{Type: fsm.TypeSubmitKey, SubmitKey: &fsm.SubmittedKey{Machine: machine, Sealed: sealed, By: by}}
	}
	delivered := func(machine string, sealed []byte) *fsm.Command {
		sum := sha256.Sum256(sealed)
		return &fsm.Command{Type: fsm.TypeDelivered, Delivered: &fsm.Delivered{Machine: machine, SHA256: sum[:]}}
	}
	pass := []byte("sealed passphrase")
	withSubmitted := then(machines, doing(node(1), submit(laptop.ID, admin.ID, pass)))
	runTransition(t, []transitionCase{
		{name: "a node submits for an operator", setup: then(machines, doing(node(1), recordSessionCmd(laptop.ID, ""))), by: node(1), cmd: submit(laptop.ID, admin.ID, pass),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if k := s.Submitted[laptop.ID]; k == nil || !bytes.Equal(k.Sealed, pass) || k.By != admin.ID || s.Sessions[laptop.ID] != nil {
					t.Errorf("submitted %+v, sessions %v", k, s.Sessions)
				}
			}},
		{name: "an operator signs it", setup: machines, by: admin, cmd: submit(laptop.ID, admin.ID, pass), code: fsm.CodeBadSignature},
		{name: "for an unknown operator", setup: machines, by: node(1), cmd: submit(laptop.ID, stranger.ID, pass), code: fsm.CodeNotFound},
		{name: "for a revoked machine", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: node(1), cmd: submit(laptop.ID, admin.ID, pass), code: fsm.CodeNotFound},
		{name: "empty", setup: machines, by: node(1), cmd: submit(laptop.ID, admin.ID, nil), code: fsm.CodeInvalid},
		{name: "delivered", setup: withSubmitted, by: node(1), cmd: delivered(laptop.ID, pass),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if len(h.state().Submitted) != 0 {
					t.Errorf("a delivered key is still there")
				}
			}},
		{name: "delivered, but another was submitted since", setup: withSubmitted, by: node(1), cmd: delivered(laptop.ID, []byte("older")), code: fsm.CodeConflict},
		{name: "delivered twice", setup: then(withSubmitted, doing(node(1), delivered(laptop.ID, pass))), by: node(1), cmd: delivered(laptop.ID, pass), code: fsm.CodeNotFound},
		{name: "a session without a key name", setup: machines, by: node(1), cmd: recordSessionCmd(laptop.ID, "")},
	})
}
