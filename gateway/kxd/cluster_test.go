package kxd

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// releasingService releases one secret, with the key's rules as the
// quorum's read found them.
type releasingService struct {
	cluster.LegacyService // nil: Release calls only ReleaseFor
	secret                []byte
	access                *fsm.Access
}

func (s *releasingService) ReleaseFor(context.Context, string, string, string) ([]byte, *fsm.Key, error) {
	return bytes.Clone(s.secret), &fsm.Key{Name: "k", KeyDetail: &fsm.KeyDetail{Access: s.access}}, nil
}

// TestReleaseRefusesWhenTheRulesChanged: the rules a client was admitted
// by must be the rules at the release's read, field by field; hosts nil
// (every host) and hosts empty (none) are different rules.
func TestReleaseRefusesWhenTheRulesChanged(t *testing.T) {
	admittedBy := &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{{1}}}
	client := Client{Addr: netip.MustParseAddrPort("192.0.2.1:5000")}
	same := &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{{1}}}
	keys := NewClusterKeys(&releasingService{secret: []byte("s3cret"), access: same})
	got, err := keys.Release(context.Background(), "k", client, &Admitted{access: admittedBy})
	if err != nil || string(got) != "s3cret" {
		t.Fatalf("same rules: %q, %v", got, err)
	}
	for name, now := range map[string]*fsm.Access{
		"no host allowed any more": {Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{{1}}, Hosts: []string{}},
		"another client":           {Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{{2}}},
		"rules removed":            nil,
	} {
		keys := NewClusterKeys(&releasingService{secret: []byte("s3cret"), access: now})
		got, err := keys.Release(context.Background(), "k", client, &Admitted{access: admittedBy})
		if cluster.KindOf(err) != cluster.KindConflict || got != nil {
			t.Errorf("%s: got %q, %v; want a conflict", name, got, err)
		}
	}
}
