package agent

import (
	"bytes"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestConfirmPinAskedAloneShowsALoneLiar: a first pin trusts the servers
// asked (docs/threat-model.md, "What is open"). One node, asked alone,
// presents a cluster of its own: a key it dealt itself, itself as the only
// member and holder, t = 1. Its proofs hold, for the key is its own, so
// the pin is confirmed; what holds is that the confirmation says what it
// rests on, as keyagent enroll and keyctl cluster pin print it: one
// confirmer, threshold 1, and a key that is not the cluster's, which the
// operator compares with the key cluster init printed. Given a second
// server, the same liar is refused (TestConfirmPinRefusesALiar).
func TestConfirmPinAskedAloneShowsALoneLiar(t *testing.T) {
	sc := newStatusCluster(t, 3)
	n1 := sc.members[0]
	own, ownShares := dealKey(t, 1, 1)
	n1.lie = func(st *api.Status) {
		st.PublicKey, st.N, st.Threshold = own.PublicKey(), 1, 1
		st.Members = st.Members[:1]
	}
	n1.prove = func(nonce []byte) *api.Possession { return n1.proveWith(ownShares[0], own.Commits, nonce) }
	cf, err := sc.confirm(t, n1.addr)
	if err != nil {
		t.Fatalf("a lone node asked alone with a key of its own: %v; the open item says it is confirmed", err)
	}
	if !bytes.Equal(cf.PublicKey, own.PublicKey()) || bytes.Equal(cf.PublicKey, sc.key) {
		t.Fatalf("confirmed key %x, want the liar's own %x", cf.PublicKey, own.PublicKey())
	}
	if cf.Threshold != 1 || len(cf.Confirmers) != 1 || cf.Confirmers[0] != n1.id {
		t.Errorf("the confirmation shows threshold %d and confirmers %v; want 1 and only %s, for the operator to see", cf.Threshold, cf.Confirmers, n1.id)
	}
	// The same liar beside an honest server is refused.
	if cf, err := sc.confirm(t, n1.addr, sc.members[1].addr); err == nil {
		t.Errorf("the lone liar and an honest server were both confirmed: %+v", cf)
	}
}
