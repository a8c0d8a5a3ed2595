package fsm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// The state's slices are never written in place (package doc, State):
// callers of FSM.Read keep slices they read (a key's public polynomial, a
// node's key) after Read returns, which is safe only because a transition
// that changes a slice puts a new one in its place. The harness checks it
// on every entry it applies: it holds every non-empty slice of the state
// as a reader would, applies the entry, and checks that every element of
// every slice it held is what it was.

// heldSlice is a slice of the state as a reader holds it, and a copy of
// its elements when it was read.
type heldSlice struct {
	path  string
	v     reflect.Value // the slice header, as read
	elems reflect.Value // a copy of its elements, as read
}

// holdSlices reads every non-empty slice reachable from the state through
// exported fields, map values and pointers.
func holdSlices(f *fsm.FSM) []heldSlice {
	var out []heldSlice
	f.Read(func(s *fsm.State) {
		walkSlices(reflect.ValueOf(s), "State", map[uintptr]bool{}, &out)
	})
	return out
}

func walkSlices(v reflect.Value, path string, seen map[uintptr]bool, out *[]heldSlice) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		walkSlices(v.Elem(), path, seen, out)
	case reflect.Interface:
		if !v.IsNil() {
			walkSlices(v.Elem(), path, seen, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				walkSlices(v.Field(i), path+"."+f.Name, seen, out)
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			walkSlices(it.Value(), fmt.Sprintf("%s[%v]", path, it.Key()), seen, out)
		}
	case reflect.Array:
		for i := range v.Len() {
			walkSlices(v.Index(i), fmt.Sprintf("%s[%d]", path, i), seen, out)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return
		}
		header := reflect.New(v.Type()).Elem()
		header.Set(v) // a field's Value would show the field's next slice
		elems := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(elems, v)
		*out = append(*out, heldSlice{path: path, v: header, elems: elems})
		for i := range v.Len() {
			walkSlices(v.Index(i), fmt.Sprintf("%s[%d]", path, i), seen, out)
		}
	}
}

// changedInPlace returns the paths of the held slices one of whose
// elements is no longer what it was.
func changedInPlace(held []heldSlice) []string {
	var bad []string
	for _, h := range held {
		for i := range h.v.Len() {
			if !sameShallow(h.v.Index(i), h.elems.Index(i)) {
				bad = append(bad, fmt.Sprintf("%s[%d]", h.path, i))
				break
			}
		}
	}
	return bad
}

// sameShallow compares two values of one type without following
// references: slices, maps and pointers by identity (what a slice or
// pointer refers to is held and checked on its own).
func sameShallow(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Slice:
		return a.Pointer() == b.Pointer() && a.Len() == b.Len()
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return a.Elem().Type() == b.Elem().Type() && sameShallow(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameShallow(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !sameShallow(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	}
	panic("sameShallow: kind " + a.Kind().String())
}

// TestTransitionsReplaceSlices runs every history (testdata/histories),
// which between them take every command type through its transitions,
// holding the state's slices across each entry as a caller of Read may
// (the harness checks every entry it applies, in every test of the
// package; this test names the invariant). A transition that wrote into a
// slice of the state, rather than putting a new one in its place, fails.
func TestTransitionsReplaceSlices(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no histories in testdata/histories (%v)", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			runHistory(t, string(in))
		})
	}
}

// TestHeldSlicesCatchAWriteInPlace: the check sees a slice of the state
// written in place, and does not mind one replaced.
func TestHeldSlicesCatchAWriteInPlace(t *testing.T) {
	h := newHarness(t)
	h.must(admin, initCmd())
	held := holdSlices(h.f)
	if bad := changedInPlace(held); len(bad) != 0 {
		t.Fatalf("nothing applied, yet changed: %v", bad)
	}
	fsm.WriteStateForTest(h.f, func(s *fsm.State) {
		if len(s.CACert) == 0 {
			t.Fatal("the founding state has no CA certificate")
		}
		s.CACert = append([]byte{s.CACert[0] ^ 1}, s.CACert[1:]...) // replaced
	})
	if bad := changedInPlace(held); len(bad) != 0 {
		t.Fatalf("a slice replaced is reported as changed: %v", bad)
	}
	held = holdSlices(h.f)
	fsm.WriteStateForTest(h.f, func(s *fsm.State) { s.CACert[0] ^= 1 }) // written in place
	if bad := changedInPlace(held); len(bad) != 1 || bad[0] != "State.CACert[0]" {
		t.Fatalf("a write into State.CACert: reported %v", bad)
	}
}
