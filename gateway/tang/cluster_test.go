package tang

import (
	"context"
	"net/netip"
	"testing"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// fakeLegacy is a node's applied state of keys; exchanges and releases
// answer from it and count the calls that reached the "quorum".
type fakeLegacy struct {
	cluster.LegacyService // the rest is not used by ClusterKeys
	keys                  map[string]*fsm.Key
	exchanges             int
}

func (f *fakeLegacy) LocalKey(name string) *fsm.Key { return f.keys[name] }
func (f *fakeLegacy) LocalTangKey(kid string) *fsm.Key {
	for _, k := range f.keys {
		if k.Tang() != nil && k.Tang().Kid == kid {
			return k
		}
	}
	return nil
}
func (f *fakeLegacy) LocalTangKeys() []*fsm.Key {
	var out []*fsm.Key
	for _, k := range f.keys {
		if k.Tang() != nil && k.State != fsm.KeyDestroyed {
			out = append(out, k)
		}
	}
	return out
}
func (f *fakeLegacy) LocalKeys() ([]*fsm.Key, uint64) {
	var out []*fsm.Key
	for _, k := range f.keys {
		out = append(out, k)
	}
	return out, 1
}
func (f *fakeLegacy) Exchange(ctx context.Context, name string, point []byte, client string) ([]byte, error) {
	f.exchanges++
	return point, nil
}
func (f *fakeLegacy) ReleaseFor(ctx context.Context, gateway, name, client string) ([]byte, *fsm.Key, error) {
	return []byte("secret"), f.keys[name], nil
}

func tangKey(name, kid string, access *fsm.Access) *fsm.Key {
	return &fsm.Key{Name: name, Type: fsm.KeyTypeTang, State: fsm.KeyActive, KeyDetail: &fsm.KeyDetail{Access: access, Tang: &fsm.TangKey{Kid: kid, Thp: "thp-" + kid, Adv: []byte("{}")}}}
}

// TestLegacyTangRules: the node checks a Tang key's networks and rate, and
// finds no key that is not open to Tang, before any quorum is asked.
func TestLegacyTangRules(t *testing.T) {
	f := &fakeLegacy{keys: map[string]*fsm.Key{
		"open":    tangKey("open", "k1", &fsm.Access{Gateways: []string{fsm.GatewayTang}}),
		"lan":     tangKey("lan", "k2", &fsm.Access{Gateways: []string{fsm.GatewayTang}, Networks: []string{"10.0.0.0/8"}}),
		"slow":    tangKey("slow", "k3", &fsm.Access{Gateways: []string{fsm.GatewayTang}, RatePerMinute: 2}),
		"closed":  tangKey("closed", "k4", nil),
		"revoked": tangKey("revoked", "k5", &fsm.Access{Gateways: []string{fsm.GatewayTang}}),
	}}
	f.keys["revoked"].State = fsm.KeyRevoked
	l := NewClusterKeys(f, "")
	ctx := context.Background()
	lan, wan := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("203.0.113.5")
	for _, tc := range []struct {
		name, kid string
		addr      netip.Addr
		want      cluster.Kind // "" for success
	}{
		{"an open key", "k1", wan, ""},
		{"inside its network", "k2", lan, ""},
		{"inside its network, as a mapped IPv6 address", "k2", netip.MustParseAddr("::ffff:10.9.9.9"), ""},
		{"outside its network", "k2", wan, cluster.KindDenied},
		{"a key not open to Tang", "k4", wan, cluster.KindNotFound},
		{"an unknown kid", "nope", wan, cluster.KindNotFound},
	} {
		before := f.exchanges
		_, err := l.Recover(ctx, "", tc.kid, []byte{4}, tc.addr)
		if got := kindOrEmpty(err); got != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.want != "" && f.exchanges != before {
			t.Errorf("%s: the quorum was asked", tc.name)
		}
	}
	for i := 1; i <= 3; i++ {
		_, err := l.Recover(ctx, "", "k3", []byte{4}, wan)
		if want := i > 2; (err != nil) != want {
			t.Errorf("use %d of a key limited to 2 a minute: %v", i, err)
		}
	}
	if _, err := l.Recover(ctx, "", "k3", []byte{4}, lan); err != nil {
		t.Errorf("another client address has its own budget: %v", err)
	}
	if _, err := l.Adv(ctx, "revoked", ""); cluster.KindOf(err) != cluster.KindNotFound {
		t.Errorf("the adv of a revoked key: %v, want not_found", err)
	}
	if _, err := l.Adv(ctx, "", ""); cluster.KindOf(err) != cluster.KindNotFound {
		t.Errorf("no default with several tang keys: %v, want not_found", err)
	}
	if adv, err := NewClusterKeys(f, "open").Adv(ctx, "", ""); err != nil || string(adv) != "{}" {
		t.Errorf("the configured default: %q, %v", adv, err)
	}
}

func kindOrEmpty(err error) cluster.Kind {
	if err == nil {
		return ""
	}
	return cluster.KindOf(err)
}
