package console

import (
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// TestRegistrationScope: a passkey registered at one node's name may be
// scoped to the domain the nodes share and list their consoles' origins;
// a relying party ID the browser would refuse, or an origin outside it, is
// refused before an admin is asked to sign; by default it is this host at
// every member's port.
func TestRegistrationScope(t *testing.T) {
	defaults := func() []string { return []string{"https://keys1.example.com:8443"} }
	for _, tc := range []struct {
		reg     registration
		rp      string
		origins []string
		kind    vocab.Kind
	}{
		{reg: registration{}, rp: "keys1.example.com", origins: defaults()},
		{reg: registration{RPID: "Example.com", Origins: []string{" https://keys1.example.com:8443", "", "https://keys2.example.com:8443"}},
			rp: "example.com", origins: []string{"https://keys1.example.com:8443", "https://keys2.example.com:8443"}},
		{reg: registration{RPID: "other.test"}, kind: vocab.KindInvalid},
		{reg: registration{RPID: "ple.com"}, kind: vocab.KindInvalid},
		{reg: registration{RPID: "example.com", Origins: []string{"https://keys.other.test:8443"}}, kind: vocab.KindInvalid},
		{reg: registration{RPID: "example.com"}, rp: "example.com", origins: defaults()},
		{reg: registration{Origins: []string{"http://keys1.example.com:8443"}}, kind: vocab.KindInvalid},
	} {
		rp, origins, err := tc.reg.scope("keys1.example.com", defaults)
		if tc.kind != "" {
			if cluster.KindOf(err) != tc.kind {
				t.Errorf("%+v: %v, want %s", tc.reg, err, tc.kind)
			}
			continue
		}
		if err != nil || rp != tc.rp || !slices.Equal(origins, tc.origins) {
			t.Errorf("%+v: %q %q %v; want %q %q", tc.reg, rp, origins, err, tc.rp, tc.origins)
		}
	}
}

// TestRelyingPartyOfAnOrigin: the console asks the passkey for the
// relying party its operator's passkeys are registered for at this
// origin, and allows only those credentials.
func TestRelyingPartyOfAnOrigin(t *testing.T) {
	o2 := "https://keys2.example.com:8443"
	pks := []*fsm.Passkey{
		{ID: "a", Operator: "alice", RPID: "example.com", Origins: []string{"https://keys1.example.com:8443", o2}},
		{ID: "b", Operator: "bob", RPID: "example.com", Origins: []string{o2}},
		{ID: "c", Operator: "alice", RPID: "keys2.example.com", Origins: []string{o2}},
		{ID: "d", Operator: "alice", RPID: "keys3.example.com", Origins: []string{"https://keys3.example.com:8443"}},
	}
	rp, allow := relyingParty(pks, o2, "keys2.example.com", "alice")
	if rp != "keys2.example.com" || !slices.Equal(allow, []string{"c"}) {
		t.Errorf("alice at keys2: %q %q, want the host's own passkey c", rp, allow)
	}
	rp, allow = relyingParty(pks, "https://keys1.example.com:8443", "keys1.example.com", "alice")
	if rp != "example.com" || !slices.Equal(allow, []string{"a"}) {
		t.Errorf("alice at keys1: %q %q, want example.com and a", rp, allow)
	}
	if rp, allow = relyingParty(pks, "https://keys1.example.com:8443", "keys1.example.com", "bob"); rp != "keys1.example.com" || allow != nil {
		t.Errorf("bob at keys1, where he has no passkey: %q %q", rp, allow)
	}
	if rp, _ = relyingParty(pks, o2, "keys2.example.com", ""); rp != "keys2.example.com" {
		t.Errorf("sign-in at keys2: %q", rp)
	}
}
