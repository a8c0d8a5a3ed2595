package cluster

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/audit"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// auditLog reads a node's audit log, checks it verifies with the node's
// identity key, and returns its decisions.
func auditLog(t *testing.T, tn *testNode) ([]audit.Record, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tn.cfg.DataDir, DefaultAuditFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(bytes.NewReader(b), audit.Options{PublicKey: tn.n.id.SignKey.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatalf("%s's audit log does not verify: %v", tn.id(), err)
	}
	var out []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == audit.TypeDecision {
			out = append(out, r)
		}
	}
	return out, b
}

func nonceOf(t *testing.T, sg *fsm.Signed) string {
	var c fsm.Command
	if err := json.Unmarshal(sg.Payload, &c); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(c.Nonce)
}

// TestAuditRecordsEveryDecision: the coordinator records its check and
// the holders theirs, with the request's nonce, principal, key, operation
// and basis; a refusal is recorded with its reason; the logs verify with
// each node's identity key and hold no key material.
func TestAuditRecordsEveryDecision(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("audit/s", secret)
	coord := c.nodes[0]
	sg := c.releaseRequest("audit/s")
	if _, err := c.releaseSigned(coord, sg); err != nil {
		t.Fatal(err)
	}
	refusedReq := c.releaseRequest("audit/missing")
	if _, err := c.releaseSigned(coord, refusedReq); KindOf(err) != KindNotFound {
		t.Fatalf("release of a missing key: %v", err)
	}
	nonce, refusedNonce := nonceOf(t, sg), nonceOf(t, refusedReq)
	holders := 0
	for _, tn := range c.nodes {
		recs, raw := auditLog(t, tn)
		for _, leak := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(string(raw), leak) {
				t.Fatalf("%s's audit log holds the secret", tn.id())
			}
		}
		for _, r := range recs {
			if r.Nonce == nonce && r.Role == roleHolder && r.Outcome == audit.Allowed {
				holders++
				if r.Principal != c.opID || r.Key != "audit/s" || r.Op != fsm.OpGet || r.Basis != "admin" {
					t.Errorf("%s's holder record %+v: want the admin operator's get of audit/s, allowed as admin", tn.id(), *r.Decision)
				}
			}
		}
		if tn != coord {
			continue
		}
		var coordAllowed, coordRefused, submitted bool
		for _, r := range recs {
			switch {
			case r.Nonce == nonce && r.Role == roleCoordinator && r.Outcome == audit.Allowed:
				coordAllowed = true
			case r.Nonce == refusedNonce && r.Role == roleCoordinator && r.Outcome == audit.Refused:
				coordRefused = strings.HasPrefix(r.Reason, "not_found: ")
			case r.Role == roleSubmit && r.Op == fsm.TypeCreateKey && r.Key == "audit/s":
				submitted = true
			}
		}
		// c.submit sends through the first running node: coord.
		if !coordAllowed || !coordRefused || !submitted {
			t.Errorf("the coordinator's log lacks its allowed check (%v), its refusal with the reason (%v) or the create it relayed (%v):\n%s",
				coordAllowed, coordRefused, submitted, raw)
		}
	}
	if holders < 2 {
		t.Errorf("%d holders recorded the release, want t=2", holders)
	}
}

// TestUnwritableAuditLogRefusesReleases: a node whose audit log cannot be
// written (a full disk: /dev/full) coordinates no release and gives no
// partial; the cluster still releases through the others (t=2 of 3).
// With AuditBestEffort, the same node releases.
func TestUnwritableAuditLogRefusesReleases(t *testing.T) {
	t.Parallel()
	for _, bestEffort := range []bool{false, true} {
		c := newTestClusterWith(t, 3, func(cfg *Config) {
			if cfg.NodeID == "node3" {
				cfg.AuditLog, cfg.AuditBestEffort = "/dev/full", bestEffort
			}
		})
		c.createSecret("audit/s", randomBytes(t, 32))
		full := c.nodes[2]
		_, err := c.release(full, "audit/s")
		if !bestEffort {
			if KindOf(err) != KindInternal || !strings.Contains(err.Error(), "audit log") {
				t.Fatalf("release through the node that cannot audit: %v, want a refusal naming the audit log", err)
			}
			if got := testutil.ToFloat64(full.n.Metrics().AuditFailures); got < 1 {
				t.Fatalf("audit failures counted %v", got)
			}
			c.mustRelease(c.nodes[0], "audit/s")
			continue
		}
		if err != nil {
			t.Fatalf("best effort: release through the node that cannot audit: %v", err)
		}
	}
}

// TestAuditRecordsFROSTSignatures: a signature by quorum is recorded as
// every release is: the coordinator's check and each signing holder's,
// with the signing request's nonce and the sign operation.
func TestAuditRecordsFROSTSignatures(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createFROST("audit/sig", nil)
	sg := c.signRequest("audit/sig", []byte("audited message"))
	sig, err := c.signThrough(c.nodes[0], sg)
	if err != nil {
		t.Fatal(err)
	}
	nonce := nonceOf(t, sg)
	var holders, coordinators int
	for _, tn := range c.nodes {
		recs, _ := auditLog(t, tn)
		for _, r := range recs {
			if r.Nonce != nonce || r.Outcome != audit.Allowed {
				continue
			}
			if r.Op != fsm.OpSign || r.Key != "audit/sig" || r.Principal != c.opID {
				t.Errorf("%s's record %+v: want the operator's sign of audit/sig", tn.id(), *r.Decision)
			}
			switch r.Role {
			case roleHolder:
				holders++
			case roleCoordinator:
				coordinators++
			}
		}
	}
	if holders < len(sig.Signers) || coordinators != 1 {
		t.Errorf("%d holder and %d coordinator records of the signature, want %d and 1", holders, coordinators, len(sig.Signers))
	}
}

// TestSigningHoldersAreCountedAndAudited: every holder that answers a
// signature by quorum, FROST or threshold RSA, records its decision in its
// audit log with the sign operation and the request's nonce, and counts
// its answer in keyquorum_operations_total (op holder, the key's type,
// result ok); the coordinator counts the signature once (op sign).
func TestSigningHoldersAreCountedAndAudited(t *testing.T) {
	c := newTestCluster(t, 3)
	c.createFROST("audit/frost", nil)
	c.createThresholdRSA("audit/rsa", rsaKey(t), nil)
	coord := c.nodes[0]
	for _, k := range []struct{ name, keyType string }{
		{"audit/frost", fsm.KeyTypeFROST},
		{"audit/rsa", fsm.KeyTypeRSAThreshold},
	} {
		for _, tn := range c.running() {
			c.waitHasKey(tn, k.name)
		}
		sg := c.sign(&fsm.Command{Type: fsm.TypeRelease,
			Release: &fsm.ReleaseRequest{Key: k.name, Op: fsm.OpSign, Message: []byte("audited " + k.name)}})
		if _, err := c.signThrough(coord, sg); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		nonce := nonceOf(t, sg)
		answered := 0
		for _, tn := range c.nodes {
			recs, _ := auditLog(t, tn)
			held := false
			for _, r := range recs {
				if r.Nonce != nonce || r.Outcome != audit.Allowed || r.Role != roleHolder {
					continue
				}
				if r.Op != fsm.OpSign || r.Key != k.name || r.Principal != c.opID {
					t.Errorf("%s's holder record %+v: want the operator's sign of %s", tn.id(), *r.Decision, k.name)
				}
				held = true
			}
			if !held || tn == coord {
				continue
			}
			answered++
			ops := tn.n.Metrics().Operations
			if got := testutil.ToFloat64(ops.WithLabelValues(opHolder, k.keyType, metrics.NoGateway, metrics.ResultOK)); got < 1 {
				t.Errorf("%s answered the %s signature as a holder (its audit says) but counted %v holder answers for %s keys", tn.id(), k.name, got, k.keyType)
			}
		}
		if answered == 0 {
			t.Errorf("%s: no holder but the coordinator answered: the test proves nothing", k.name)
		}
		ops := coord.n.Metrics().Operations
		if got := testutil.ToFloat64(ops.WithLabelValues(opSign, k.keyType, metrics.NoGateway, metrics.ResultOK)); got != 1 {
			t.Errorf("the coordinator counted %v signatures with %s, want 1", got, k.name)
		}
		if got := testutil.ToFloat64(ops.WithLabelValues(opHolder, k.keyType, metrics.NoGateway, metrics.ResultOK)); got != 0 {
			t.Errorf("the coordinator counted its own share as %v holder answers for %s keys, want 0 (it is part of the signature it counts)", got, k.keyType)
		}
	}
}
