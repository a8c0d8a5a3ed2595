package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/audit"
	"github.com/keyquorum/keyquorum/fsm"
)

// clusterPage is the cluster at a glance.
type clusterPage struct {
	*cluster.Status
	Healthy   int
	Reachable int // holders that answer
	Tolerance int // reachable holders minus t: how many more may fail before releases stop
}

func (c *Console) cluster(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	st, err := c.svc.Status(ctx)
	if err != nil {
		return nil, err
	}
	p := &clusterPage{Status: st}
	for _, m := range st.Members {
		up := m.RaftState != "unreachable"
		if up && m.Health == "alive" {
			p.Healthy++
		}
		if up && m.Holder {
			p.Reachable++
		}
	}
	p.Tolerance = p.Reachable - st.Threshold
	return p, nil
}

// keysPage is one page of the keys an operator may read; Next, when set,
// is the name the next page starts after.
type keysPage struct {
	Keys []*fsm.Key
	Next string
}

func (c *Console) keys(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	keys, next, err := c.svc.Keys(ctx, op.ID, r.URL.Query().Get("after"), keysPerPage)
	if err != nil {
		return nil, err
	}
	return &keysPage{Keys: keys, Next: next}, nil
}

// keysPerPage is how many keys one page of the console lists.
const keysPerPage = 100

// keyPage is one key and who can ever see its material.
type keyPage struct {
	Key     *fsm.Key
	Custody []string
}

func (c *Console) key(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	k, err := c.svc.Key(ctx, op.ID, r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	v, err := c.svc.ConsoleView(ctx)
	if err != nil {
		return nil, err
	}
	return &keyPage{Key: k, Custody: Custody(k, v)}, nil
}

// Custody says who can ever see a key's material, as the README's table
// "Who can see key material" does, for this key's type, rules, machines
// and gateway access.
func Custody(k *fsm.Key, v *cluster.ConsoleView) []string {
	if k.Type == fsm.KeyTypeTang {
		return []string{"Nobody sees the Tang secret: t holders each return a partial with a proof, and the node clevis asks combines s·X, which is all clevis gets."}
	}
	var out []string
	if g := v.Getters[k.Name]; len(g) > 0 {
		out = append(out, "The clients of operators "+strings.Join(g, ", ")+", which combine the holders' sealed partials themselves: the node they ask only relays.")
	}
	var ms []string
	for _, m := range v.Machines {
		if m.State == fsm.MachineActive && m.MayFetch(k.Name) {
			ms = append(ms, m.Name)
		}
	}
	if len(ms) > 0 {
		out = append(out, "Machines "+strings.Join(ms, ", ")+", which combine on their own (keyagent).")
	}
	if k.Access() != nil {
		for _, g := range k.Access().Gateways {
			switch g {
			case fsm.GatewayKxd:
				out = append(out, "The node that serves a kxd client, for that one request: it is the client of the quorum.")
			case fsm.GatewayTLV:
				ttl := "one operation"
				if k.AssembleTTL() > 0 {
					ttl = k.AssembleTTL().String()
				}
				out = append(out, "Each node serving a Keyless SSL client, in memory, for "+ttl+" or until a change applies.")
			case fsm.GatewayTang:
				out = append(out, "The node serving a Tang client, which combines the exchange for it.")
			}
		}
	}
	if len(out) == 0 {
		out = append(out, "Nobody: no operator, machine or gateway may release it.")
	}
	return append(out, "The disks of fewer than t nodes reveal nothing of it.")
}

// machinesPage is the machines and the sessions waiting.
type machinesPage struct {
	Machines []*fsm.Machine
	Sessions []*fsm.Session
}

func (c *Console) machines(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	v, err := c.svc.ConsoleView(ctx)
	if err != nil {
		return nil, err
	}
	return &machinesPage{Machines: v.Machines, Sessions: v.Sessions}, nil
}

func (c *Console) approvals(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	return c.svc.ConsoleView(ctx)
}

// auditPage is the node's audit trail and the replicated log.
type auditPage struct {
	Trail     []audit.Record
	Decisions []cluster.Decision
	Rows      int
	View      *cluster.ConsoleView // for names
}

func (c *Console) audit(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error) {
	v, err := c.svc.ConsoleView(ctx)
	if err != nil {
		return nil, err
	}
	return &auditPage{Trail: c.svc.AuditTrail(auditRows), Decisions: c.svc.Decisions(auditRows), Rows: auditRows, View: v}, nil
}

// passkeysPage registers passkeys; signed in, it lists them too.
type passkeysPage struct {
	Passkeys []*fsm.Passkey
	RPID     string
	Now      time.Time
}

func (c *Console) passkeys(w http.ResponseWriter, r *http.Request) {
	op := c.operator(r)
	p := &passkeysPage{RPID: rpID(r)}
	var err error
	if op != nil {
		var v *cluster.ConsoleView
		if v, err = c.svc.ConsoleView(r.Context()); err == nil {
			p.Passkeys = v.Passkeys
		}
	}
	c.render(w, "passkeys", op, p, err)
}
