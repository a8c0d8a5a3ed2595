package shamir

import (
	"bytes"
	"errors"
	"testing"
)

// TestHashToPoint: the point is valid (prime order, canonical, not the
// identity), deterministic, and differs with the label and the message,
// including when bytes move between them.
func TestHashToPoint(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []struct{ label, msg string }{
		{"keyquorum checkpoint v1", ""},
		{"keyquorum checkpoint v1", "a"},
		{"keyquorum checkpoint v1", "b"},
		{"keyquorum checkpoint v", "1a"},
		{"other", "a"},
		{"", ""},
	} {
		p, err := HashToPoint(c.label, []byte(c.msg))
		if err != nil {
			t.Fatalf("HashToPoint(%q, %q): %v", c.label, c.msg, err)
		}
		if err := ValidatePoint(p); err != nil {
			t.Errorf("HashToPoint(%q, %q) = an invalid point: %v", c.label, c.msg, err)
		}
		again, _ := HashToPoint(c.label, []byte(c.msg))
		if !bytes.Equal(p, again) {
			t.Errorf("HashToPoint(%q, %q) is not deterministic", c.label, c.msg)
		}
		if prev, ok := seen[string(p)]; ok {
			t.Errorf("HashToPoint(%q, %q) = the point of %s", c.label, c.msg, prev)
		}
		seen[string(p)] = c.label + "/" + c.msg
		if bytes.Equal(p, basePointBytes) {
			t.Errorf("HashToPoint(%q, %q) is the base point", c.label, c.msg)
		}
	}
}

// TestHashToPointPartials: partials over a hashed point verify as
// release partials do, and not for another message.
func TestHashToPointPartials(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	poly := runDKG(t, nodes, 2, []byte("ctx"))
	R, err := HashToPoint("keyquorum checkpoint v1", []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := HashToPoint("keyquorum checkpoint v1", []byte("forged state"))
	for _, p := range partialsFrom(t, nodes, R, []byte("state")) {
		if err := VerifyPartial(poly, R, p, []byte("state")); err != nil {
			t.Errorf("partial %d: %v", p.Index, err)
		}
		if err := VerifyPartial(poly, other, p, []byte("state")); !errors.Is(err, ErrBadProof) {
			t.Errorf("partial %d verified for another message: %v", p.Index, err)
		}
	}
}
