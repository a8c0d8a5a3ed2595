package ratelimit

import (
	"net/netip"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestLimitsPerKeyAndAddress: a key limited to 2 a minute serves an
// address twice and then refuses it as denied; another address, another
// key, or a key without a limit is not affected; a mapped IPv6 address is
// the IPv4 address it maps.
func TestLimitsPerKeyAndAddress(t *testing.T) {
	var l Limits
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := 1; i <= 3; i++ {
		err := l.Take("k", a, 2)
		if want := i > 2; (err != nil) != want || want && api.KindOf(err) != api.KindDenied {
			t.Fatalf("use %d of 2: %v", i, err)
		}
	}
	if err := l.Take("k", netip.MustParseAddr("::ffff:192.0.2.1"), 2); err == nil {
		t.Error("the mapped form of a spent address got another budget")
	}
	for _, c := range []struct {
		key  string
		addr netip.Addr
		rate int
	}{{"k", b, 2}, {"other", a, 2}, {"k", a, 0}} {
		if err := l.Take(c.key, c.addr, c.rate); err != nil {
			t.Errorf("%s from %s at %d a minute: %v", c.key, c.addr, c.rate, err)
		}
	}
}
