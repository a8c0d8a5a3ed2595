package cluster

import (
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// The coordinator asks itself first, then spreads its requests over the
// other holders in turn, and away from one with requests in flight.
func TestHolderPickerSpreadsTheLoad(t *testing.T) {
	t.Parallel()
	holders := []fsm.Node{{ID: "n1", Index: 1}, {ID: "n2", Index: 2}, {ID: "n3", Index: 3}}
	var p holderPicker
	second := map[string]int{}
	for range 10 {
		got := p.order("n1", holders)
		if len(got) != 3 || got[0].ID != "n1" {
			t.Fatalf("order = %v, want n1 (the coordinator) first of three", got)
		}
		second[got[1].ID]++
	}
	if second["n2"] != 5 || second["n3"] != 5 {
		t.Fatalf("the second holder asked was %v over 10 releases, want n2 and n3 5 times each", second)
	}
	// A holder with requests in flight is asked after one without.
	done := p.asking("n2")
	for range 4 {
		if got := p.order("n1", holders); got[1].ID != "n3" {
			t.Fatalf("with a request in flight at n2, order = %v, want n3 second", got)
		}
	}
	done()
	if len(p.inFlight) != 0 {
		t.Fatalf("in flight after every request ended: %v", p.inFlight)
	}
	// A coordinator that holds no share spreads over all of them.
	first := map[string]int{}
	for range 9 {
		first[p.order("n4", holders)[0].ID]++
	}
	if first["n1"] != 3 || first["n2"] != 3 || first["n3"] != 3 {
		t.Fatalf("first holders asked by a non-holder: %v, want each 3 times", first)
	}
}

// A coordinator uses the answers it asked for before its read only when
// the read found what it asked for: the same request, key version, epoch
// and holders.
func TestSpeculationMatchesOnlyWhatTheReadFound(t *testing.T) {
	t.Parallel()
	sg := &fsm.Signed{Signer: "op"}
	holders := []fsm.Node{{ID: "n1", Index: 1}, {ID: "n2", Index: 2}, {ID: "n3", Index: 3}}
	sp := &speculation[SealedPartial]{request: sg, version: 2, epoch: 5, holders: []fsm.Node{holders[0], holders[2], holders[1]}}
	a := &authorized{request: sg, holders: holders}
	req := &partialRequest{Request: sg, Version: 2, Epoch: 5}
	if !sp.matches(a, req) {
		t.Fatal("the same request, version, epoch and holders do not match")
	}
	for what, change := range map[string]func(a *authorized, r *partialRequest){
		"another version": func(_ *authorized, r *partialRequest) { r.Version = 3 },
		"another epoch":   func(_ *authorized, r *partialRequest) { r.Epoch = 6 },
		"another request": func(a *authorized, _ *partialRequest) { a.request = &fsm.Signed{Signer: "op"} },
		"fewer holders":   func(a *authorized, _ *partialRequest) { a.holders = holders[:2] },
		"another holder": func(a *authorized, _ *partialRequest) {
			a.holders = []fsm.Node{holders[0], holders[1], {ID: "n4", Index: 3}}
		},
		"another index": func(a *authorized, _ *partialRequest) {
			a.holders = []fsm.Node{holders[0], holders[1], {ID: "n3", Index: 4}}
		},
	} {
		a2, req2 := *a, *req
		change(&a2, &req2)
		if sp.matches(&a2, &req2) {
			t.Errorf("a read with %s matches the speculation", what)
		}
	}
	var none *speculation[SealedPartial]
	if none.matches(a, req) {
		t.Error("no speculation matches")
	}
	if _, ok := none.answer(t.Context(), "n2"); ok {
		t.Error("no speculation has an answer")
	}
	none.discard()
}
