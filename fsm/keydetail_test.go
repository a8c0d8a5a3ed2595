package fsm_test

import (
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestSetDetailLeavesTheKeyItCopiedAlone: a copy of a key shares its
// KeyDetail, and setting the copy's detail (as every transition does on
// editKey's copy) must not reach the key it was copied from, which a
// checkpoint or a reader may still hold.
func TestSetDetailLeavesTheKeyItCopiedAlone(t *testing.T) {
	before := &fsm.Access{Gateways: []string{fsm.GatewayKxd}}
	tang := &fsm.TangKey{Kid: "k"}
	orig := &fsm.Key{Name: "db/a", KeyDetail: &fsm.KeyDetail{Access: before, Tang: tang}}
	c := *orig
	d := c.Detail()
	d.Access = &fsm.Access{Gateways: []string{fsm.GatewayTLV}}
	c.SetDetail(d)
	if got := orig.Detail(); got.Access != before || got.Tang != tang {
		t.Fatalf("setting a copy's detail changed the original's: access %+v, tang %+v", got.Access, got.Tang)
	}
	if got := c.Detail(); got.Access == before || got.Tang != tang {
		t.Fatalf("the copy's detail is not what was set: access %+v, tang %+v", got.Access, got.Tang)
	}

	d = c.Detail()
	d.Access, d.Tang = nil, nil
	c.SetDetail(d)
	if c.KeyDetail != nil || orig.Access() != before {
		t.Fatalf("a detail set to nothing: the copy's is %+v (want nil), the original's access %+v", c.KeyDetail, orig.Access())
	}
	if got := c.Detail(); got.Access != nil || got.Tang != nil {
		t.Fatalf("a key without a detail reads %+v", got)
	}
}

// TestACreatedSecretKeyHasNoDetail: a plain secret key carries no
// KeyDetail (what makes it smaller, docs/scale.md), and a key given a
// detail field (access here) has one. (A key decoded from a checkpoint:
// TestDecodedSecretKeyHasNoDetail.)
func TestACreatedSecretKeyHasNoDetail(t *testing.T) {
	h := newHarness(t)
	withKey(h)
	h.must(admin, createKeyCmd("db/b"))
	kxd := &fsm.Access{Gateways: []string{fsm.GatewayKxd}}
	h.must(admin, &fsm.Command{Type: fsm.TypeSetAccess, SetAccess: &fsm.SetAccess{Name: "db/b", Access: kxd}})
	h.f.Read(func(s *fsm.State) {
		if d := s.Keys["db/a"].KeyDetail; d != nil {
			t.Errorf("the plain secret key has a detail: %+v", d)
		}
		if a := s.Keys["db/b"].Access(); !a.Allows(fsm.GatewayKxd) {
			t.Errorf("the key opened to kxd has access %+v", a)
		}
	})
}
