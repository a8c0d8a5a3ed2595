package fsm_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Histories are data-driven tests of the state machine, in the style of
// etcd-io/raft's interaction tests: testdata/histories/*.txt hold one step
// per line, each followed by what it must give ("> " lines). The runner
// applies the steps with the harness (its fake deal checker, its fixed
// principals, nonces and times), writes what each step gave under it, and
// compares the whole with the file; -update rewrites the "> " lines:
//
//	go test ./fsm -run TestHistories/NAME -update
//
// A step is either a directive or a command signed by a principal:
//
//	PRINCIPAL VERB ARGS...   a command, logged (its result: ok or the refusal's code),
//	                         or a release, authorized and never logged
//	tick DURATION            moves the leader's entry time (negative: back)
//	reshare                  deals "ok" from as many dealers as the round needs
//	                         and acknowledges from every member
//	replay                   applies the last entry's bytes again
//	state                    a summary of the state
//	clock                    the state machine's clock and the entry time
//	hash                     the SHA-256 of the state's encoding
//
// PRINCIPAL is admin, op, admin2, stranger, reader, getter, swapper (the
// harness's operators, known to the cluster once added), laptop and server
// (keys for machines), or node-N. A principal argument (put-rule's, a
// machine's) is one of those names too. Times are offsets from t0, the
// harness's first entry time. Every command takes issued=DURATION (its
// IssuedAt relative to the entry time; default 0).
//
// Verbs, their arguments ([optional], a|b one of):
//
//	init [nodes=N]                 the founding admin and node-1; N initial nodes (1)
//	add-node N | remove-node node-N | promote-node node-N   (promote-node: node-signed)
//	add-operator WHO [name=NAME] [admin] | remove-operator WHO
//	put-rule ID WHO KEY OPS,...  | delete-rule ID
//	create-key NAME [expires=DURATION] | replace-key NAME EXPECT | revoke NAME | destroy NAME
//	deal [dealer=I] [round=R] [deal=ok|BYTES]   (node-signed; defaults: its index, the round in progress)
//	ack [round=R]                               (node-signed; default: the round in progress, else the last)
//	complaint dealer=I [proof=holds|BYTES]      (node-signed)
//	restart-reshare [exclude=I,...]
//	add-machine WHO KEYS,... [approval] | revoke-machine WHO
//	approve WHO [key=NAME] [uses=N] [for=DURATION]
//	release KEY [op=get|cas|exchange] [at=DURATION] [gateway=G] [reuse]
//	                               AuthorizeRelease on the state at entry time + at
//	                               (the request issued then too, unless issued=);
//	                               reuse: the signer's last request, same nonce
//	record-session WHO | use-approval WHO   (node-signed, with machine WHO's last request)
//	create-token ID [ttl=DURATION] [secret=S] | revoke-token ID
//	join-node N ID [secret=S]
//
// After a refused command the runner checks that nothing but the applied
// index changed; at the end it replays the whole log on a fresh state
// machine and checks it reaches the same hash.
func TestHistories(t *testing.T) {
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
			got := runHistory(t, string(in))
			if golden.Update() {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(in) {
				t.Errorf("%s: the state machine does not do what the history says, at %s\nIf the new behaviour is right, rewrite the expectations with: %s",
					path, golden.FirstDifference(in, []byte(got)), golden.UpdateCommand(t))
			}
		})
	}
}

// history is the runner's state.
type history struct {
	t    *testing.T
	h    *harness
	line int
	last map[string]*fsm.Signed // each signer's last release request
}

// runHistory runs a history and returns it with every step's results in
// place of the ones it had.
func runHistory(t *testing.T, in string) string {
	hs := &history{t: t, h: newHarness(t), last: map[string]*fsm.Signed{}}
	var out strings.Builder
	for i, line := range strings.Split(strings.TrimSuffix(in, "\n"), "\n") {
		hs.line = i + 1
		if strings.HasPrefix(line, ">") {
			continue // an expectation: recomputed
		}
		out.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		for _, r := range hs.step(f) {
			out.WriteString("> " + r + "\n")
		}
	}
	hs.replayed()
	return out.String()
}

func (hs *history) fatalf(format string, args ...any) {
	hs.t.Helper()
	hs.t.Fatalf("line %d: "+format, append([]any{hs.line}, args...)...)
}

// principals by the names histories use.
var historyPrincipals = map[string]principal{
	"admin": admin, "op": op, "admin2": admin2, "stranger": stranger,
	"reader": reader, "getter": getter, "swapper": swapper,
	"laptop": laptop, "server": server,
}

func (hs *history) who(name string) principal {
	hs.t.Helper()
	if p, ok := historyPrincipals[name]; ok {
		return p
	}
	if i, ok := strings.CutPrefix(name, "node-"); ok {
		if n, err := strconv.Atoi(i); err == nil && n > 0 && n < 100 {
			return node(n)
		}
	}
	hs.fatalf("unknown principal %q", name)
	return principal{}
}

// nameOf is the history's name for a principal ID.
func nameOf(id string) string {
	for name, p := range historyPrincipals {
		if p.ID == id {
			return name
		}
	}
	return id
}

// args are a step's arguments: positional ones and key=value options.
type args struct {
	hs   *history
	pos  []string
	opts map[string]string
	used map[string]bool
}

func (hs *history) parseArgs(f []string) *args {
	a := &args{hs: hs, opts: map[string]string{}, used: map[string]bool{}}
	for _, s := range f {
		if k, v, ok := strings.Cut(s, "="); ok {
			a.opts[k] = v
		} else {
			a.pos = append(a.pos, s)
		}
	}
	return a
}

// need returns the n positional arguments, and fails the test unless
// there are exactly n (flags named in flags may follow them).
func (a *args) need(n int, usage string, flags ...string) []string {
	a.hs.t.Helper()
	pos := slices.DeleteFunc(slices.Clone(a.pos), func(s string) bool { return slices.Contains(flags, s) })
	if len(pos) != n {
		a.hs.fatalf("want %d arguments: %s", n, usage)
	}
	return pos
}

func (a *args) flag(name string) bool { return slices.Contains(a.pos, name) }

func (a *args) str(key, def string) string {
	a.used[key] = true
	if v, ok := a.opts[key]; ok {
		return v
	}
	return def
}

func (a *args) num(key string, def int) int {
	a.hs.t.Helper()
	v := a.str(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		a.hs.fatalf("%s=%q is not a number", key, v)
	}
	return n
}

func (a *args) dur(key string) time.Duration {
	a.hs.t.Helper()
	v := a.str(key, "")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		a.hs.fatalf("%s=%q is not a duration", key, v)
	}
	return d
}

// done fails the test on an option no verb read: a typo.
func (a *args) done() {
	a.hs.t.Helper()
	for k := range a.opts {
		if !a.used[k] {
			a.hs.fatalf("unknown option %s=", k)
		}
	}
}

func atoi(hs *history, s string) int {
	hs.t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		hs.fatalf("%q is not a number", s)
	}
	return n
}

func split32(hs *history, s string) []uint32 {
	var out []uint32
	for _, x := range strings.Split(s, ",") {
		if x != "" {
			out = append(out, uint32(atoi(hs, x)))
		}
	}
	return out
}

// step runs one line and returns what it gave.
func (hs *history) step(f []string) []string {
	hs.t.Helper()
	h := hs.h
	switch f[0] {
	case "tick":
		if len(f) != 2 {
			hs.fatalf("tick DURATION")
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			hs.fatalf("tick: %v", err)
		}
		h.at = h.at.Add(d)
		return nil
	case "reshare":
		if len(f) != 1 {
			hs.fatalf("reshare takes no arguments")
		}
		h.dealAll()
		s := h.state()
		var holders []string
		for _, n := range s.Holders() {
			holders = append(holders, n.ID)
		}
		return []string{fmt.Sprintf("epoch %d, t %d, holders %s", s.Epoch, s.Threshold, strings.Join(holders, ","))}
	case "replay":
		if len(h.log) == 0 {
			hs.fatalf("replay: nothing was applied")
		}
		return []string{hs.result(h.log[len(h.log)-1].data)}
	case "state":
		return summary(h.state())
	case "clock":
		return []string{fmt.Sprintf("clock %s, entry time %s", offset(h.state().LastTime), offset(h.at.UnixNano()))}
	case "hash":
		sum := sha256.Sum256(h.snapshot())
		return []string{hex.EncodeToString(sum[:])}
	}
	if len(f) < 2 {
		hs.fatalf("want PRINCIPAL VERB ARGS... or a directive")
	}
	by := hs.who(f[0])
	a := hs.parseArgs(f[2:])
	if f[1] == "release" {
		return []string{hs.release(by, a)}
	}
	cmd := hs.command(by, f[1], a)
	issued := a.dur("issued")
	a.done()
	c := h.prepare(cmd)
	c.IssuedAt = h.at.Add(issued).UnixNano()
	sg, err := fsm.Sign(by.ID, by.Key, c)
	if err != nil {
		hs.fatalf("Sign: %v", err)
	}
	return []string{hs.result(encode(hs.t, sg))}
}

// result applies an entry, checks that a refusal changed nothing but the
// applied index, and says what happened.
func (hs *history) result(entry []byte) string {
	hs.t.Helper()
	before := hs.h.snapshot()
	res := hs.h.apply(entry)
	if res.Error == nil {
		return "ok"
	}
	assertUnchanged(hs.t, before, hs.h.snapshot())
	return string(res.Error.Code)
}

// command builds a logged command from a step.
func (hs *history) command(by principal, verb string, a *args) *fsm.Command {
	hs.t.Helper()
	h := hs.h
	switch verb {
	case "init":
		a.need(0, "init [nodes=N]")
		c := initCmd()
		c.Init.InitialNodes = a.num("nodes", 1)
		c.Init.Operator = operatorSpec(by, "alice", true)
		return c
	case "add-node":
		return addNodeCmd(nodeSpec(atoi(hs, a.need(1, "add-node N")[0])))
	case "promote-node":
		return promoteCmd(hs.who(a.need(1, "promote-node node-N")[0]).ID)
	case "remove-node":
		return removeNodeCmd(hs.who(a.need(1, "remove-node node-N")[0]).ID)
	case "add-operator":
		p := a.need(1, "add-operator WHO [name=NAME] [admin]", "admin")
		return addOperatorCmd(operatorSpec(hs.who(p[0]), a.str("name", p[0]), a.flag("admin")))
	case "remove-operator":
		return removeOperatorCmd(hs.who(a.need(1, "remove-operator WHO")[0]).ID)
	case "put-rule":
		p := a.need(4, "put-rule ID WHO KEY OPS,...")
		return putRuleCmd(p[0], hs.who(p[1]).ID, p[2], strings.Split(p[3], ",")...)
	case "delete-rule":
		return deleteRuleCmd(a.need(1, "delete-rule ID")[0])
	case "create-key":
		c := createKeyCmd(a.need(1, "create-key NAME [expires=DURATION]")[0])
		if d := a.dur("expires"); d != 0 {
			c.CreateKey.ExpiresAt = h.at.Add(d).UnixNano()
		}
		return c
	case "replace-key":
		p := a.need(2, "replace-key NAME EXPECT")
		return replaceKeyCmd(p[0], uint64(atoi(hs, p[1])))
	case "revoke":
		return revokeKeyCmd(a.need(1, "revoke NAME")[0])
	case "destroy":
		return destroyKeyCmd(a.need(1, "destroy NAME")[0])
	case "deal":
		a.need(0, "deal [dealer=I] [round=R] [deal=ok]")
		return dealCmd(uint64(a.num("round", int(hs.round(false)))), uint32(a.num("dealer", int(hs.index(by)))), a.str("deal", "ok"))
	case "ack":
		a.need(0, "ack [round=R]")
		return ackCmd(uint64(a.num("round", int(hs.round(true)))))
	case "complaint":
		a.need(0, "complaint dealer=I [proof=holds] [round=R]")
		return complaintCmd(uint64(a.num("round", int(hs.round(false)))), uint32(a.num("dealer", 0)), a.str("proof", "holds"))
	case "restart-reshare":
		a.need(0, "restart-reshare [exclude=I,...]")
		return restartCmd(split32(hs, a.str("exclude", ""))...)
	case "add-machine":
		p := a.need(2, "add-machine WHO KEYS,... [approval] [name=NAME]", "approval")
		return addMachineCmd(machineSpec(hs.who(p[0]), a.str("name", p[0]), a.flag("approval"), strings.Split(p[1], ",")...))
	case "revoke-machine":
		return revokeMachineCmd(hs.who(a.need(1, "revoke-machine WHO")[0]).ID)
	case "approve":
		p := a.need(1, "approve WHO [key=NAME] [uses=N] [for=DURATION]")
		var until time.Time
		if d := a.dur("for"); d != 0 {
			until = h.at.Add(d)
		}
		return approveCmd(hs.who(p[0]).ID, a.str("key", ""), a.num("uses", 0), until)
	case "record-session", "use-approval":
		m := hs.who(a.need(1, verb+" WHO")[0])
		req := hs.last[m.ID]
		if req == nil {
			hs.fatalf("%s: %s made no release request yet", verb, nameOf(m.ID))
		}
		if verb == "record-session" {
			return &fsm.Command{Type: fsm.TypeRecordSession, RecordSession: &fsm.RecordSession{Addr: "10.1.2.3", Release: req}}
		}
		rc := decodeRelease(hs, req)
		return useApprovalWith(m.ID, rc.Release.Key, rc.Nonce, req)
	case "create-token":
		id := a.need(1, "create-token ID [ttl=DURATION] [secret=S]")[0]
		ttl := time.Hour
		if d := a.dur("ttl"); d != 0 {
			ttl = d
		}
		c := createTokenCmd(id, ttl, h.at)
		sum := sha256.Sum256(tokenSecretOf(a))
		c.CreateJoinToken.Hash = sum[:]
		return c
	case "revoke-token":
		return &fsm.Command{Type: fsm.TypeRevokeJoinToken, RevokeJoinToken: a.need(1, "revoke-token ID")[0]}
	case "join-node":
		p := a.need(2, "join-node N ID [secret=S]")
		return joinNodeCmd(nodeSpec(atoi(hs, p[0])), p[1], tokenSecretOf(a))
	}
	hs.fatalf("unknown verb %q", verb)
	return nil
}

// tokenSecretOf is a token's secret: the harness's, or secret=S.
func tokenSecretOf(a *args) []byte {
	if s := a.str("secret", ""); s != "" {
		return []byte(s)
	}
	return tokenSecret
}

func decodeRelease(hs *history, sg *fsm.Signed) *fsm.Command {
	hs.t.Helper()
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || cmd.Release == nil {
		hs.fatalf("the last request does not decode: %v", err)
	}
	return &cmd
}

// round is the round in progress, or with last the last completed one when
// none is; 0 when there is neither.
func (hs *history) round(last bool) uint64 {
	s := hs.h.state()
	switch {
	case s.Reshare != nil:
		return s.Reshare.Round
	case last && s.LastRound != nil:
		return s.LastRound.Round
	}
	return 0
}

// index is the share index of a node principal (0 for anyone else).
func (hs *history) index(p principal) uint32 {
	if n := hs.h.state().Nodes[p.ID]; n != nil {
		return n.Index
	}
	return 0
}

// release asks the state to authorize a release request, as a holder
// whose clock reads entry time + at would.
func (hs *history) release(by principal, a *args) string {
	hs.t.Helper()
	h := hs.h
	key := a.need(1, "release KEY [op=get] [at=DURATION] [gateway=G] [reuse]", "reuse")[0]
	now := h.at.Add(a.dur("at"))
	issued := now
	if _, ok := a.opts["issued"]; ok {
		issued = h.at.Add(a.dur("issued"))
	}
	rel := &fsm.ReleaseRequest{Key: key, Op: a.str("op", fsm.OpGet), Gateway: a.str("gateway", "")}
	switch {
	case rel.Gateway != "":
	case h.state().Machines[by.ID] != nil:
		rel.Ephemeral = machineEph
	default:
		rel.Ephemeral = operatorEph
	}
	a.done()
	sg := hs.last[by.ID]
	if !a.flag("reuse") || sg == nil {
		var err error
		sg, err = fsm.Sign(by.ID, by.Key, &fsm.Command{Type: fsm.TypeRelease, Nonce: h.nonce(), IssuedAt: issued.UnixNano(), Release: rel})
		if err != nil {
			hs.fatalf("Sign: %v", err)
		}
		hs.last[by.ID] = sg
	}
	var err *fsm.Error
	h.f.Read(func(s *fsm.State) { _, _, err = s.AuthorizeRelease(sg, now) })
	if err != nil {
		return string(err.Code)
	}
	return "ok"
}

// replayed applies the history's log to a fresh state machine and checks
// that it reaches the same state: Apply is deterministic.
func (hs *history) replayed() {
	hs.t.Helper()
	f := fsm.New(&fakeChecker{})
	for _, e := range hs.h.log {
		f.Apply(e.index, e.at, e.data)
	}
	sameHash(hs.t, f, hs.h.f)
}

// offset is a time in Unix nanoseconds as an offset from t0.
func offset(ns int64) string {
	d := time.Duration(ns - t0.UnixNano())
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// summary describes the state in a few lines, with principals by their
// histories' names and times as offsets from t0.
func summary(s *fsm.State) []string {
	out := []string{fmt.Sprintf("epoch %d, t %d, cluster key %s, applied %d, clock %s",
		s.Epoch, s.Threshold, short(s.PublicKey()), s.Applied, offset(s.LastTime))}
	if r := s.Reshare; r != nil {
		var members []string
		for _, m := range r.Members {
			members = append(members, m.NodeID)
		}
		line := fmt.Sprintf("round %d (fresh %t): t %d, members %s, dealers %v, deals %d/%d, acks %d",
			r.Round, r.Fresh, r.Threshold, strings.Join(members, ","), r.Dealers, len(r.Deals), r.Needed, len(r.Acks))
		if len(r.Disqualified) > 0 {
			line += fmt.Sprintf(", disqualified %v", r.Disqualified)
		}
		if r.Aborted != "" {
			line += ", aborted"
		}
		out = append(out, line)
	}
	for _, n := range sortedByIndex(s) {
		line := fmt.Sprintf("node %s: index %d", n.ID, n.Index)
		if n.Holder {
			line += ", holder"
		}
		if n.Leaving {
			line += ", leaving"
		}
		if n.Pending {
			line += ", pending"
		}
		out = append(out, line)
	}
	for _, id := range sortedMapKeys(s.Operators) {
		o := s.Operators[id]
		line := fmt.Sprintf("operator %s (%s)", nameOf(id), o.Name)
		if o.Admin {
			line += ", admin"
		}
		out = append(out, line)
	}
	for _, id := range sortedMapKeys(s.Rules) {
		r := s.Rules[id]
		out = append(out, fmt.Sprintf("rule %s: %s may %s on %s", id, nameOf(r.Principal), strings.Join(r.Ops, ","), r.Key))
	}
	for _, name := range sortedMapKeys(s.Keys) {
		k := s.Keys[name]
		line := fmt.Sprintf("key %s: %s v%d, %s", name, k.Type, k.Version, k.State)
		if k.ExpiresAt != 0 {
			line += ", expires " + offset(k.ExpiresAt)
		}
		if len(k.Sealed) == 0 {
			line += ", no material"
		}
		out = append(out, line)
	}
	for _, id := range sortedMapKeys(s.Machines) {
		m := s.Machines[id]
		line := fmt.Sprintf("machine %s (%s): %s, may fetch %s", nameOf(id), m.Name, m.State, strings.Join(m.Keys, ","))
		if m.Approval {
			line += ", needs approval"
		}
		out = append(out, line)
	}
	for _, k := range sortedMapKeys(s.Approvals) {
		ap := s.Approvals[k]
		key := ap.Key
		if key == "" {
			key = "any key"
		}
		line := fmt.Sprintf("approval: %s for %s by %s", nameOf(ap.Machine), key, nameOf(ap.By))
		if ap.Uses > 0 {
			line += fmt.Sprintf(", %d uses", ap.Uses)
		}
		if ap.Until != 0 {
			line += ", until " + offset(ap.Until)
		}
		out = append(out, line)
	}
	for _, id := range sortedMapKeys(s.Sessions) {
		ss := s.Sessions[id]
		out = append(out, fmt.Sprintf("session: %s waits for %s, %d attempts", nameOf(id), ss.Key, ss.Attempts))
	}
	if len(s.Granted) > 0 {
		out = append(out, fmt.Sprintf("granted: %d requests", len(s.Granted)))
	}
	for _, id := range sortedMapKeys(s.JoinTokens) {
		tok := s.JoinTokens[id]
		line := fmt.Sprintf("join token %s: expires %s", id, offset(tok.ExpiresAt))
		if tok.SpentBy != "" {
			line += ", spent by " + tok.SpentBy
		}
		out = append(out, line)
	}
	return out
}

func short(b []byte) string {
	if len(b) == 0 {
		return "none"
	}
	return hex.EncodeToString(b[:min(4, len(b))])
}

func sortedByIndex(s *fsm.State) []*fsm.Node {
	var out []*fsm.Node
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *fsm.Node) int { return int(a.Index) - int(b.Index) })
	return out
}

func sortedMapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
