package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"github.com/keyquorum/keyquorum/cluster/audit"
	"github.com/keyquorum/keyquorum/fsm"
)

// ConsoleService is what the operator's console (gateway/console) reads
// and checks besides Service and MachineService. It reads; it never
// approves: an approval or a denial is a command an operator's passkey
// signs, which the console submits (Service.Submit) and every replica
// verifies when it applies it. *Node implements it.
type ConsoleService interface {
	Service
	MachineService
	// ConsoleView is the part of the state the console shows, at a
	// linearizable read: no key material, no sealed blobs.
	ConsoleView(ctx context.Context) (*ConsoleView, error)
	// SignIn checks an operator's passkey-signed sign_in command against
	// this node's applied state (fsm.State.VerifyPasskey) and spends its
	// nonce in the node's nonce cache: it opens a console session on this
	// node only, and authorizes nothing any holder relies on.
	SignIn(ctx context.Context, sg *fsm.Signed) (*fsm.Operator, *fsm.Command, error)
	// Decisions are the last entries this node applied, newest first
	// (fsm.FSM.Recent): the replicated log of decisions.
	Decisions(max int) []Decision
	// AuditTrail is this node's own last authorization decisions, newest
	// first, as its hash-chained audit log holds them (package audit),
	// since the node started.
	AuditTrail(max int) []audit.Record
}

var _ ConsoleService = (*Node)(nil)

// ConsoleView is a copy of what the console shows of the state.
type ConsoleView struct {
	Applied   uint64
	Operators []*fsm.Operator
	Rules     []*fsm.Rule
	Keys      []*fsm.Key // R and Sealed cleared
	Machines  []*fsm.Machine
	Sessions  []*fsm.Session
	Approvals []*fsm.Approval
	Denials   []*fsm.Denial
	Passkeys  []*fsm.Passkey
	// Getters are, by key name, the operators (by name) whose rules let
	// them release the key to their own client: admins, and rules with
	// get.
	Getters map[string][]string
	// names are the operators' and machines' names by ID.
	names map[string]string
}

// Name is the name of the operator or machine with ID id, or id itself
// (a node's ID is its name).
func (v *ConsoleView) Name(id string) string {
	if name, ok := v.names[id]; ok {
		return name
	}
	return id
}

// Decision is one applied log entry as the audit page shows it.
type Decision struct {
	Index   uint64
	Time    time.Time
	Signer  string
	Type    string
	Passkey bool   // signed by a passkey's assertion
	Digest  string // SHA-256 of the entry, hex, short
}

// ConsoleView reads the state at a linearizable read.
func (n *Node) ConsoleView(ctx context.Context) (*ConsoleView, error) {
	v := &ConsoleView{}
	err := n.consistent(ctx, func(s *fsm.State) {
		v.Applied = s.Applied
		v.Operators = copied(s.Operators)
		v.Rules = copied(s.Rules)
		v.Keys = copied(s.Keys)
		for _, k := range v.Keys {
			k.R, k.Sealed = nil, nil
			d := k.Detail()
			d.Tang = nil
			k.SetDetail(d)
		}
		v.Machines = copied(s.Machines)
		v.Sessions = copied(s.Sessions)
		v.Approvals = copied(s.Approvals)
		v.Denials = copied(s.Denials)
		v.Passkeys = copied(s.Passkeys)
		v.names = map[string]string{}
		for _, o := range s.Operators {
			v.names[o.ID] = o.Name
		}
		for _, m := range s.Machines {
			v.names[m.ID] = m.Name
		}
		v.Getters = map[string][]string{}
		for _, k := range s.Keys {
			for _, o := range s.Operators {
				if s.Allowed(o.ID, fsm.OpGet, k.Name) {
					v.Getters[k.Name] = append(v.Getters[k.Name], o.Name)
				}
			}
			sort.Strings(v.Getters[k.Name])
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(v.Operators, func(i, j int) bool { return v.Operators[i].Name < v.Operators[j].Name })
	sort.Slice(v.Rules, func(i, j int) bool { return v.Rules[i].ID < v.Rules[j].ID })
	sort.Slice(v.Keys, func(i, j int) bool { return v.Keys[i].Name < v.Keys[j].Name })
	sort.Slice(v.Machines, func(i, j int) bool { return v.Machines[i].Name < v.Machines[j].Name })
	sort.Slice(v.Sessions, func(i, j int) bool { return v.Sessions[i].LastAt > v.Sessions[j].LastAt })
	sort.Slice(v.Approvals, func(i, j int) bool {
		return v.Approvals[i].Machine+"\x00"+v.Approvals[i].Key < v.Approvals[j].Machine+"\x00"+v.Approvals[j].Key
	})
	sort.Slice(v.Denials, func(i, j int) bool {
		return v.Denials[i].Machine+"\x00"+v.Denials[i].Key < v.Denials[j].Machine+"\x00"+v.Denials[j].Key
	})
	sort.Slice(v.Passkeys, func(i, j int) bool { return v.Passkeys[i].Name < v.Passkeys[j].Name })
	return v, nil
}

// copied is a shallow copy of each value of m, so that the console keeps
// nothing of the state (the slices inside are never written in place).
func copied[V any](m map[string]*V) []*V {
	out := make([]*V, 0, len(m))
	for _, v := range m {
		c := *v
		out = append(out, &c)
	}
	return out
}

// SignIn checks a console sign-in on the node's applied state.
func (n *Node) SignIn(ctx context.Context, sg *fsm.Signed) (*fsm.Operator, *fsm.Command, error) {
	if _, err := n.joined(); err != nil {
		return nil, nil, err
	}
	if sg == nil || sg.WebAuthn == nil {
		return nil, nil, Errorf(KindInvalid, "a sign-in needs a passkey's assertion")
	}
	now := now()
	var op *fsm.Operator
	var cmd *fsm.Command
	var ferr *fsm.Error
	n.fsm.Read(func(s *fsm.State) {
		if pk := s.Passkeys[sg.WebAuthn.Credential]; pk != nil {
			sg.Signer = pk.Operator
		}
		op, cmd, ferr = s.VerifyPasskey(sg, now)
		if op != nil {
			c := *op
			op = &c
		}
	})
	if ferr != nil {
		return nil, nil, fromFSM(ferr)
	}
	if cmd.Type != fsm.TypeSignIn || cmd.SignIn == nil {
		return nil, nil, Errorf(KindInvalid, "a console sign-in takes a %q command, not %q", fsm.TypeSignIn, cmd.Type)
	}
	if err := n.nonces.use("sign-in/"+op.ID+"/"+hex.EncodeToString(cmd.Nonce), time.Unix(0, cmd.IssuedAt), now); err != nil {
		return nil, nil, err
	}
	return op, cmd, nil
}

// AuditTrail reads the node's last audit decisions.
func (n *Node) AuditTrail(max int) []audit.Record {
	return n.audit.w.Recent(max)
}

// Decisions decodes the node's recent entries.
func (n *Node) Decisions(max int) []Decision {
	var out []Decision
	for _, e := range n.fsm.Recent(max) {
		d := Decision{Index: e.Index, Time: time.Unix(0, e.Time)}
		sum := sha256.Sum256(e.Data)
		d.Digest = hex.EncodeToString(sum[:8])
		var sg fsm.Signed
		if json.Unmarshal(e.Data, &sg) == nil {
			d.Signer, d.Passkey = sg.Signer, sg.WebAuthn != nil
			var c struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(sg.Payload, &c) == nil {
				d.Type = c.Type
			}
		}
		if d.Type == "" {
			d.Type = "unreadable entry"
		}
		out = append(out, d)
	}
	return out
}
