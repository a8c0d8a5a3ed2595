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
