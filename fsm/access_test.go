package fsm_test

import (
	"reflect"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// TestAccessEqualComparesEveryField: two rules that differ in any one field
// are not equal (a field added to Access and forgotten by Equal fails
// here), Hosts tells nil (every host) from empty (none), and the other
// lists do not.
func TestAccessEqualComparesEveryField(t *testing.T) {
	base := func() *fsm.Access {
		return &fsm.Access{Gateways: []string{fsm.GatewayKxd}, ClientCerts: [][]byte{{1, 2}}, Hosts: []string{"h"},
			Networks: []string{"10.0.0.0/8"}, EmailTo: []string{"a@example.org"}, RatePerMinute: 3}
	}
	if a, b := base(), base(); !a.Equal(b) {
		t.Fatal("two copies of the same rules are not equal")
	}
	typ := reflect.TypeOf(fsm.Access{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		b := base()
		v := reflect.ValueOf(b).Elem().Field(i)
		switch v.Kind() {
		case reflect.Int:
			v.SetInt(v.Int() + 1)
		case reflect.Slice:
			if f.Type.Elem().Kind() == reflect.Slice { // [][]byte
				v.Set(reflect.ValueOf([][]byte{{1, 3}}))
			} else {
				v.Set(reflect.ValueOf([]string{"other"}))
			}
		default:
			t.Fatalf("field %s of kind %s: teach this test and Access.Equal about it", f.Name, v.Kind())
		}
		if base().Equal(b) || b.Equal(base()) {
			t.Errorf("rules that differ in %s are equal", f.Name)
		}
	}
	every, none := base(), base()
	every.Hosts, none.Hosts = nil, []string{}
	if every.Equal(none) {
		t.Error("hosts nil (every host) equals hosts empty (none)")
	}
	a, b := base(), base()
	a.Networks, b.Networks = nil, []string{}
	if !a.Equal(b) {
		t.Error("networks nil and empty, both every network, are not equal")
	}
	var nilAccess *fsm.Access
	if nilAccess.Equal(base()) || base().Equal(nil) || !nilAccess.Equal(nil) {
		t.Error("nil rules: equal only to nil")
	}
}
