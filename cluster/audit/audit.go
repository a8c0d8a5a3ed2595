// Package audit is a node's audit trail: every authorization decision the
// node makes, appended to a file as one JSON line, each line chained to
// the one before by its SHA-256, the chain signed at its head with the
// node's Ed25519 identity key; and the check of such a file (Verify,
// which keyctl audit verify runs).
//
// The format (one line each):
//
//	{"seq":N,"time":T,"type":"decision","prev":HEX,...}
//	{"seq":N,"time":T,"type":TYPE,"prev":HEX,...,"sig":BASE64}
//
// seq counts from 0 at the file's first line and never restarts; prev is
// the SHA-256 of the previous line's bytes (without its newline), or of
// ChainStart for the first. Decisions are not signed one by one: a
// signed line's sig is Ed25519 over SignLabel and the line's bytes up to
// the `,"sig":` that ends it, and since those bytes hold prev, it signs
// the whole chain before it. Signed types: "open" (the node started
// writing; it names the node and its public key), "seal" (written
// SealInterval after the first decision not yet signed: one signature
// for every decision since the last), "tick" (every TickInterval while
// the node runs, so a log's end says when it was last written) and
// "close" (the node stopped cleanly). A decision is in the file when
// Decide returns; its signature follows within SealInterval.
//
// What a check finds: an edited line (the next line's prev, or, if the
// chain after it was rebuilt, the next signature), lines reordered,
// removed or inserted (prev and seq, or the next signature), a signed
// type without its signature, a line signed by another key than the one
// the file opened with, and, given when the log should reach
// (Options.Until), a log whose last signed line is more than two ticks
// older. While the node runs, its next seal signs its own chain head, so
// a line changed or slipped in under it breaks the chain there. What it
// cannot find: the loss of the last records written within two ticks of
// Until (or, without Until, any truncation at a line boundary); a change
// to the decisions after the last signature (Summary.Unsealed counts
// them: at most SealInterval's worth on a running node) or to those a
// crash left unsigned, which the next open signs as it finds them
// (Summary.UnsealedAtRestart counts them); and anything written by
// whoever holds the node's identity key, who can rewrite the whole file.
// The other holders of a release keep their own logs of the same request
// (its nonce): compare them to find one node's log that is missing a
// decision.
//
// Records never hold key material: names, principals, operations,
// outcomes and nonces only.
package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// SignLabel separates audit signatures from every other use of a node's
// identity key.
const SignLabel = "keyquorum/audit/v1\x00"

// ChainStart is what the first line's prev is the SHA-256 of.
const ChainStart = "keyquorum/audit/v1 chain start"

// TickInterval is how often a running node writes a tick record.
const TickInterval = time.Minute

// SealInterval is how long a decision waits for the seal that signs it:
// one signature for all decisions made meanwhile, instead of one each
// (an Ed25519 signature costs about as much as a holder's partial).
const SealInterval = 100 * time.Millisecond

// Record types.
const (
	TypeOpen     = "open"
	TypeDecision = "decision"
	TypeSeal     = "seal"
	TypeTick     = "tick"
	TypeClose    = "close"
)

// Outcomes of a decision.
const (
	Allowed = "allowed"
	Refused = "refused"
)

// Decision is one authorization decision.
type Decision struct {
	// Role is what the node decided as: "coordinator" (it checked the
	// request before asking holders), "holder" (before using its share),
	// or "submit" (a signed write it relayed, with the state machine's
	// verdict).
	Role string `json:"role"`
	// Principal is who asked: an operator, machine or node ID (the
	// request's signer).
	Principal string `json:"principal"`
	Key       string `json:"key,omitempty"`
	// Op is the operation: get, cas, exchange, or a write's command type.
	Op string `json:"op"`
	// Gateway and Client: a legacy gateway's request, signed by a node
	// for its client.
	Gateway string `json:"gateway,omitempty"`
	Client  string `json:"client,omitempty"`
	// Basis is what allowed it: "admin", "rule:ID", "access:GATEWAY",
	// "machine:ID"; empty when refused.
	Basis   string `json:"basis,omitempty"`
	Outcome string `json:"outcome"`
	// Reason is the refusal: the error kind and message.
	Reason string `json:"reason,omitempty"`
	// Nonce is the request's nonce, hex: the same request in other
	// nodes' logs has the same.
	Nonce string `json:"nonce,omitempty"`
}

// Record is one line of the log.
type Record struct {
	Seq  uint64 `json:"seq"`
	Time string `json:"time"` // RFC 3339, UTC, nanoseconds
	Type string `json:"type"`
	Prev string `json:"prev"` // hex
	// Node and PublicKey (base64 Ed25519) are set on open records.
	Node      string `json:"node,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"`
	// Dropped is, on an open record, how many bytes of an unfinished
	// last line (a crash while writing it) the node cut off.
	Dropped   int `json:"dropped,omitempty"`
	*Decision `json:",omitempty"`
}

var sigSep = []byte(`,"sig":"`)

// Writer appends records to a log file. It is safe for concurrent use.
type Writer struct {
	key  ed25519.PrivateKey
	node string

	mu   sync.Mutex
	f    *os.File
	seq  uint64
	prev [sha256.Size]byte
	// failed is the last write error, nil once a write succeeds again.
	failed error
	// unsealed counts the decisions written since the last signed line;
	// sealing is set while a seal is scheduled for them.
	unsealed  int
	sealing   bool
	sealAfter time.Duration // SealInterval; tests lengthen it
	stop      chan struct{}
	done      chan struct{}
	now       func() time.Time // time.Now; tests move it
	// recent holds the last RecentDecisions decisions written, oldest
	// first from next (a ring), for the console's audit page.
	recent []Record
	next   int
}

// RecentDecisions is how many of its last decisions a Writer keeps in
// memory for Recent.
const RecentDecisions = 256

// Open opens (or creates, mode 0600) the log at path for node, whose
// identity key is key, continues its chain and appends an open record; a
// tick record follows every TickInterval until Close. A file that is not
// a regular file (a device) starts a chain of its own. It fails only if
// the file cannot be opened or its chain read; a failed first write is
// what Err reports.
func Open(path, node string, key ed25519.PrivateKey) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	w := &Writer{key: key, node: node, f: f, prev: sha256.Sum256([]byte(ChainStart)), stop: make(chan struct{}), done: make(chan struct{}), now: time.Now, sealAfter: SealInterval}
	dropped := 0
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if dropped, err = w.resume(st.Size()); err != nil {
			f.Close()
			return nil, err
		}
	}
	w.append(&Record{Type: TypeOpen, Node: node, PublicKey: key.Public().(ed25519.PublicKey), Dropped: dropped})
	go w.tick()
	return w, nil
}

// maxLine bounds a record's line: resume reads no more than this of the
// file's end.
const maxLine = 1 << 20

// resume reads the file's last complete line (within its last 2*maxLine
// bytes: records are far smaller) to continue its chain, and cuts off an
// unfinished one after it.
func (w *Writer) resume(size int64) (dropped int, err error) {
	off := max(0, size-2*maxLine)
	b, err := io.ReadAll(io.NewSectionReader(w.f, off, size-off))
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	end := bytes.LastIndexByte(b, '\n') + 1
	if end == 0 && off > 0 {
		return 0, fmt.Errorf("audit log: no line ends in its last %d bytes", len(b))
	}
	if end < len(b) {
		dropped = len(b) - end
		if err := w.f.Truncate(off + int64(end)); err != nil {
			return 0, fmt.Errorf("audit log: cutting an unfinished line: %w", err)
		}
	}
	if end == 0 {
		return dropped, nil
	}
	start := bytes.LastIndexByte(b[:end-1], '\n') + 1
	last := b[start : end-1]
	var r Record
	if err := json.Unmarshal(last, &r); err != nil {
		return 0, fmt.Errorf("audit log: its last line does not parse: %w", err)
	}
	w.seq = r.Seq + 1
	w.prev = sha256.Sum256(last)
	return dropped, nil
}

// Decide appends a decision, and schedules a seal for it if none is: it
// is in the file when Decide returns, signed within SealInterval. An
// error means it is not in the log.
func (w *Writer) Decide(d *Decision) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.appendLocked(&Record{Type: TypeDecision, Decision: d}); err != nil {
		return err
	}
	w.unsealed++
	if !w.sealing {
		w.sealing = true
		time.AfterFunc(w.sealAfter, func() { w.Seal() })
	}
	return nil
}

// Seal appends a seal record, signing the chain up to the last decision,
// if any decision is not signed yet.
func (w *Writer) Seal() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealing = false
	if w.unsealed == 0 || w.f == nil {
		return nil
	}
	return w.appendLocked(&Record{Type: TypeSeal})
}

// Err is the error of the last write, nil if it succeeded.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

func (w *Writer) append(r *Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.appendLocked(r)
}

// appendLocked writes r, signed unless it is a decision, and advances
// the chain; w.mu is held. Only tick and close records are synced to
// disk (and open, best effort): a decision or seal is written, not
// synced, as the log's other lines before it.
func (w *Writer) appendLocked(r *Record) error {
	if w.f == nil {
		w.failed = errors.New("audit log: closed")
		return w.failed
	}
	r.Seq, r.Time, r.Prev = w.seq, w.now().UTC().Format(time.RFC3339Nano), hex.EncodeToString(w.prev[:])
	var line []byte
	if r.Type == TypeDecision {
		line = appendDecisionRecord(make([]byte, 0, 512), r)
	} else {
		line = sign(w.key, r)
	}
	if _, err := w.f.Write(append(line, '\n')); err != nil {
		// The chain does not advance: the next record links to the last
		// line written. A partial line is cut when the log is opened again.
		w.failed = fmt.Errorf("audit log: %w", err)
		return w.failed
	}
	if r.Type != TypeDecision && r.Type != TypeSeal {
		if err := w.f.Sync(); err != nil && r.Type != TypeOpen {
			w.failed = fmt.Errorf("audit log: %w", err)
			return w.failed
		}
	}
	w.seq++
	w.prev = sha256.Sum256(line)
	w.failed = nil
	if r.Type == TypeDecision {
		w.remember(r)
	}
	if r.Type != TypeDecision {
		w.unsealed = 0
	}
	return nil
}

// remember keeps a copy of decision record r in the ring; w.mu is held.
func (w *Writer) remember(r *Record) {
	c := *r
	d := *r.Decision
	c.Decision = &d
	if len(w.recent) < RecentDecisions {
		w.recent = append(w.recent, c)
		return
	}
	w.recent[w.next] = c
	w.next = (w.next + 1) % RecentDecisions
}

// Recent returns up to max of the last decisions written to the log
// (since the node started), newest first.
func (w *Writer) Recent(max int) []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(max, len(w.recent))
	out := make([]Record, 0, n)
	for i := range n {
		j := (w.next - 1 - i + 2*len(w.recent)) % len(w.recent)
		out = append(out, w.recent[j])
	}
	return out
}

// sign makes a record's line: its JSON with the signature as last field.
func sign(key ed25519.PrivateKey, r *Record) []byte {
	b, _ := json.Marshal(r) // a Record always marshals
	body := b[:len(b)-1]    // without the closing brace
	sig := ed25519.Sign(key, append([]byte(SignLabel), body...))
	line := append(append([]byte(nil), body...), sigSep...)
	line = append(line, base64.StdEncoding.EncodeToString(sig)...)
	return append(line, '"', '}')
}

func (w *Writer) tick() {
	defer close(w.done)
	t := time.NewTicker(TickInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.append(&Record{Type: TypeTick})
		}
	}
}

// Close appends a close record and closes the file.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	err := w.append(&Record{Type: TypeClose})
	w.mu.Lock()
	defer w.mu.Unlock()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// Options are what Verify checks beyond the chain and signatures.
type Options struct {
	// PublicKey, if set, is the key every line must be signed with (the
	// node's identity: keyctl cluster status lists members' keys);
	// otherwise the key of the first open record.
	PublicKey ed25519.PublicKey
	// Until, if not zero, is when the log should still have been written
	// (now, for a running node): a log whose last line is older than two
	// ticks before it was cut short, or the node stopped (it says which
	// when its last line is a close record).
	Until time.Time
}

// Summary is what a log that verifies holds.
type Summary struct {
	Node      string
	PublicKey ed25519.PublicKey
	Records   uint64
	Decisions uint64
	Refused   uint64
	First     time.Time
	Last      time.Time
	LastType  string
	// LastSigned is the time of the last signed line: what Until is
	// checked against.
	LastSigned time.Time
	// Unsealed counts the decisions after the last signed line: nothing
	// proves them (a running node's last SealInterval, or a crash's).
	Unsealed uint64
	// UnsealedAtRestart counts decisions that a crash left unsigned and
	// that the node's next open record signed as it found them: they
	// could have been changed while it was down.
	UnsealedAtRestart uint64
}

// Verify checks a log read from r: every line's signature, its seq and
// its link to the line before, from the start of the chain. It returns
// the first problem, naming its line.
func Verify(r io.Reader, opt Options) (*Summary, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	prev := sha256.Sum256([]byte(ChainStart))
	key := opt.PublicKey
	s := &Summary{PublicKey: key}
	var n uint64
	for sc.Scan() {
		line := sc.Bytes()
		n++
		var rec Record
		i := bytes.LastIndex(line, sigSep)
		signed := i >= 0 && i+len(sigSep) <= len(line)-2 && bytes.HasSuffix(line, []byte(`"}`))
		var sig []byte
		if signed {
			var err error
			if sig, err = base64.StdEncoding.DecodeString(string(line[i+len(sigSep) : len(line)-2])); err != nil {
				return s, fmt.Errorf("line %d: signature: %v", n, err)
			}
			if err := json.Unmarshal(append(append([]byte(nil), line[:i]...), '}'), &rec); err != nil {
				return s, fmt.Errorf("line %d: %v", n, err)
			}
		} else if err := json.Unmarshal(line, &rec); err != nil {
			return s, fmt.Errorf("line %d: %v", n, err)
		}
		if key == nil {
			if !signed || rec.Type != TypeOpen || len(rec.PublicKey) != ed25519.PublicKeySize {
				return s, fmt.Errorf("line %d: the log does not start with an open record naming the node's key", n)
			}
			key = rec.PublicKey
			s.PublicKey = key
		}
		if !signed && rec.Type != TypeDecision {
			return s, fmt.Errorf("line %d: a %s record is not signed: only decisions are, by the signed line after them", n, rec.Type)
		}
		if rec.Seq != n-1 {
			return s, fmt.Errorf("line %d: seq %d, want %d: lines were removed, inserted or reordered", n, rec.Seq, n-1)
		}
		if rec.Prev != hex.EncodeToString(prev[:]) {
			return s, fmt.Errorf("line %d (seq %d): it does not follow the line before: lines were edited, removed, inserted or reordered", n, rec.Seq)
		}
		if signed && !ed25519.Verify(key, append([]byte(SignLabel), line[:i]...), sig) {
			return s, fmt.Errorf("line %d (seq %d): the signature does not verify: this line or one before it was edited, or it was signed by another key", n, rec.Seq)
		}
		if rec.Type == TypeOpen {
			if !bytes.Equal(rec.PublicKey, key) {
				return s, fmt.Errorf("line %d: an open record with another node key", n)
			}
			s.Node = rec.Node
		}
		t, err := time.Parse(time.RFC3339Nano, rec.Time)
		if err != nil {
			return s, fmt.Errorf("line %d: time: %v", n, err)
		}
		if n == 1 {
			s.First = t
		}
		s.Last, s.LastType = t, rec.Type
		if signed {
			s.LastSigned = t
			if rec.Type == TypeOpen {
				s.UnsealedAtRestart += s.Unsealed
			}
			s.Unsealed = 0
		}
		if rec.Type == TypeDecision {
			s.Decisions++
			if !signed {
				s.Unsealed++
			}
			if rec.Decision != nil && rec.Outcome == Refused {
				s.Refused++
			}
		}
		prev = sha256.Sum256(line)
		s.Records = n
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if n == 0 {
		return s, errors.New("the log is empty")
	}
	if !opt.Until.IsZero() && s.LastSigned.Before(opt.Until.Add(-2*TickInterval)) {
		if s.Unsealed > 0 {
			return s, fmt.Errorf("the log's last signed line is of %s, more than two ticks (%v) before %s, and the %d decisions after it are not signed: it was cut short, or the node crashed then", s.LastSigned.Format(time.RFC3339), 2*TickInterval, opt.Until.Format(time.RFC3339), s.Unsealed)
		}
		if s.LastType == TypeClose {
			return s, fmt.Errorf("the log ends at %s with the node stopping, before %s: if the node ran after that, the log was cut short", s.Last.Format(time.RFC3339), opt.Until.Format(time.RFC3339))
		}
		return s, fmt.Errorf("the log ends at %s, more than two ticks (%v) before %s, and not with the node stopping: it was cut short, or the node crashed then", s.Last.Format(time.RFC3339), 2*TickInterval, opt.Until.Format(time.RFC3339))
	}
	return s, nil
}
