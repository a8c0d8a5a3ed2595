package jepsen

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/keyquorum/keyquorum/cluster"
)

// regOp builds a register operation for the model tests.
func regOp(index int, f string, call, ret int64, outcome Outcome) Op {
	return Op{Index: index, Process: index, Workload: WorkloadRegister, Key: "k", F: f, Call: call, Return: ret, Outcome: outcome}
}

func withValue(op Op, v string) Op      { op.Value = v; return op }
func withVersion(op Op, v uint64) Op    { op.Version = v; return op }
func withSwap(op Op, old, nw string) Op { op.Old, op.New = old, nw; return op }

func checkRegister(ops []Op) porcupine.CheckResult {
	end := int64(0)
	for _, op := range ops {
		end = max(end, op.Return)
	}
	return porcupine.CheckOperationsTimeout(registerModel(regState{Value: "a", Version: 1}), regOperations(ops, "k", end+1), 10*time.Second)
}

func TestRegisterModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"sequential swap then reads", []Op{
			withSwap(regOp(0, "cas", 0, 10, OK), "a", "b"),
			withValue(regOp(1, "read", 20, 30, OK), "b"),
			withVersion(regOp(2, "version", 40, 50, OK), 2),
		}, porcupine.Ok},
		{"stale value after an acknowledged swap", []Op{
			withSwap(regOp(0, "cas", 0, 10, OK), "a", "b"),
			withValue(regOp(1, "read", 20, 30, OK), "a"),
		}, porcupine.Illegal},
		{"stale version after an acknowledged swap", []Op{
			withSwap(regOp(0, "cas", 0, 10, OK), "a", "b"),
			withVersion(regOp(1, "version", 20, 30, OK), 1),
		}, porcupine.Illegal},
		{"concurrent read may see either", []Op{
			withSwap(regOp(0, "cas", 0, 100, OK), "a", "b"),
			withValue(regOp(1, "read", 10, 20, OK), "a"),
			withValue(regOp(2, "read", 30, 40, OK), "b"),
		}, porcupine.Ok},
		{"acknowledged swap from a value that was never current", []Op{
			withSwap(regOp(0, "cas", 0, 10, OK), "x", "b"),
		}, porcupine.Illegal},
		{"unknown swap may take effect late", []Op{
			withSwap(regOp(0, "cas", 0, 10, Unknown), "a", "b"),
			withValue(regOp(1, "read", 20, 30, OK), "a"),
			withValue(regOp(2, "read", 40, 50, OK), "b"),
		}, porcupine.Ok},
		{"unknown swap may never take effect", []Op{
			withSwap(regOp(0, "cas", 0, 10, Unknown), "a", "b"),
			withValue(regOp(1, "read", 20, 30, OK), "a"),
		}, porcupine.Ok},
		{"unknown swap cannot be undone", []Op{
			withSwap(regOp(0, "cas", 0, 10, Unknown), "a", "b"),
			withValue(regOp(1, "read", 20, 30, OK), "b"),
			withValue(regOp(2, "read", 40, 50, OK), "a"),
		}, porcupine.Illegal},
		{"failed operations did nothing", []Op{
			withSwap(regOp(0, "cas", 0, 10, Fail), "a", "b"),
			withValue(regOp(1, "read", 20, 30, Fail), "zzz"),
			withValue(regOp(2, "read", 40, 50, OK), "a"),
		}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkRegister(tt.ops); got != tt.want {
				t.Errorf("check = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRegOperationsLeavesUnknownSwapsPending(t *testing.T) {
	ops := []Op{
		withSwap(regOp(0, "cas", 0, 10, Unknown), "a", "b"),
		regOp(1, "read", 20, 30, Unknown),
		regOp(2, "version", 20, 30, Fail),
		{Workload: WorkloadSet, Key: "k", F: "create", Outcome: OK},
	}
	got := regOperations(ops, "k", 99)
	if len(got) != 1 || got[0].Return != 99 || !got[0].Output.(regOutput).Unknown {
		t.Fatalf("regOperations = %+v, want only the swap, pending until 99", got)
	}
}

func TestClassify(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want Outcome
	}{
		{"success", live, nil, OK},
		{"no quorum", live, cluster.Errorf(cluster.KindNoQuorum, "1 of the 2 share holders needed answered"), Fail},
		{"conflict", live, cluster.Errorf(cluster.KindConflict, "lost"), Fail},
		{"unknown outcome", live, cluster.Errorf(cluster.KindUnknownOutcome, "timed out"), Unknown},
		{"deadline of the client", done, cluster.Errorf(cluster.KindNoQuorum, "cannot reach 10.77.0.11:8740: context deadline exceeded"), Unknown},
		{"not an API error", live, errors.New("POST /v1/keys: 502 Bad Gateway"), Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v := classify(tt.ctx, tt.err); v.outcome != tt.want {
				t.Errorf("classify = %s, want %s", v.outcome, tt.want)
			}
		})
	}
}

func TestPlanIsDeterminedBySeed(t *testing.T) {
	plan := func(seed int64, nemesis string) []Step {
		return Plan(seed, nemesis, time.Minute, DefaultQuietMin, DefaultQuietMax, DefaultHoldMin, DefaultHoldMax)
	}
	a, b := plan(42, "mixed"), plan(42, "mixed")
	if !slices.Equal(a, b) {
		t.Fatalf("seed 42 gave two schedules:\n%v\n%v", a, b)
	}
	if slices.Equal(a, plan(43, "mixed")) {
		t.Errorf("seeds 42 and 43 gave the same schedule")
	}
	if len(a) < 3 {
		t.Errorf("a minute holds only %d faults", len(a))
	}
	for _, s := range a {
		if s.At+s.Hold > time.Minute || !slices.Contains(Nemeses, s.Fault) || s.With != "" && (s.With == s.Fault || !slices.Contains(overlapping, s.With)) {
			t.Errorf("step %v ends after the run or is no nemesis", s)
		}
	}
	for _, s := range plan(42, NemesisKill) {
		if s.Fault != NemesisKill {
			t.Errorf("a kill schedule holds %v", s)
		}
	}
	if p := plan(42, "none"); len(p) != 0 {
		t.Errorf("no nemesis planned %v", p)
	}
	faults := map[string]bool{}
	for seed := range int64(20) {
		for _, s := range plan(seed, "mixed") {
			faults[s.Fault] = true
		}
	}
	if len(faults) != len(Nemeses) {
		t.Errorf("twenty mixed schedules used only %v", faults)
	}
	overlaps := 0
	for seed := range int64(20) {
		for _, s := range plan(seed, "mixed") {
			if s.With != "" {
				overlaps++
			}
		}
	}
	if overlaps == 0 {
		t.Error("twenty mixed schedules never overlapped two faults")
	}
	for _, s := range plan(42, NemesisMember) {
		if s.With != "" {
			t.Errorf("a member schedule overlaps %v", s)
		}
	}
	for seed := range int64(50) {
		for _, s := range plan(seed, "mixed") {
			if slices.Contains(alone, s.Fault) && s.With != "" {
				t.Errorf("seed %d: %s takes a second fault: %v", seed, s.Fault, s)
			}
		}
	}
}

// sees is what each node of a grudge still reaches, itself included.
func sees(order []int, grudge map[int][]int) map[int][]int {
	out := map[int][]int{}
	for _, a := range order {
		for _, b := range order {
			if !slices.Contains(grudge[a], b) && !slices.Contains(grudge[b], a) {
				out[a] = append(out[a], b)
			}
		}
	}
	return out
}

func TestRingLeavesOverlappingMajorities(t *testing.T) {
	for _, order := range [][]int{{2, 3, 1}, {4, 1, 5, 2, 3}} {
		grudge, _ := ring(order)
		view := sees(order, grudge)
		majority := len(order)/2 + 1
		distinct := map[string]bool{}
		for node, v := range view {
			if len(v) < majority {
				t.Errorf("%v: node %d sees %v, less than a majority", order, node, v)
			}
			slices.Sort(v)
			distinct[fmt.Sprint(v)] = true
		}
		if len(distinct) != len(order) {
			t.Errorf("%v: the nodes see only %d different majorities: %v", order, len(distinct), view)
		}
		full := 0
		for _, v := range view {
			if len(v) == len(order) {
				full++
			}
		}
		if len(order) == 3 && full != 1 {
			t.Errorf("%v: %d nodes see everyone, want just the bridge", order, full)
		}
		if len(order) == 5 && full != 0 {
			t.Errorf("%v: %d nodes see everyone, want none", order, full)
		}
	}
}

func TestRevokeCheck(t *testing.T) {
	ops := []Op{
		{Index: 0, Workload: WorkloadRevoke, F: "create", Key: "rev/0", New: "s", Outcome: OK, Call: 0, Return: 10},
		{Index: 1, Workload: WorkloadRevoke, F: "release", Key: "rev/0", Value: "s", Outcome: OK, Call: 20, Return: 200},
		{Index: 2, Workload: WorkloadRevoke, F: "revoke", Key: "rev/0", Outcome: OK, Call: 50, Return: 100},
		{Index: 3, Workload: WorkloadRevoke, F: "release", Key: "rev/0", Value: "s", Outcome: OK, Call: 90, Return: 150},
		{Index: 4, Workload: WorkloadRevoke, F: "release", Key: "rev/0", Outcome: Fail, Call: 110, Return: 150},
	}
	var rep Summary
	(&revoke{}).check(&rep, ops)
	if len(rep.Anomalies) != 0 {
		t.Fatalf("releases that began before the acknowledgement were flagged: %v", rep.Anomalies)
	}
	late := Op{Index: 5, Workload: WorkloadRevoke, F: "release", Key: "rev/0", Value: "s", Outcome: OK, Call: 101, Return: 160}
	wrong := Op{Index: 6, Workload: WorkloadRevoke, F: "release", Key: "rev/0", Value: "t", Outcome: OK, Call: 30, Return: 40}
	(&revoke{}).check(&rep, append(ops, late, wrong))
	var checks []string
	for _, a := range rep.Anomalies {
		checks = append(checks, a.Check)
	}
	slices.Sort(checks)
	if !slices.Equal(checks, []string{"revoke", "revoke-wrong-secret"}) {
		t.Errorf("anomalies = %v, want one late release and one wrong secret", rep.Anomalies)
	}
}

// TestSignCheck: the sign workload's check flags a signature made by a
// request that began after the revocation was acknowledged, and one that
// does not verify under the key's public key; signatures begun before
// pass, and the revoke workload's operations are not its own.
func TestSignCheck(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := hex.EncodeToString(priv.Public().(ed25519.PublicKey))
	sig := func(msg string) string { return hex.EncodeToString(ed25519.Sign(priv, []byte(msg))) }
	ops := []Op{
		{Index: 0, Workload: WorkloadSign, F: "create", Key: "sig/0", New: pub, Outcome: OK, Call: 0, Return: 10},
		{Index: 1, Workload: WorkloadSign, F: "sign", Key: "sig/0", Old: "m1", Value: sig("m1"), Outcome: OK, Call: 20, Return: 200},
		{Index: 2, Workload: WorkloadSign, F: "revoke", Key: "sig/0", Outcome: OK, Call: 50, Return: 100},
		{Index: 3, Workload: WorkloadSign, F: "sign", Key: "sig/0", Old: "m3", Value: sig("m3"), Outcome: OK, Call: 90, Return: 150},
		{Index: 4, Workload: WorkloadSign, F: "sign", Key: "sig/0", Old: "m4", Outcome: Fail, Call: 110, Return: 150},
		{Index: 5, Workload: WorkloadRevoke, F: "release", Key: "sig/0", Value: "x", Outcome: OK, Call: 120, Return: 150},
	}
	var rep Summary
	(&revoke{sign: true}).check(&rep, ops)
	if len(rep.Anomalies) != 0 || rep.Sign == nil || rep.Sign.SuccessfulReleases != 2 {
		t.Fatalf("signatures that began before the acknowledgement: anomalies %v, summary %+v", rep.Anomalies, rep.Sign)
	}
	late := Op{Index: 6, Workload: WorkloadSign, F: "sign", Key: "sig/0", Old: "m6", Value: sig("m6"), Outcome: OK, Call: 101, Return: 160}
	forged := Op{Index: 7, Workload: WorkloadSign, F: "sign", Key: "sig/0", Old: "m7", Value: sig("another message"), Outcome: OK, Call: 30, Return: 40}
	(&revoke{sign: true}).check(&rep, append(ops, late, forged))
	var checks []string
	for _, a := range rep.Anomalies {
		checks = append(checks, a.Check)
	}
	slices.Sort(checks)
	if !slices.Equal(checks, []string{"sign", "sign-bad-signature"}) {
		t.Errorf("anomalies = %v, want one late signature and one that does not verify", rep.Anomalies)
	}
}

func TestConverged(t *testing.T) {
	node := func(id string, applied uint64, hash string) NodeState {
		return NodeState{Node: id, Applied: applied, StateHash: hash, Epoch: 3, Members: []string{"n1", "n2"}}
	}
	members := []string{"n1", "n2"}
	if !converged([]NodeState{node("n1", 9, "h"), node("n2", 9, "h")}, members) {
		t.Error("equal states are not converged")
	}
	if converged([]NodeState{node("n1", 9, "h"), node("n2", 8, "g")}, members) {
		t.Error("a node behind is converged")
	}
	if diverged([]NodeState{node("n1", 9, "h"), node("n2", 8, "g")}) {
		t.Error("a node behind is diverged")
	}
	if !diverged([]NodeState{node("n1", 9, "h"), node("n2", 9, "g")}) {
		t.Error("different hashes at one index are not diverged")
	}
	if converged([]NodeState{node("n1", 9, "h"), {Node: "n2", Err: "down"}}, members) {
		t.Error("a node that did not answer is converged")
	}
}

func TestConfigFill(t *testing.T) {
	c := Config{Keyd: "keyd", OutDir: "out"}
	if err := c.fill(); err != nil {
		t.Fatal(err)
	}
	if c.Seed == 0 || c.Nemesis != "mixed" || len(c.Workloads) != len(Workloads) || c.Nodes != DefaultNodes {
		t.Errorf("defaults not filled: %+v", c)
	}
	bad := Config{Nodes: 4, Nemesis: "flood", Workloads: []string{"bank"}}
	err := bad.fill()
	for _, want := range []string{"keyd", "output directory", "nodes", "flood", "bank"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestCheckBounded(t *testing.T) {
	windows := []Window{{Fault: "member+pause", Start: 100, End: 200}, {Fault: NemesisPartition, Start: 300, End: 400}}
	ops := []Op{
		{Index: 0, F: "read", Call: 150, Return: 250, Timeout: true}, // during a pause
		{Index: 1, F: "cas", Call: 310, Return: 390, Timeout: true},  // during a partition only
		{Index: 2, F: "cas", Call: 310, Return: 390},                 // answered
	}
	var rep Summary
	checkBounded(&rep, ops, windows, time.Second)
	if len(rep.Anomalies) != 1 || !strings.Contains(rep.Anomalies[0].Detail, "#1 ") {
		t.Errorf("anomalies = %v, want only #1", rep.Anomalies)
	}
}

func TestCampaignRotation(t *testing.T) {
	var got []string
	cc := CampaignConfig{}
	for i := range 30 {
		got = append(got, cc.nemesis(i))
	}
	rotation := append(slices.Clone(Nemeses), "mixed", "mixed", "mixed")
	if !slices.Equal(got[:len(rotation)], rotation) || !slices.Equal(got[len(rotation):2*len(rotation)], rotation) {
		t.Errorf("rotation = %v, want %v twice", got, rotation)
	}
	for _, n := range append(slices.Clone(Nemeses), "mixed") {
		if c := countOf(got, n); c < 2 {
			t.Errorf("thirty runs have %s %d times", n, c)
		}
	}
	cc.Nemeses = []string{NemesisKill, NemesisPause}
	if cc.nemesis(0) != NemesisKill || cc.nemesis(3) != NemesisPause {
		t.Errorf("a given rotation is not followed")
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}

func TestCampaignTextListsEveryRun(t *testing.T) {
	c := &CampaignSummary{Seed: 5, Wall: "1m"}
	for i, n := range []string{NemesisDiskFull, NemesisClock, NemesisDiskFull} {
		s := &Summary{Seed: int64(5 + i), Nemesis: n, Valid: i != 2, Ops: map[string]*Counts{"all": {Total: 10}}}
		if i == 2 {
			s.Anomalies = []Anomaly{{Check: "sign", Detail: "sig/0: sign #7"}}
		}
		c.Runs = append(c.Runs, CampaignRun{Dir: fmt.Sprintf("run%d", i), Summary: s})
	}
	var b strings.Builder
	c.Text(&b)
	for _, want := range []string{"run0", "run1", "run2", "[sign] sig/0: sign #7", "disk-full          2   1", "clock              1   1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("campaign text lacks %q:\n%s", want, b.String())
		}
	}
}
