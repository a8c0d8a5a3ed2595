package cluster

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/keyquorum/keyquorum/cluster/audit"
	"github.com/keyquorum/keyquorum/fsm"
)

// The node's audit trail (package audit): every authorization decision
// it makes is appended to its log, chained, and signed with its identity
// key by the seal that follows within audit.SealInterval:
//
//   - as a coordinator, the check of a release, unlock or exchange request
//     before it asks the holders (coordinatorRead);
//   - as a share holder, its own check before it uses its share
//     (finishHolderCheck), the one that counts;
//   - for a signed write an operator sent it, the state machine's verdict
//     (Submit).
//
// When a record cannot be written and the audit is required (the
// default; Config.AuditBestEffort turns it off), the node refuses what
// the decision allowed: as a coordinator it asks no holder, as a holder
// it gives no partial. Refusals are refused anyway.

// Roles of a decision.
const (
	roleCoordinator = "coordinator"
	roleHolder      = "holder"
	roleSubmit      = "submit"
)

// DefaultAuditFile is the audit log's file in the data directory.
const DefaultAuditFile = "audit.log"

// auditTrail is the node's audit log.
type auditTrail struct {
	w         *audit.Writer
	required  bool
	closeOnce sync.Once
}

func (n *Node) openAudit() error {
	path := n.cfg.AuditLog
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, DefaultAuditFile)
	}
	w, err := audit.Open(path, n.id.NodeID, n.id.SignKey)
	if err != nil {
		return err
	}
	if err := w.Err(); err != nil {
		n.metrics.AuditFailures.Inc()
		n.log.Error("the audit log cannot be written", "path", path, "required", !n.cfg.AuditBestEffort, "err", err)
	}
	n.audit = &auditTrail{w: w, required: !n.cfg.AuditBestEffort}
	return nil
}

func (n *Node) closeAudit() {
	n.audit.closeOnce.Do(func() {
		if err := n.audit.w.Close(); err != nil {
			n.log.Warn("closing the audit log", "err", err)
		}
	})
}

// decide records a decision on the signed request sg (which may not
// parse), allowed on basis when refusal is nil. It returns an error only
// when the record was not written, the audit is required and the
// decision allowed something: the caller must then refuse.
func (n *Node) decide(role string, sg *fsm.Signed, basis string, refusal error) error {
	return n.decideCommand(role, sg, decodeCommand(sg), basis, refusal)
}

// decideCommand is decide with sg's command as decodeCommand decoded it
// (nil when it does not parse), for a caller that decoded it already.
func (n *Node) decideCommand(role string, sg *fsm.Signed, c *fsm.Command, basis string, refusal error) error {
	d := &audit.Decision{Role: role, Outcome: audit.Allowed, Basis: basis}
	if refusal != nil {
		d.Outcome, d.Basis = audit.Refused, ""
		d.Reason = fmt.Sprintf("%s: %s", KindOf(refusal), refusal)
	}
	if sg != nil {
		d.Principal = sg.Signer
		if c != nil {
			d.Op, d.Nonce = c.Type, hex.EncodeToString(c.Nonce)
			_, d.Key = labelsOf(c)
			if r := c.Release; r != nil {
				d.Op, d.Gateway, d.Client = r.Op, r.Gateway, r.Client
			}
		}
	}
	err := n.audit.w.Decide(d)
	if err == nil {
		n.metrics.AuditRecords.WithLabelValues(d.Outcome).Inc()
		return nil
	}
	n.metrics.AuditFailures.Inc()
	n.log.Error("an audit record could not be written", "role", role, "outcome", d.Outcome, "required", n.audit.required, "err", err)
	if refusal != nil || !n.audit.required {
		return nil
	}
	return Errorf(KindInternal, "node %s cannot write its audit log, and refuses what it cannot record", n.id.NodeID)
}
