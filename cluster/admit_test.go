package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

func selfSignedClient(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAdmissionIsOneDecisionForEveryGateway: the rules of a key's access
// apply the same way whichever legacy gateway asks, each refusal naming
// its rule: the key open to the gateway (not_found otherwise), hosts,
// networks, certificates (always for kxd and tlv, for Tang only when the
// key lists some) and rate.
func TestAdmissionIsOneDecisionForEveryGateway(t *testing.T) {
	t.Parallel()
	alice, mallory := selfSignedClient(t, "alice"), selfSignedClient(t, "mallory")
	lan, wan := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	key := func(gateway string, edit func(*fsm.Access)) *fsm.Key {
		a := &fsm.Access{Gateways: []string{gateway}, ClientCerts: [][]byte{alice.Raw}}
		if gateway == fsm.GatewayTang {
			a.ClientCerts = nil
		}
		if edit != nil {
			edit(a)
		}
		return &fsm.Key{Name: "k", State: fsm.KeyActive, KeyDetail: &fsm.KeyDetail{Access: a}}
	}
	for _, c := range []struct {
		name    string
		gateway string
		key     *fsm.Key
		client  GatewayClient
		rule    string // "" when admitted
	}{
		{"no key", fsm.GatewayKxd, nil, GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, RuleKey},
		{"not open to the gateway", fsm.GatewayTLV, key(fsm.GatewayKxd, nil), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, RuleKey},
		{"destroyed", fsm.GatewayKxd, func() *fsm.Key { k := key(fsm.GatewayKxd, nil); k.State = fsm.KeyDestroyed; return k }(), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, RuleKey},
		{"kxd allowed", fsm.GatewayKxd, key(fsm.GatewayKxd, nil), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, ""},
		{"kxd other certificate", fsm.GatewayKxd, key(fsm.GatewayKxd, nil), GatewayClient{Certs: []*x509.Certificate{mallory}, Addr: lan}, RuleCertificate},
		{"tlv without certificates listed", fsm.GatewayTLV, key(fsm.GatewayTLV, func(a *fsm.Access) { a.ClientCerts = nil }), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, RuleCertificate},
		{"tlv outside networks", fsm.GatewayTLV, key(fsm.GatewayTLV, func(a *fsm.Access) { a.Networks = []string{"10.0.0.0/8"} }), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: wan}, RuleNetworks},
		{"tlv inside networks", fsm.GatewayTLV, key(fsm.GatewayTLV, func(a *fsm.Access) { a.Networks = []string{"10.0.0.0/8"} }), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, ""},
		{"tlv no host allowed", fsm.GatewayTLV, key(fsm.GatewayTLV, func(a *fsm.Access) { a.Hosts = []string{} }), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan}, RuleHosts},
		{"tlv host listed, mapped", fsm.GatewayTLV, key(fsm.GatewayTLV, func(a *fsm.Access) { a.Hosts = []string{"10.1.2.3"} }), GatewayClient{Certs: []*x509.Certificate{alice}, Addr: netip.MustParseAddr("::ffff:10.1.2.3")}, ""},
		{"tang without certificates", fsm.GatewayTang, key(fsm.GatewayTang, nil), GatewayClient{Addr: wan}, ""},
		{"tang key that lists certificates", fsm.GatewayTang, key(fsm.GatewayTang, func(a *fsm.Access) { a.ClientCerts = [][]byte{alice.Raw} }), GatewayClient{Addr: wan}, RuleCertificate},
		{"tang outside networks", fsm.GatewayTang, key(fsm.GatewayTang, func(a *fsm.Access) { a.Networks = []string{"10.0.0.0/8"} }), GatewayClient{Addr: wan}, RuleNetworks},
	} {
		var adm Admission
		_, err := adm.Admit(context.Background(), c.gateway, c.key, c.client)
		var refused *AdmitError
		switch {
		case c.rule == "" && err != nil:
			t.Errorf("%s: %v, want admitted", c.name, err)
		case c.rule != "" && (!errors.As(err, &refused) || refused.Rule != c.rule):
			t.Errorf("%s: %v, want refused by rule %s", c.name, err, c.rule)
		case c.rule == RuleKey && KindOf(err) != KindNotFound, c.rule != "" && c.rule != RuleKey && KindOf(err) != KindDenied:
			t.Errorf("%s: kind %s", c.name, KindOf(err))
		}
	}

	// Rate: uses are counted per key and client address, only for
	// clients every other rule admits.
	var adm Admission
	k := key(fsm.GatewayTLV, func(a *fsm.Access) { a.RatePerMinute = 2 })
	if _, err := adm.Admit(context.Background(), fsm.GatewayTLV, k, GatewayClient{Certs: []*x509.Certificate{mallory}, Addr: lan}); err == nil {
		t.Fatal("mallory admitted")
	}
	for i := 1; i <= 3; i++ {
		_, err := adm.Admit(context.Background(), fsm.GatewayTLV, k, GatewayClient{Certs: []*x509.Certificate{alice}, Addr: lan})
		var refused *AdmitError
		if want := i > 2; want != (err != nil) || want && (!errors.As(err, &refused) || refused.Rule != RuleRate) {
			t.Fatalf("use %d of 2 a minute (after a refused one): %v", i, err)
		}
	}
}
