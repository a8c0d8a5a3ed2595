package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeLog writes a log of an open record and n decisions, a second
// apart from start, with a seal after every third decision (and none
// from the timer), and closes it (a close record) unless open is set.
func writeLog(t *testing.T, path string, key ed25519.PrivateKey, start time.Time, n int, open bool) *Writer {
	t.Helper()
	w, err := Open(path, "n1", key)
	if err != nil {
		t.Fatal(err)
	}
	now := start
	w.mu.Lock()
	w.now = func() time.Time { return now }
	w.sealAfter = time.Hour
	w.mu.Unlock()
	for i := range n {
		now = now.Add(time.Second)
		d := &Decision{Role: "holder", Principal: "op-1", Key: "k", Op: "get", Outcome: Allowed, Basis: "admin", Nonce: strings.Repeat("ab", 16)}
		if i%3 == 2 {
			d.Outcome, d.Basis, d.Reason = Refused, "", "denied: op-1 may not get key \"k\""
		}
		if err := w.Decide(d); err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 {
			if err := w.Seal(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !open {
		now = now.Add(time.Second)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func newKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func lines(t *testing.T, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := bytes.SplitAfter(b, []byte("\n")) // each with its newline
	return ls[:len(ls)-1]
}

func verifyLines(ls [][]byte, opt Options) (*Summary, error) {
	b := bytes.Join(ls, nil)
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	return Verify(bytes.NewReader(b), opt)
}

func TestIntactLogVerifiesAcrossRestarts(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	start := time.Now().Add(-time.Hour)
	writeLog(t, path, key, start, 6, false)
	writeLog(t, path, key, start.Add(10*time.Minute), 3, false) // the node restarted
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Verify(f, Options{PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 16 || s.Decisions != 9 || s.Refused != 3 || s.Node != "n1" || s.LastType != TypeClose || s.Unsealed != 0 || s.UnsealedAtRestart != 0 {
		t.Fatalf("summary %+v: want 16 records (2 open, 9 decisions of which 3 refused, 3 seals, 2 close), ending with a close, all sealed", s)
	}
}

// rechain is what someone without the node's key does after changing
// line i: rewrite the prev (and the bytes) of every line after it so
// that the chain links again. A signed line after i then no longer
// matches its signature.
func rechain(t *testing.T, ls [][]byte, i int) [][]byte {
	t.Helper()
	for j := i + 1; j < len(ls); j++ {
		prev := sha256.Sum256(bytes.TrimSuffix(ls[j-1], []byte("\n")))
		re := regexp.MustCompile(`"prev":"[0-9a-f]*"`)
		if !re.Match(ls[j]) {
			t.Fatalf("line %d has no prev: %s", j+1, ls[j])
		}
		ls[j] = re.ReplaceAll(ls[j], []byte(`"prev":"`+hex.EncodeToString(prev[:])+`"`))
	}
	return ls
}

// TestTamperingIsDetected: each way of changing a log is found, and
// named. The log (writeLog, 9 decisions) is, by line: 1 open, 2-4
// decisions (4 refused), 5 seal, 6-8 decisions, 9 seal, 10-12
// decisions, 13 seal, 14 close.
func TestTamperingIsDetected(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	start := time.Now().Add(-time.Hour)
	writeLog(t, path, key, start, 9, false)
	orig := lines(t, path)
	if s, err := verifyLines(orig, Options{}); err != nil || s.Records != 14 || s.Unsealed != 0 {
		t.Fatalf("the intact log: %+v, %v", s, err)
	}
	clone := func() [][]byte {
		out := make([][]byte, len(orig))
		for i, l := range orig {
			out[i] = append([]byte(nil), l...)
		}
		return out
	}
	other := newKey(t)
	otherPath := filepath.Join(t.TempDir(), "forged.log")
	writeLog(t, otherPath, other, start, 9, false)
	// forgedSeal is a seal record for the chain's head signed with
	// another key than the node's.
	forgedSeal := func(ls [][]byte) []byte {
		prev := sha256.Sum256(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
		var last Record
		if err := json.Unmarshal(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")), &last); err != nil {
			// a signed line: cut its signature off to parse it
			b := ls[len(ls)-1]
			b = append(append([]byte(nil), b[:bytes.LastIndex(b, sigSep)]...), '}')
			if err := json.Unmarshal(b, &last); err != nil {
				t.Fatal(err)
			}
		}
		r := &Record{Seq: last.Seq + 1, Time: last.Time, Type: TypeSeal, Prev: hex.EncodeToString(prev[:])}
		return append(sign(other, r), '\n')
	}
	unsign := func(l []byte) []byte {
		i := bytes.LastIndex(l, sigSep)
		return append(append([]byte(nil), l[:i]...), '}', '\n')
	}
	// decision is an unsigned decision record following the last line.
	decision := func(ls [][]byte, outcome string) []byte {
		prev := sha256.Sum256(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
		r := &Record{Seq: uint64(len(ls)), Time: time.Now().UTC().Format(time.RFC3339Nano), Type: TypeDecision, Prev: hex.EncodeToString(prev[:]),
			Decision: &Decision{Role: "holder", Principal: "op-9", Key: "k", Op: "get", Outcome: outcome, Basis: "admin"}}
		b, _ := json.Marshal(r)
		return append(b, '\n')
	}

	for _, c := range []struct {
		name   string
		tamper func() [][]byte
		opt    Options
		want   string
	}{
		{"a refusal edited into an allowance", func() [][]byte {
			ls := clone()
			ls[3] = bytes.Replace(ls[3], []byte(`"outcome":"refused"`), []byte(`"outcome":"allowed"`), 1)
			return ls
		}, Options{}, "line 5 (seq 4): it does not follow the line before"},
		{"a refusal edited into an allowance, the chain after it rebuilt", func() [][]byte {
			ls := clone()
			ls[3] = bytes.Replace(ls[3], []byte(`"outcome":"refused"`), []byte(`"outcome":"allowed"`), 1)
			return rechain(t, ls, 3)
		}, Options{}, "line 5 (seq 4): the signature does not verify"},
		{"a principal renamed, the chain after it rebuilt", func() [][]byte {
			ls := clone()
			ls[9] = bytes.Replace(ls[9], []byte(`"principal":"op-1"`), []byte(`"principal":"op-2"`), 1)
			return rechain(t, ls, 9)
		}, Options{}, "line 13 (seq 12): the signature does not verify"},
		{"a signed line edited", func() [][]byte {
			ls := clone()
			ls[0] = bytes.Replace(ls[0], []byte(`"node":"n1"`), []byte(`"node":"n2"`), 1)
			return ls
		}, Options{}, "line 1 (seq 0): the signature does not verify"},
		{"two lines swapped", func() [][]byte {
			ls := clone()
			ls[5], ls[6] = ls[6], ls[5]
			return ls
		}, Options{}, "removed, inserted or reordered"},
		{"two lines swapped, seq and chain rebuilt", func() [][]byte {
			ls := clone()
			ls[5], ls[6] = ls[6], ls[5]
			ls[5] = bytes.Replace(ls[5], []byte(`"seq":6`), []byte(`"seq":5`), 1)
			ls[6] = bytes.Replace(ls[6], []byte(`"seq":5`), []byte(`"seq":6`), 1)
			return rechain(t, ls, 4)
		}, Options{}, "line 9 (seq 8): the signature does not verify"},
		{"a line removed", func() [][]byte {
			ls := clone()
			return append(ls[:5], ls[6:]...)
		}, Options{}, "removed, inserted or reordered"},
		{"a line repeated", func() [][]byte {
			ls := clone()
			return append(ls[:6], append([][]byte{ls[5]}, ls[6:]...)...)
		}, Options{}, "removed, inserted or reordered"},
		{"a decision inserted before a seal, the chain rebuilt", func() [][]byte {
			ls := clone()
			ls = append(ls[:8], append([][]byte{decision(ls[:8], Allowed)}, ls[8:]...)...)
			for j := 9; j < len(ls); j++ { // renumber what follows
				ls[j] = regexp.MustCompile(`"seq":\d+`).ReplaceAll(ls[j], []byte(`"seq":`+strconv.Itoa(j)))
			}
			return rechain(t, ls, 8)
		}, Options{}, "line 10 (seq 9): the signature does not verify"},
		{"the first lines removed", func() [][]byte { return clone()[2:] }, Options{}, "does not start with an open record"},
		{"a whole log forged with another key", func() [][]byte { return lines(t, otherPath) },
			Options{PublicKey: key.Public().(ed25519.PublicKey)}, "signature does not verify"},
		{"a forged seal (another key) over the head", func() [][]byte {
			ls := clone()
			return append(ls, forgedSeal(ls))
		}, Options{}, "line 15 (seq 14): the signature does not verify"},
		{"a forged seal over an inserted decision", func() [][]byte {
			ls := clone()[:12]
			ls = append(ls, decision(ls, Allowed))
			return append(ls, forgedSeal(ls))
		}, Options{}, "line 14 (seq 13): the signature does not verify"},
		{"a seal's signature stripped", func() [][]byte {
			ls := clone()
			ls[8] = unsign(ls[8])
			return ls
		}, Options{}, "line 9: a seal record is not signed"},
		{"the close's signature stripped", func() [][]byte {
			ls := clone()
			ls[13] = unsign(ls[13])
			return ls
		}, Options{}, "line 14: a close record is not signed"},
		{"an open record unsigned", func() [][]byte {
			ls := clone()
			ls[0] = unsign(ls[0])
			return ls
		}, Options{}, "does not start with an open record"},
		{"the tail cut off, checked against when it should reach", func() [][]byte { return clone()[:5] },
			Options{Until: start.Add(5 * time.Minute)}, "cut short"},
		{"cut to an earlier close, checked against now", func() [][]byte { return clone() },
			Options{Until: time.Now()}, "cut short"},
		{"decisions appended after the last signature do not reach --until", func() [][]byte {
			ls := clone()[:12] // up to seq 11, unsealed since the seal at seq 8 (start+6s)
			return append(ls, decision(ls, Allowed))
		}, Options{Until: time.Now()}, "cut short"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := verifyLines(c.tamper(), c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("verify: %v, want an error saying %q", err, c.want)
			}
		})
	}
	// What it cannot tell: the tail cut off, without a time it must reach.
	if _, err := verifyLines(clone()[:5], Options{}); err != nil {
		t.Fatalf("a log cut at a line boundary, checked without Until: %v (documented as undetectable)", err)
	}
	// Nor prove records after the last signature: it counts them.
	ls := clone()[:12]
	ls = append(ls, decision(ls, Allowed))
	if s, err := verifyLines(ls, Options{}); err != nil || s.Unsealed != 4 || s.LastSigned.After(s.Last) || s.LastSigned.Equal(s.Last) {
		t.Fatalf("a log whose last 4 records follow its last signature: %+v, %v; want them counted as unsealed", s, err)
	}
}

// TestRecordsAreSealed: a decision is written at once (Decide returns
// when its line is in the file) and unsigned; a seal signs the chain up
// to it within SealInterval, and Close seals what is left.
func TestRecordsAreSealed(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, "n1", key)
	if err != nil {
		t.Fatal(err)
	}
	verify := func() *Summary {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, err := Verify(f, Options{PublicKey: key.Public().(ed25519.PublicKey)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for range 3 {
		if err := w.Decide(&Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Allowed}); err != nil {
			t.Fatal(err)
		}
	}
	if s := verify(); s.Decisions != 3 || s.Unsealed > 3 {
		t.Fatalf("after 3 decisions: %+v", s)
	}
	// The timer seals them: wait for it (no bound asserted on how long).
	for s := verify(); s.Unsealed != 0; s = verify() {
		time.Sleep(SealInterval / 4)
	}
	if s := verify(); s.LastType != TypeSeal || s.Records != 5 {
		t.Fatalf("after the seal: %+v, want open, 3 decisions and one seal", s)
	}
	if err := w.Seal(); err != nil {
		t.Fatal(err)
	}
	if s := verify(); s.Records != 5 {
		t.Fatalf("a seal with nothing to seal wrote a line: %+v", s)
	}
	if err := w.Decide(&Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Refused}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := verify(); s.Unsealed != 0 || s.LastType != TypeClose || s.Refused != 1 {
		t.Fatalf("after close: %+v", s)
	}
}

// TestChangesWhileRunningAreCaught: someone with the file but not the
// key appends a decision (chained) while the node runs; the node's next
// seal signs its own chain head, which no longer follows the file's.
func TestChangesWhileRunningAreCaught(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w := writeLog(t, path, key, time.Now(), 2, true)
	if err := w.Decide(&Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Refused}); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	prev := sha256.Sum256(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
	forged, _ := json.Marshal(&Record{Seq: uint64(len(ls)), Time: time.Now().UTC().Format(time.RFC3339Nano), Type: TypeDecision, Prev: hex.EncodeToString(prev[:]),
		Decision: &Decision{Role: "holder", Principal: "op-evil", Key: "k", Op: "get", Outcome: Allowed, Basis: "admin"}})
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(forged, '\n'))
	f.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if _, err := Verify(bytes.NewReader(b), Options{}); err == nil || !strings.Contains(err.Error(), "removed, inserted or reordered") {
		t.Fatalf("a decision slipped in while the node ran: %v", err)
	}
}

// TestRecordsUnsealedAtACrashAreCounted: a node that dies (no close, no
// seal) leaves its last decisions unsigned; the next open signs the
// chain as it finds it, and Verify says how many records only that
// restart vouches for (they could have been changed while it was down).
func TestRecordsUnsealedAtACrashAreCounted(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w := writeLog(t, path, key, time.Now(), 5, true) // seal after the 3rd, then 2 unsealed
	w.mu.Lock()
	w.f.Close() // the process dies: no seal, no close
	w.f = nil
	w.mu.Unlock()
	writeLog(t, path, key, time.Now(), 1, false)
	b, _ := os.ReadFile(path)
	s, err := Verify(bytes.NewReader(b), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.UnsealedAtRestart != 2 || s.Unsealed != 0 {
		t.Fatalf("summary %+v: want 2 records sealed only by the restart", s)
	}
}

// TestUnfinishedLineIsCutAndNoted: a crash in the middle of a line; the
// next open cuts it, says how many bytes it dropped, and the chain holds.
func TestUnfinishedLineIsCutAndNoted(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, key, time.Now(), 2, false)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"time":"`)
	f.Close()
	writeLog(t, path, key, time.Now(), 1, false)
	b, _ := os.ReadFile(path)
	if !bytes.Contains(b, []byte(`"dropped":17`)) {
		t.Fatalf("the open record does not say 17 bytes were dropped:\n%s", b)
	}
	if _, err := Verify(bytes.NewReader(b), Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFailureIsReported: a full disk (/dev/full) fails every
// append; Decide says so and Err keeps it.
func TestWriteFailureIsReported(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	w, err := Open("/dev/full", "n1", newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Err() == nil {
		t.Fatal("the open record's failed write is not reported")
	}
	if err := w.Decide(&Decision{Role: "holder", Outcome: Allowed}); err == nil {
		t.Fatal("a decision written to a full disk reported no error")
	}
}

// FuzzVerify: any file, verified, gives an answer and no panic; a log
// that verifies has as many records as lines.
func FuzzVerify(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	path := filepath.Join(f.TempDir(), "audit.log")
	w, err := Open(path, "n1", key)
	if err != nil {
		f.Fatal(err)
	}
	w.Decide(&Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Allowed})
	w.Close()
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add([]byte(`{"seq":0,"sig":""}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Verify(bytes.NewReader(b), Options{})
		if err == nil && s.Records != uint64(bytes.Count(b, []byte("\n"))+boolInt(len(b) > 0 && b[len(b)-1] != '\n')) {
			t.Fatalf("%d records verified from %d lines", s.Records, bytes.Count(b, []byte("\n")))
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkDecide: the cost a decision adds to a release on each node
// (an append, no fsync; its share of a seal every SealInterval).
func BenchmarkDecide(b *testing.B) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	w, err := Open(filepath.Join(b.TempDir(), "audit.log"), "n1", key)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	d := &Decision{Role: "holder", Principal: "op-1", Key: "app/k", Op: "get", Basis: "admin", Outcome: Allowed, Nonce: strings.Repeat("ab", 16)}
	for b.Loop() {
		if err := w.Decide(d); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLogsWithSignedDecisionsStillVerify: a log written before decisions
// were sealed (every line signed) goes on verifying, and a node that
// continues it after an upgrade makes one chain of both.
func TestLogsWithSignedDecisionsStillVerify(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	// The earlier format: open, two signed decisions, close.
	var b []byte
	prev := sha256.Sum256([]byte(ChainStart))
	now := time.Now().Add(-time.Hour)
	for i, r := range []*Record{
		{Type: TypeOpen, Node: "n1", PublicKey: key.Public().(ed25519.PublicKey)},
		{Type: TypeDecision, Decision: &Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Allowed}},
		{Type: TypeDecision, Decision: &Decision{Role: "holder", Principal: "op", Key: "k", Op: "get", Outcome: Refused}},
		{Type: TypeClose},
	} {
		r.Seq, r.Time, r.Prev = uint64(i), now.Add(time.Duration(i)*time.Second).UTC().Format(time.RFC3339Nano), hex.EncodeToString(prev[:])
		line := sign(key, r)
		prev = sha256.Sum256(line)
		b = append(append(b, line...), '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Verify(bytes.NewReader(b), Options{}); err != nil || s.Decisions != 2 || s.Unsealed != 0 {
		t.Fatalf("a log of the earlier format: %+v, %v", s, err)
	}
	writeLog(t, path, key, time.Now(), 4, false)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if s, err := Verify(f, Options{PublicKey: key.Public().(ed25519.PublicKey)}); err != nil || s.Decisions != 6 || s.Refused != 2 || s.Unsealed != 0 {
		t.Fatalf("the earlier format continued in this one: %+v, %v", s, err)
	}
}

// TestRecentDecisions: Recent gives the last decisions written, newest
// first, at most RecentDecisions of them, and none that failed to be
// written; seals and ticks are not decisions.
func TestRecentDecisions(t *testing.T) {
	w, err := Open(filepath.Join(t.TempDir(), "audit.log"), "n1", newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := RecentDecisions + 10
	for i := range n {
		if err := w.Decide(&Decision{Role: "holder", Principal: fmt.Sprint(i), Outcome: Allowed}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			w.Seal()
		}
	}
	got := w.Recent(1000)
	if len(got) != RecentDecisions {
		t.Fatalf("Recent kept %d decisions, want %d", len(got), RecentDecisions)
	}
	for i, r := range got {
		if want := fmt.Sprint(n - 1 - i); r.Type != TypeDecision || r.Principal != want {
			t.Fatalf("Recent[%d] is %s by %q, want the decision by %s", i, r.Type, r.Principal, want)
		}
		if i > 0 && r.Seq >= got[i-1].Seq {
			t.Fatalf("Recent is not newest first: seq %d after %d", r.Seq, got[i-1].Seq)
		}
	}
	if got := w.Recent(3); len(got) != 3 || got[0].Principal != fmt.Sprint(n-1) {
		t.Errorf("Recent(3): %+v", got)
	}
	if _, err := os.Stat("/dev/full"); err == nil {
		full, err := Open("/dev/full", "n1", newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		defer full.Close()
		full.Decide(&Decision{Role: "holder", Outcome: Allowed})
		if got := full.Recent(10); len(got) != 0 {
			t.Errorf("a decision that was not written is shown: %+v", got)
		}
	}
}

// FuzzDecisionRecordMatchesMarshal: a decision record is written as the same
// bytes json.Marshal writes for it, whatever its strings hold.
func FuzzDecisionRecordMatchesMarshal(f *testing.F) {
	f.Add(uint64(3), "2026-12-07T03:00:00.123456789Z", "op-1", "app/k", "get", "", Allowed, "", strings.Repeat("ab", 16), "", []byte(nil), 0)
	f.Add(uint64(0), "t", "<op>&\"\\\n\t\b\f\x01\x7f", "\u2028\u2029é\xff\xfe", "cas", "gw", Refused, "denied: <no> rule", "n", "", []byte{1, 2, 3}, -1)
	f.Fuzz(func(t *testing.T, seq uint64, tm, principal, key, op, gateway, outcome, reason, nonce, node string, pub []byte, dropped int) {
		for _, r := range []*Record{
			{Seq: seq, Time: tm, Type: TypeDecision, Prev: nonce, Node: node, PublicKey: pub, Dropped: dropped,
				Decision: &Decision{Role: "holder", Principal: principal, Key: key, Op: op, Gateway: gateway, Client: key, Basis: reason, Outcome: outcome, Reason: reason, Nonce: nonce}},
			{Seq: seq, Time: tm, Type: TypeDecision, Prev: principal},
		} {
			want, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendDecisionRecord(nil, r); !bytes.Equal(got, want) {
				t.Fatalf("written %s\njson.Marshal %s", got, want)
			}
		}
	})
}
