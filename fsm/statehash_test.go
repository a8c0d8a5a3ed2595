package fsm_test

import (
	"fmt"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// BenchmarkHashAfterCreate is what a status call costs the state machine
// while keys are being created: Hash, timed, after each create, untimed.
// It should not grow with the number of keys already there.
func BenchmarkHashAfterCreate(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			h := newHarness(b)
			ready(h)
			h.must(admin, createKeyCmd("seed"))
			fsm.WriteStateForTest(h.f, func(s *fsm.State) {
				for i := range n {
					k := *s.Keys["seed"]
					k.Name = fmt.Sprintf("load/%07d", i)
					s.Keys[k.Name] = &k
				}
			})
			if _, err := h.f.Hash(); err != nil {
				b.Fatal(err)
			}
			entries := make([][]byte, b.N)
			for i := range entries {
				entries[i] = h.entry(admin, createKeyCmd(fmt.Sprintf("bench/%07d", i)))
			}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				h.index++
				if res := h.f.Apply(h.index, h.at, entries[i]); res.Error != nil {
					b.Fatal(res.Error)
				}
				b.StartTimer()
				if _, err := h.f.Hash(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestKeysAfterPagesInNameOrder: KeysAfter goes through the keys after a
// name in name order, on the state Apply keeps and on one decoded from a
// snapshot (whose index is rebuilt).
func TestKeysAfterPagesInNameOrder(t *testing.T) {
	h := newHarness(t)
	ready(h)
	for _, name := range []string{"m", "a/2", "z", "a/1", "b"} {
		h.must(admin, createKeyCmd(name))
	}
	page := func(f *fsm.FSM, after string, limit int) []string {
		var out []string
		f.Read(func(s *fsm.State) {
			s.KeysAfter(after, func(k *fsm.Key) bool {
				out = append(out, k.Name)
				return len(out) < limit
			})
		})
		return out
	}
	restored := fsm.New(&fakeChecker{})
	if err := restored.Restore(snapshotFor(t, h.f)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fsm.FSM{h.f, restored} {
		for _, c := range []struct {
			after string
			limit int
			want  string
		}{
			{"", 2, "[a/1 a/2]"}, {"a/2", 2, "[b m]"}, {"m", 10, "[z]"}, {"a", 1, "[a/1]"}, {"z", 10, "[]"},
		} {
			if got := fmt.Sprint(page(f, c.after, c.limit)); got != c.want {
				t.Errorf("after %q, %d: %s, want %s", c.after, c.limit, got, c.want)
			}
		}
	}
}

// BenchmarkHashRebuild is the first Hash after a restore at 100,000 keys:
// the sum rebuilt from every key and nonce, once.
func BenchmarkHashRebuild(b *testing.B) {
	const n = 100_000
	h := newHarness(b)
	ready(h)
	h.must(admin, createKeyCmd("seed"))
	fsm.WriteStateForTest(h.f, func(s *fsm.State) {
		for i := range n {
			k := *s.Keys["seed"]
			k.Name = fmt.Sprintf("load/%07d", i)
			s.Keys[k.Name] = &k
		}
	})
	b.ResetTimer()
	for range b.N {
		fsm.WriteStateForTest(h.f, func(*fsm.State) {}) // forgets the sum, as a restore does
		if _, err := h.f.Hash(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}
