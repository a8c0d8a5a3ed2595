package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"testing"
)

// stateWithNonces is a state with n nonces, expiring 1..n seconds after
// the epoch, and no index of them.
func stateWithNonces(n int) *State {
	s := emptyState()
	for i := range n {
		s.Nonces[fmt.Sprintf("op%d/%032x", i%7, uint64(i)*0x9e3779b97f4a7c15)] = int64(i+1) * 1e9
	}
	return s
}

// TestFreezeDoesNotEncodeNonces: freezing a state costs as many
// allocations with 20,000 nonces as with 20 (it keeps a clone of their
// index; the snapshot writer encodes them), as it does with keys.
func TestFreezeDoesNotEncodeNonces(t *testing.T) {
	allocs := func(n int) float64 {
		s := stateWithNonces(n)
		s.nonceIndex()
		return testing.AllocsPerRun(20, func() {
			if _, err := s.freeze(); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, many := allocs(20), allocs(20_000)
	if many > few+2 {
		t.Errorf("freezing a state takes %.0f allocations with 20,000 nonces, %.0f with 20", many, few)
	}
}

// TestFrozenNoncesStay: a frozen state writes the nonces as they were
// when it was frozen, whatever is spent and pruned after (the index is
// changed copy-on-write), and the state's index stays in step with its
// map.
func TestFrozenNoncesStay(t *testing.T) {
	s := stateWithNonces(5000)
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := s.freeze()
	if err != nil {
		t.Fatal(err)
	}
	before := maps.Clone(s.Nonces)
	var forgot []string
	s.pruneNonces(2500e9, func(nk string, exp int64) {
		if exp != before[nk] {
			t.Errorf("the prune gave %s's expiry as %d, the state had %d", nk, exp, before[nk])
		}
		forgot = append(forgot, nk)
	})
	if len(forgot) != 2499 || len(s.Nonces) != 2501 {
		t.Fatalf("the prune forgot %d nonces and left %d, want 2499 and 2501", len(forgot), len(s.Nonces))
	}
	for _, nk := range forgot {
		if before[nk] >= 2500e9 {
			t.Fatalf("the prune forgot %s, which expires at %d", nk, before[nk])
		}
	}
	for i := range 3000 {
		s.spendNonce(fmt.Sprintf("new/%05d", i), int64(6000+i)*1e9)
	}
	for nk := range s.Nonces { // spent again, with another expiry
		s.spendNonce(nk, s.Nonces[nk]+1)
		break
	}
	checkFrozenWrites(t, fr, want)
	if s.expiries.Len() != len(s.Nonces) {
		t.Fatalf("the index holds %d nonces, the map %d", s.expiries.Len(), len(s.Nonces))
	}
	s.expiries.Ascend(func(e nonceEntry) bool {
		if exp, ok := s.Nonces[e.name]; !ok || exp != e.exp {
			t.Fatalf("the index has %s at %d, the map at %d (%v)", e.name, e.exp, exp, ok)
		}
		return true
	})
	checkFrozenWrite(t, s, 0)
}

// BenchmarkFrozenWriteNonces times what the snapshot writer pays for the
// nonces now that a checkpoint does not encode them: a frozen state of
// 100,000 nonces (and no keys) written, their sort included.
func BenchmarkFrozenWriteNonces(b *testing.B) {
	s := stateWithNonces(100_000)
	fr, err := s.freeze()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := fr.writeBase64To(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNonceChangesBetweenFolds: the state hash's digest keeps nothing for
// each nonce. A fold takes a changed nonce's old entry out of the sum
// from the value it had at the last fold, which the first change since
// gave (stateDigest.markNonce). Several changes to one nonce between two
// folds must leave the sum of the state's nonces, as a rebuild from every
// nonce makes it: a nonce spent twice; one spent and pruned; one spent
// again with another expiry and then pruned, whose prune gives an expiry
// the sum never had.
func TestNonceChangesBetweenFolds(t *testing.T) {
	s := stateWithNonces(3000)
	var d stateDigest
	d.reset()
	if err := d.fold(s); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		if err := d.fold(s); err != nil {
			t.Fatal(err)
		}
		var want stateDigest
		if err := want.rebuild(s); err != nil {
			t.Fatal(err)
		}
		if d.sum != want.sum {
			t.Fatalf("after %s the kept sum is not that of the state's nonces", step)
		}
	}
	spend := func(nk string, exp int64) {
		was, had := s.spendNonce(nk, exp)
		d.markNonce(nk, was, had)
	}
	prune := func(now int64) {
		s.pruneNonces(now, func(nk string, exp int64) { d.markNonce(nk, exp, true) })
	}
	named := func(exp int64) string {
		for nk, e := range s.Nonces {
			if e == exp {
				return nk
			}
		}
		t.Fatalf("no nonce expires at %d", exp)
		return ""
	}

	spend("new/a", 10e9)
	spend("new/a", 20e9)
	spend(named(2500e9), 4000e9)
	check("a new nonce spent twice, and an old one spent again")

	spend("new/b", 1e9)
	prune(1500e9) // new/b, new/a and the nonces up to 1,499 s
	check("a prune of a nonce spent since the last fold, and of others")

	x := named(2000e9)
	spend(x, 1600e9)
	prune(1700e9) // x, at the expiry it was spent again with
	if _, ok := s.Nonces[x]; ok {
		t.Fatal("the prune left the nonce spent again")
	}
	check("a nonce spent again with an earlier expiry, then pruned")
}
