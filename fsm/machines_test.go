package fsm_test

import (
	"bytes"
	"crypto/ed25519"
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

// machineEph is the ephemeral key of the machines' release requests.
var machineEph = bytes.Repeat([]byte{9}, 32)

// machineRequest is the release request machine p signs for key with
// nonce, issued at t0+d.
func machineRequest(p principal, key string, nonce []byte, d time.Duration) *fsm.Signed {
	sg, err := fsm.Sign(p.ID, p.Key, &fsm.Command{Type: fsm.TypeRelease, Nonce: nonce, IssuedAt: t0.Add(d).UnixNano(),
		Release: &fsm.ReleaseRequest{Key: key, Op: fsm.OpGet, Ephemeral: machineEph}})
	if err != nil {
		panic(err)
	}
	return sg
}

// getKeyRequest is klefki's GetKey machine p signs with nonce at t0+d.
func getKeyRequest(p principal, nonce []byte, d time.Duration) *fsm.GetKeyRequest {
	at := t0.Add(d).UnixNano()
	return &fsm.GetKeyRequest{Machine: p.ID, Nonce: nonce, SignedAt: at,
		Signature: ed25519.Sign(p.Key, fsm.GetKeySigningInput(fsm.KlefkiID(p.pub()), nonce, at, nil))}
}

// recordSessionCmd records machine p's waiting release of key, or its
// waiting GetKey when key is "", with the request p signed.
func recordSessionCmd(p principal, key string) *fsm.Command {
	rs := &fsm.RecordSession{Addr: "10.1.2.3"}
	if key == "" {
		rs.GetKey = getKeyRequest(p, requestNonce, 0)
	} else {
		rs.Release = machineRequest(p, key, requestNonce, 0)
	}
	return &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: rs}
}

// useApprovalCmd spends a use on machine p's request for key with nonce.
func useApprovalCmd(p principal, key string, nonce []byte) *fsm.Command {
	return useApprovalWith(p.ID, key, nonce, machineRequest(p, key, nonce, 0))
}

func useApprovalWith(machine, key string, nonce []byte, req *fsm.Signed) *fsm.Command {
	return &fsm.Command{Type: fsm.TypeUseApproval, UseApproval: &fsm.UseApproval{Machine: machine, Key: key, Nonce: nonce, Request: req}}
}

// forged is sg with its signature made by p instead: what a node can make
// of a machine's request.
func forged(p principal, sg *fsm.Signed) *fsm.Signed {
	c := *sg
	c.Signature = signBytes(p, c.Payload)
	return &c
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

		{name: "a node records a session, with the machine's request", setup: machines, by: node(1), cmd: recordSessionCmd(laptop, "luks/a"),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				ss := h.state().Sessions[laptop.ID]
				if ss == nil || ss.Attempts != 1 || ss.Addr != "10.1.2.3" || ss.Name != "laptop" || !bytes.Equal(ss.PublicKey, laptop.pub()) {
					t.Errorf("session %+v", ss)
				}
			}},
		{name: "an operator records a session", setup: machines, by: admin, cmd: recordSessionCmd(laptop, "luks/a"), code: fsm.CodeBadSignature},
		{name: "a session of a revoked machine", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: node(1),
			cmd: recordSessionCmd(laptop, "luks/a"), code: fsm.CodeNotFound},

		{name: "a node spends a use", setup: then(machines, doing(node(1), recordSessionCmd(laptop, "luks/a")), doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))),
			by: node(1), cmd: useApprovalCmd(laptop, "luks/a", requestNonce),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if len(s.Approvals) != 0 || s.Sessions[laptop.ID] != nil || len(s.Granted) != 1 {
					t.Errorf("approvals %v, sessions %v, granted %v: want the use spent, the session gone, the request granted", s.Approvals, s.Sessions, s.Granted)
				}
			}},
		{name: "a use with none left", setup: machines, by: node(1), cmd: useApprovalCmd(laptop, "luks/a", requestNonce), code: fsm.CodeDenied},
		{name: "a use for the same request twice",
			setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 2, time.Time{})), doing(node(1), useApprovalCmd(laptop, "luks/a", requestNonce))),
			by:    node(1), cmd: useApprovalCmd(laptop, "luks/a", requestNonce), code: fsm.CodeReplay},
		{name: "a use by an operator", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))),
			by: admin, cmd: useApprovalCmd(laptop, "luks/a", requestNonce), code: fsm.CodeBadSignature},

		// A node relays use_approval and record_session; the machine's own
		// signed request is what decides them.
		{name: "a node spends a use without the machine's request", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, nil), code: fsm.CodeInvalid},
		{name: "a node spends a use on another machine's request", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, machineRequest(server, "luks/a", requestNonce, 0)), code: fsm.CodeInvalid},
		{name: "a node spends a use on a request it forged", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, forged(node(1), machineRequest(laptop, "luks/a", requestNonce, 0))), code: fsm.CodeBadSignature},
		{name: "a node spends a use on an old request", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, machineRequest(laptop, "luks/a", requestNonce, -fsm.MaxClockSkew-time.Second)), code: fsm.CodeClockSkew},
		{name: "a node spends a use on a request for another key", setup: then(machines, doing(admin, approveCmd(laptop.ID, "", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, machineRequest(laptop, "luks/b", requestNonce, 0)), code: fsm.CodeInvalid},
		{name: "a node spends a use on another nonce than the request's", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", bytes.Repeat([]byte{8}, 16), machineRequest(laptop, "luks/a", requestNonce, 0)), code: fsm.CodeInvalid},
		{name: "a node spends a use on a machine's command that is no release", setup: then(machines, doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{}))), by: node(1),
			cmd: useApprovalWith(laptop.ID, "luks/a", requestNonce, must(fsm.Sign(laptop.ID, laptop.Key, approveCmd(laptop.ID, "luks/a", 1, time.Time{})))), code: fsm.CodeInvalid},
		{name: "a session without the machine's request", setup: machines, by: node(1),
			cmd: &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{Addr: "10.1.2.3"}}, code: fsm.CodeInvalid},
		{name: "a session for a request a node forged", setup: machines, by: node(1),
			cmd: &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{Release: forged(node(1), machineRequest(laptop, "luks/a", requestNonce, 0))}}, code: fsm.CodeBadSignature},
		{name: "a session for an old request", setup: machines, by: node(1),
			cmd: &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{Release: machineRequest(laptop, "luks/a", requestNonce, -time.Hour)}}, code: fsm.CodeClockSkew},
		{name: "a session for a GetKey another machine signed", setup: machines, by: node(1),
			cmd: &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{GetKey: changed(getKeyRequest(server, requestNonce, 0), func(r *fsm.GetKeyRequest) { r.Machine = laptop.ID })}}, code: fsm.CodeBadSignature},
		{name: "a session for an old GetKey", setup: machines, by: node(1),
			cmd: &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{GetKey: getKeyRequest(laptop, requestNonce, -time.Hour)}}, code: fsm.CodeClockSkew},
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
		{"a spent use grants this request", then(doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})), doing(node(1), useApprovalCmd(laptop, "luks/a", requestNonce))),
			laptop, get("luks/a"), ""},
		{"a spent use grants no other request", then(doing(admin, approveCmd(laptop.ID, "luks/a", 1, time.Time{})), doing(node(1), useApprovalCmd(laptop, "luks/a", requestNonce))),
			laptop, with(get("luks/a"), func(c *fsm.Command) { c.Nonce = bytes.Repeat([]byte{8}, 16) }), fsm.CodePending},
		{"a window", doing(admin, approveCmd(laptop.ID, "", 0, t0.Add(time.Minute))), laptop, get("luks/b"), ""},
		{"a window for another key", doing(admin, approveCmd(laptop.ID, "luks/b", 0, t0.Add(time.Minute))), laptop, get("luks/a"), fsm.CodePending},
		{"an operator sending an ephemeral key (its client combines)", nil, admin, get("luks/a"), ""},
		{"an operator sending none", nil, admin, with(get("luks/a"), func(c *fsm.Command) { c.Release.Ephemeral = nil }), fsm.CodeInvalid},
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
	deliveredWith := func(machine string, sealed []byte, req *fsm.GetKeyRequest) *fsm.Command {
		sum := sha256.Sum256(sealed)
		return &fsm.Command{Type: fsm.TypeDelivered, Delivered: &fsm.Delivered{Machine: machine, SHA256: sum[:], Request: req}}
	}
	delivered := func(machine principal, sealed []byte, nonce byte) *fsm.Command {
		return deliveredWith(machine.ID, sealed, getKeyRequest(machine, bytes.Repeat([]byte{nonce}, 16), 0))
	}
	pass := []byte("sealed passphrase")
	withSubmitted := then(machines, doing(admin, submit(laptop.ID, admin.ID, pass)))
	runTransition(t, []transitionCase{
		{name: "an operator submits", setup: then(machines, doing(node(1), recordSessionCmd(laptop, ""))), by: op, cmd: submit(laptop.ID, "", pass),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				s := h.state()
				if k := s.Submitted[laptop.ID]; k == nil || !bytes.Equal(k.Sealed, pass) || k.By != op.ID || s.Sessions[laptop.ID] != nil {
					t.Errorf("submitted %+v, sessions %v", k, s.Sessions)
				}
			}},
		{name: "an operator submits, naming itself", setup: machines, by: admin, cmd: submit(laptop.ID, admin.ID, pass)},
		{name: "a node submits for an operator", setup: machines, by: node(1), cmd: submit(laptop.ID, admin.ID, pass), code: fsm.CodeBadSignature},
		{name: "an operator names another operator", setup: machines, by: op, cmd: submit(laptop.ID, admin.ID, pass), code: fsm.CodeDenied},
		{name: "an unknown operator", setup: machines, by: stranger, cmd: submit(laptop.ID, "", pass), code: fsm.CodeBadSignature},
		{name: "for a revoked machine", setup: then(machines, doing(admin, revokeMachineCmd(laptop.ID))), by: admin, cmd: submit(laptop.ID, admin.ID, pass), code: fsm.CodeNotFound},
		{name: "empty", setup: machines, by: admin, cmd: submit(laptop.ID, admin.ID, nil), code: fsm.CodeInvalid},
		{name: "delivered", setup: withSubmitted, by: node(1), cmd: delivered(laptop, pass, 1),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if len(h.state().Submitted) != 0 {
					t.Errorf("a delivered key is still there")
				}
			}},
		{name: "delivered, but another was submitted since", setup: withSubmitted, by: node(1), cmd: delivered(laptop, []byte("older"), 1), code: fsm.CodeConflict},
		{name: "delivered twice", setup: then(withSubmitted, doing(node(1), delivered(laptop, pass, 1))), by: node(1), cmd: delivered(laptop, pass, 2), code: fsm.CodeNotFound},
		{name: "a session without a key name", setup: machines, by: node(1), cmd: recordSessionCmd(laptop, ""),
			check: func(t *testing.T, h *harness, _ *fsm.Result) {
				if ss := h.state().Sessions[laptop.ID]; ss == nil || ss.Key != "" || ss.Addr != "10.1.2.3" {
					t.Errorf("session %+v", ss)
				}
			}},

		// A node relays delivered; the machine's GetKey is what decides it.
		{name: "delivered by an operator", setup: withSubmitted, by: admin, cmd: delivered(laptop, pass, 1), code: fsm.CodeBadSignature},
		{name: "delivered without the machine's GetKey", setup: withSubmitted, by: node(1), cmd: deliveredWith(laptop.ID, pass, nil), code: fsm.CodeInvalid},
		{name: "delivered with another machine's GetKey", setup: withSubmitted, by: node(1),
			cmd: deliveredWith(laptop.ID, pass, getKeyRequest(server, requestNonce, 0)), code: fsm.CodeInvalid},
		{name: "delivered with a GetKey a node forged", setup: withSubmitted, by: node(1),
			cmd:  deliveredWith(laptop.ID, pass, changed(getKeyRequest(laptop, requestNonce, 0), func(r *fsm.GetKeyRequest) { r.Signature = ed25519.Sign(node(1).Key, []byte("x")) })),
			code: fsm.CodeBadSignature},
		{name: "delivered with an old GetKey", setup: withSubmitted, by: node(1),
			cmd: deliveredWith(laptop.ID, pass, getKeyRequest(laptop, requestNonce, -fsm.MaxClockSkew-time.Second)), code: fsm.CodeClockSkew},
		{name: "the same GetKey delivers twice",
			setup: then(withSubmitted, doing(node(1), delivered(laptop, pass, 1)), doing(admin, submit(laptop.ID, admin.ID, pass))),
			by:    node(1), cmd: delivered(laptop, pass, 1), code: fsm.CodeReplay},
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func changed[T any](v T, change func(T)) T {
	change(v)
	return v
}
