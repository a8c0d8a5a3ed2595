package fsm

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/google/btree"

	"github.com/keyquorum/keyquorum/vocab"
)

// Certified checkpoints: a snapshot is untrusted input.
//
// Raft installs a snapshot on a follower from whoever claims to lead, and
// Raft tolerates crashes, not lies; a snapshot is also read back from the
// node's own disk. So the state a snapshot carries is trusted only as far
// as t holders of the cluster key certified it:
//
//  1. Once the cluster has a key, at the first entry applied at or past
//     each multiple of CheckpointEvery, and at the entry that brings the
//     bytes of the entries applied since the last checkpoint taken to
//     CheckpointBytes (a bulk load is few entries of many keys: counted in
//     entries alone, it would keep all of them in memory, and in every
//     snapshot, until the next multiple), the state hash (Hash, kept as
//     entries apply: statehash.go) is recorded in State.Pending, and the
//     state is kept as it is then without encoding it (frozen: a
//     copy-on-write clone of the keys and the small rest encoded), so
//     taking a checkpoint costs the entries since the last hash, not the
//     size of the state. The first entry
//     at or past the multiple, not the multiple itself: Raft's own entries
//     (configuration, no-ops) never reach Apply, so a fixed index may never
//     be applied.
//  2. Each holder that applied it signs the checkpoint: a partial
//     s_i*HashToPoint("keyquorum checkpoint v1", CheckpointMessage) with a
//     DLEQ proof, proposed as a node-signed TypeAttest entry. Every replica
//     checks the proof against the epoch's commitments and that the hash is
//     its own; t of them certify the checkpoint (State.Checkpoint).
//  3. A snapshot is the certified checkpoint's state, encoded as the
//     snapshot is written, with its t partials, and every entry applied
//     after it, as applied (index, time, bytes, refusals included).
//     Restore decodes the state, computes its hash as Hash does, checks it
//     is the certified one and verifies the certificate, then
//     replays the entries through Apply, which checks each one's operator
//     or node signature as it did the first time.
//
//  4. The entry that gives the state its first cluster key (the key
//     generation's last acknowledgement) also takes a checkpoint, at its
//     own index: once the state has a key and no checkpoint certified or
//     pending, one is taken. Restore refuses a snapshot without a
//     certified checkpoint that gives a state with a cluster key, or that
//     would take a replica with a key back to one without (5 below), so
//     this keeps the time in which a snapshot or backup cannot be made
//     (CaptureCertified) to the few entries its holders need to attest it.
//  5. A destroy_key that takes effect also takes a checkpoint, at its own
//     index (State.Destroyed). Once a checkpoint at or after it is
//     certified, the snapshot holds the certified state, which has no
//     material of the destroyed key, and only entries after it: no entry
//     that carried the key's material (create_key, replace_key). The
//     retained entries and checkpoint encodings in memory are dropped at
//     the same moment. Erasure tells a node when that is, so it can take a
//     snapshot and erase the older log and snapshots from its disk
//     (cluster/erase.go).
//
// Why a history without a certified checkpoint may not bring a key: its
// entries' signatures do not tie it to the cluster. The founding entry is
// signed by the operator it names, so anyone can write one (with the
// cluster's real ID and founding node, and itself as the admin), and the
// key generation's deals and acknowledgements are signed by nodes but bind
// nothing of the founding entry: replayed after a forged founding at the
// same indexes, they give the real commitments, and the pin holds
// (TestForgedFoundingReplaysTheRealKeyGeneration). A fresh deal carries
// no proof of knowledge of its constant term either, so one node's key is
// enough to deal a key generation whose commitments are the pinned key's
// (cluster.TestForgedFoundingBackupIsRefused). A certificate is different:
// t partials over the state's hash, each with a DLEQ proof against
// commitments whose constant term is the pin, can be made only by t holders
// of the real key, and honest holders sign only states they applied
// themselves. So a keyed state is trusted only when it is, or is replayed
// from, a certified checkpoint; after that every entry is checked against
// a state the real holders vouched for. Binding the deals to the founding
// entry instead would not be enough without a proof of knowledge in every
// fresh deal (the rogue-key deal above), and resharing rounds need no
// checkpoint of their own: they happen after the first, and their deals
// are checked against the certified commitments.
//
// A replica that restarts without a snapshot checks no certificate: Raft
// sends it its log again from index 1. So the node pins the founding
// entry it applied once its state holds a checkpoint certified under the
// pinned key (PinFounding, cluster/pin.go), and Apply refuses any other
// founding entry, and a first key generation that makes another key than
// the pin (TestPinnedFoundingRefusesForgedLog). From the real founding
// entry a sender can use only entries their signers signed, though it can
// still omit or reorder them, and put a rogue deal in place of its own.
//
// What this does not stop: a sender may leave out entries after the
// checkpoint (an omission, like a leader that never commits them), within
// the window before the next certified checkpoint. Restore refuses a
// snapshot that would take the replica back before its own applied index
// or its own certified checkpoint, and one whose replayed entries do not
// re-certify the checkpoint they start from.

// DefaultCheckpointEvery is the checkpoint interval when
// FSM.CheckpointEvery is 0.
const DefaultCheckpointEvery = 1024

// DefaultCheckpointBytes is the checkpoint interval in entry bytes when
// FSM.CheckpointBytes is 0: about 18 create_keys entries of 1,000 keys
// (225 KB each), and more than 1,024 entries of single creates (1-2 KB
// each), which CheckpointEvery checkpoints first. What a replica keeps
// of the entries since its certified checkpoint is bounded by it (and
// the entries its holders take to attest), where it was up to 1,024
// create_keys entries: 230 MB after a bulk load of a million keys.
const DefaultCheckpointBytes = 4 << 20

// CheckpointLabel is HashToPoint's label for checkpoint partials. Its v1
// signed the SHA-256 of the state's encoding; v2 the state hash (Hash)
// with its entries expanded by SHAKE128; v3 the state hash as it is now
// (expanded by AES-256-CTR, statehash.go).
const CheckpointLabel = "keyquorum checkpoint v3"

// maxPending bounds the checkpoints being attested at once; an older one
// is dropped when a newer one is taken.
const maxPending = 4

// snapshotVersion is the encoding of Snapshot: 3 since the state hash's
// entries are expanded by AES-256-CTR (2: by SHAKE128; 1: checkpoints
// certified the SHA-256 of the checkpoint's bytes). The encoding is the
// same; the certificate signs another hash.
const snapshotVersion = 3

// Partial is a holder's partial over a checkpoint: shamir.Partial's
// fields (Value = s_i*R, DLEQ proof (Challenge, Response)).
type Partial struct {
	Index     uint32 `json:"index"`
	Value     []byte `json:"value"`
	Challenge []byte `json:"challenge"`
	Response  []byte `json:"response"`
}

// Checkpoint is a checkpoint being attested (in State.Pending) or one
// certified (State.Checkpoint, and a snapshot's certificate).
type Checkpoint struct {
	Index    uint64     `json:"index"`
	Hash     []byte     `json:"hash"`           // the state hash (Hash) just after entry Index
	Epoch    uint64     `json:"epoch"`          // the epoch whose holders' partials are collected
	Poly     [][]byte   `json:"poly,omitempty"` // when certified: the commitments the partials verify against
	Partials []*Partial `json:"partials"`       // at distinct share indexes, in log order
}

func (c *Checkpoint) clone() *Checkpoint {
	if c == nil {
		return nil
	}
	out := &Checkpoint{Index: c.Index, Hash: bytes.Clone(c.Hash), Epoch: c.Epoch}
	for _, p := range c.Poly {
		out.Poly = append(out.Poly, bytes.Clone(p))
	}
	for _, p := range c.Partials {
		q := *p
		q.Value, q.Challenge, q.Response = bytes.Clone(p.Value), bytes.Clone(p.Challenge), bytes.Clone(p.Response)
		out.Partials = append(out.Partials, &q)
	}
	return out
}

// Attest is a holder's partial over the pending checkpoint at Index,
// whose state hash is Hash.
type Attest struct {
	Index   uint64   `json:"index"`
	Hash    []byte   `json:"hash"`
	Partial *Partial `json:"partial"`
}

// CheckpointChecker verifies checkpoint partials. The FSM's DealChecker
// may implement it; without it, attestations are refused and so are
// snapshots that carry a checkpoint.
type CheckpointChecker interface {
	// VerifyCheckpointPartial checks p against the public commitments
	// poly (which it validates: canonical prime-order points): R =
	// HashToPoint(CheckpointLabel, msg), and p's DLEQ proof, with msg as
	// the proof's context, against poly's public share of p.Index.
	VerifyCheckpointPartial(poly [][]byte, msg []byte, p *Partial) error
}

// CheckpointMessage is what a checkpoint partial signs: the cluster, the
// index and the state hash. Its length is never 32, the length of a
// ReleaseContext, so a checkpoint proof is never a release proof.
func CheckpointMessage(clusterID string, index uint64, hash []byte) []byte {
	b := []byte(vocab.LabelCheckpoint + "\x00" + clusterID + "\x00")
	b = binary.BigEndian.AppendUint64(b, index)
	return append(b, hash...)
}

// Entry is one applied log entry, as a snapshot carries it.
type Entry struct {
	Index uint64 `json:"index"`
	Time  int64  `json:"time"` // the leader's append time, Unix nanoseconds
	Data  []byte `json:"data"`
}

// checkpoints is what the FSM keeps in memory, beside the state, to make
// snapshots: the certified checkpoint's state and the entries since.
// Slices are never changed in place once shared, and frozen states never
// change, so a capture of them is immutable.
type checkpoints struct {
	pin       []byte             // cluster public key given by PinClusterKey
	founding  []byte             // SHA-256 of the founding entry's signed payload, if this replica applied it
	foundPin  []byte             // the founding entry's hash given by PinFounding
	last      uint64             // index of the last entry applied
	sinceSize uint64             // bytes of the entries applied since the last checkpoint taken (all of them before one)
	pending   map[uint64]*frozen // the states of State.Pending, by index
	cert      *Checkpoint        // the certified checkpoint (a copy of State.Checkpoint when it was certified)
	certState *frozen            // its state
	entries   []Entry            // applied after cert (all of them without one)
}

// frozen is a state as it was at a checkpoint, kept without encoding it:
// the keys as a copy-on-write clone of the state's index of them (O(1) to
// take; it shares what Apply has not changed since, and keys are never
// changed in place: editKey), the nonces likewise (nonces.go), and the
// rest of the state, which grows with neither, encoded. writeBase64To
// encodes it, off the FSM's lock.
type frozen struct {
	rest   []byte                    // the state's encoding with Keys nil, and Nonces nil if nonces is set
	keys   *btree.BTreeG[*Key]       // the keys, by name
	nonces *btree.BTreeG[nonceEntry] // the nonces, by expiry; nil: rest has them (a state with Nonces nil)
}

// freeze keeps s as it is now.
func (s *State) freeze() (*frozen, error) {
	if s.names == nil {
		s.reindex()
	}
	fr := &frozen{keys: s.names.Clone()}
	rest := *s
	rest.Keys = nil
	if s.Nonces != nil {
		rest.Nonces = nil
		fr.nonces = s.nonceIndex().Clone()
	}
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil, err
	}
	fr.rest = b
	return fr, nil
}

// stateWriteBlock is how much of a state's encoding writeBase64To
// gathers before it encodes and writes it: a multiple of 3, so that each
// block but the last encodes whole, without padding.
const stateWriteBlock = 48 << 10

// writeBase64To writes the standard base64 of the state's encoding, byte
// for byte json.Marshal's of the state it froze, encoding one key (then
// one nonce) at a time into a block it reuses and writing each block's
// base64 whole.
func (fr *frozen) writeBase64To(w io.Writer) error {
	start, end, err := fieldValue(fr.rest, "keys")
	if err != nil {
		return err
	}
	// The nonces' value, after the keys' (the fields' order is State's).
	nstart, nend := len(fr.rest), len(fr.rest)
	if fr.nonces != nil {
		if nstart, nend, err = fieldValue(fr.rest, "nonces"); err != nil {
			return err
		}
		if nstart < end {
			return errors.New("a frozen state has its nonces before its keys")
		}
	}
	buf := make([]byte, 0, stateWriteBlock+4<<10)
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(cap(buf)))
	// write writes the base64 of buf's first n bytes and keeps the rest.
	write := func(n int) error {
		out = base64.StdEncoding.AppendEncode(out[:0], buf[:n])
		buf = buf[:copy(buf, buf[n:])]
		_, err := w.Write(out)
		return err
	}
	buf = append(buf, fr.rest[:start]...)
	buf = append(buf, '{')
	var enc keyEncoder
	first := true
	fr.keys.Ascend(func(k *Key) bool {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendJSONString(buf, k.Name)
		buf = append(buf, ':')
		if buf, err = enc.appendKey(buf, k); err != nil {
			return false
		}
		if len(buf) >= stateWriteBlock {
			err = write(len(buf) / 3 * 3)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	buf = append(buf, '}')
	buf = append(buf, fr.rest[end:nstart]...)
	if fr.nonces != nil {
		// json.Marshal's encoding of the map they were: sorted by name.
		buf = append(buf, '{')
		for i, e := range sortedNonces(fr.nonces) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, e.name)
			buf = append(buf, ':')
			buf = strconv.AppendInt(buf, e.exp, 10)
			if len(buf) >= stateWriteBlock {
				if err := write(len(buf) / 3 * 3); err != nil {
					return err
				}
			}
		}
		buf = append(buf, '}')
		buf = append(buf, fr.rest[nend:]...)
	}
	return write(len(buf))
}

// fieldValue finds the value of the top-level field name in the JSON
// object b: b[start:end].
func fieldValue(b []byte, name string) (start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, errors.New("a frozen state is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, 0, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, err
		}
		if tok == name {
			end := int(dec.InputOffset())
			return end - len(v), end, nil
		}
	}
	return 0, 0, fmt.Errorf("a frozen state has no field %q", name)
}

func (f *FSM) every() uint64 {
	if f.CheckpointEvery == 0 {
		return DefaultCheckpointEvery
	}
	return f.CheckpointEvery
}

func (f *FSM) everyBytes() uint64 {
	if f.CheckpointBytes == 0 {
		return DefaultCheckpointBytes
	}
	return f.CheckpointBytes
}

// afterApply is Apply's hook, called with the lock held after every entry,
// refused or not: it remembers the entry, notices a new certification,
// and takes a checkpoint when one is due.
func (f *FSM) afterApply(index uint64, at time.Time, data []byte) {
	ck := &f.ck
	s := f.state
	ck.entries = append(ck.entries, Entry{Index: index, Time: at.UnixNano(), Data: bytes.Clone(data)})
	ck.sinceSize += uint64(len(data))
	if c := s.Checkpoint; c != nil && (ck.cert == nil || c.Index > ck.cert.Index) {
		if fr, ok := ck.pending[c.Index]; ok {
			ck.cert, ck.certState = c.clone(), fr
			i := slices.IndexFunc(ck.entries, func(e Entry) bool { return e.Index > c.Index })
			if i < 0 {
				i = len(ck.entries)
			}
			ck.entries = slices.Clone(ck.entries[i:])
		}
		for k := range ck.pending {
			if k <= c.Index {
				delete(ck.pending, k)
			}
		}
	}
	first := s.Checkpoint == nil && len(s.Pending) == 0 // the key is new: certify it now (4 above)
	due := index/f.every() > ck.last/f.every() || ck.sinceSize >= f.everyBytes() || s.Destroyed == index || first
	if len(s.Poly) > 0 && s.Epoch > 0 && due {
		if sum, fr, err := f.freeze(); err == nil {
			f.takeCheckpoint(index, sum[:], fr)
		}
	}
	ck.last = index
}

// Erasure says what a node must erase from its disk after a destroy:
// destroyed is the index of the last destroy_key that took effect (0:
// none), and certified the index of the certified checkpoint that
// snapshots now start from (0: none). Once certified >= destroyed, a
// snapshot carries no material of any destroyed key (the certified state
// has none, and it carries only entries after it), and neither does this
// FSM's memory of entries and checkpoints: a snapshot taken then, with the
// log up to it and every older snapshot erased, leaves none on the disk.
func (f *FSM) Erasure() (destroyed, certified uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.ck.cert != nil {
		certified = f.ck.cert.Index
	}
	return f.state.Destroyed, certified
}

// freeze is the state hash and the frozen state now, for a checkpoint;
// it runs under the write lock (Hash folds under the read lock, which
// Apply's excludes).
func (f *FSM) freeze() ([32]byte, *frozen, error) {
	if err := f.digest.fold(f.state); err != nil {
		return [32]byte{}, nil, err
	}
	sum, err := f.digest.hash(f.state)
	if err != nil {
		return [32]byte{}, nil, err
	}
	fr, err := f.state.freeze()
	return sum, fr, err
}

// takeCheckpoint records the state fr, whose hash is sum, just after
// entry index, as a checkpoint to attest.
func (f *FSM) takeCheckpoint(index uint64, sum []byte, fr *frozen) {
	s := f.state
	s.Pending = append(s.Pending, &Checkpoint{Index: index, Hash: sum, Epoch: s.Epoch, Partials: []*Partial{}})
	if len(s.Pending) > maxPending {
		s.Pending = slices.Clone(s.Pending[len(s.Pending)-maxPending:])
	}
	if f.ck.pending == nil {
		f.ck.pending = map[uint64]*frozen{}
	}
	f.ck.pending[index] = fr
	f.ck.sinceSize = 0
	for k := range f.ck.pending {
		if !slices.ContainsFunc(s.Pending, func(c *Checkpoint) bool { return c.Index == k }) {
			delete(f.ck.pending, k)
		}
	}
}

// attest applies a holder's partial over a pending checkpoint; t of them,
// from distinct holders of the current epoch, certify it.
func (t *transition) attest(a *Attest) *Error {
	s := t.s
	if a == nil || a.Partial == nil {
		return errorf(CodeInvalid, "attest needs an index, a hash and a partial")
	}
	n := s.Nodes[t.signer]
	if n == nil || !n.Holder {
		return errorf(CodeDenied, "%s holds no share of epoch %d", t.signer, s.Epoch)
	}
	if a.Partial.Index != n.Index {
		return errorf(CodeInvalid, "partial of share %d signed by %s, whose share is %d", a.Partial.Index, t.signer, n.Index)
	}
	var pc *Checkpoint
	for _, c := range s.Pending {
		if c.Index == a.Index {
			pc = c
		}
	}
	if pc == nil {
		if s.Checkpoint != nil && a.Index <= s.Checkpoint.Index {
			return errorf(CodeConflict, "checkpoint %d is certified or superseded", a.Index)
		}
		return errorf(CodeState, "no checkpoint at index %d is being attested", a.Index)
	}
	if !bytes.Equal(pc.Hash, a.Hash) {
		return errorf(CodeConflict, "%s's state at index %d differs from this replica's", t.signer, a.Index)
	}
	partials := pc.Partials
	if pc.Epoch != s.Epoch {
		partials = nil // collected under an earlier sharing
	}
	for _, p := range partials {
		if p.Index == a.Partial.Index {
			return errorf(CodeConflict, "share %d already attested checkpoint %d", p.Index, a.Index)
		}
	}
	cc, ok := t.fsm.checker.(CheckpointChecker)
	if !ok {
		return errorf(CodeState, "this replica cannot check checkpoint partials")
	}
	if err := cc.VerifyCheckpointPartial(s.Poly, CheckpointMessage(s.ClusterID, a.Index, a.Hash), a.Partial); err != nil {
		return errorf(CodeBadSignature, "partial of %s over checkpoint %d: %v", t.signer, a.Index, err)
	}
	p := *a.Partial
	pc.Epoch, pc.Partials = s.Epoch, append(slices.Clone(partials), &p)
	if len(pc.Partials) < max(s.Threshold, len(s.Poly)) {
		return nil
	}
	cert := pc.clone()
	for _, c := range s.Poly {
		cert.Poly = append(cert.Poly, bytes.Clone(c))
	}
	s.Checkpoint = cert
	s.Pending = slices.DeleteFunc(slices.Clone(s.Pending), func(c *Checkpoint) bool { return c.Index <= a.Index })
	if len(s.Pending) == 0 {
		s.Pending = nil
	}
	return nil
}

// StateBytes is the deterministic encoding of the state: what a
// snapshot's checkpoint carries.
func (f *FSM) StateBytes() ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return json.Marshal(f.state)
}

// Hash is the state hash: replicas that applied the same log have the
// same hash, and replicas whose states differ in anything have different
// ones. It is kept as entries apply (statehash.go): a call costs the
// entries applied since the last one, not the size of the state.
func (f *FSM) Hash() ([32]byte, error) {
	f.hashMu.Lock()
	defer f.hashMu.Unlock()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.hashed.ok && f.hashed.changes == f.changes {
		return f.hashed.sum, nil
	}
	if err := f.digest.fold(f.state); err != nil {
		return [32]byte{}, err
	}
	sum, err := f.digest.hash(f.state)
	if err != nil {
		return [32]byte{}, err
	}
	f.hashed.changes, f.hashed.sum, f.hashed.ok = f.changes, sum, true
	return sum, nil
}

// Snap is an immutable capture of a snapshot's contents: Capture is cheap
// and is called between applies; WriteTo and Bytes may run later, in any
// goroutine.
type Snap struct {
	Version     int         `json:"version"`
	Checkpoint  []byte      `json:"checkpoint,omitempty"`  // the certified state's encoding
	Certificate *Checkpoint `json:"certificate,omitempty"` // its t partials and commitments
	Entries     []Entry     `json:"entries"`               // every entry applied after it

	// state is Capture's certified state, which WriteTo encodes in
	// Checkpoint's place (Checkpoint is then nil): a decoded snapshot has
	// Checkpoint instead.
	state *frozen
}

// Capture captures the snapshot of the current state: O(1), the
// certified state is encoded only as the snapshot is written.
func (f *FSM) Capture() *Snap {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ck := &f.ck
	return &Snap{Version: snapshotVersion, state: ck.certState, Certificate: ck.cert,
		Entries: ck.entries[:len(ck.entries):len(ck.entries)]}
}

// ErrNotCertified is CaptureCertified's error while the state has a
// cluster key and no certified checkpoint.
var ErrNotCertified = errors.New("the cluster key's first checkpoint is not certified yet (its holders attest it within moments of the key generation): a snapshot now would not restore")

// CaptureCertified is Capture for a snapshot that must restore on a
// replica with the cluster key pinned (Raft's snapshots, backups): it
// fails with ErrNotCertified while the state has a key and no certified
// checkpoint, which RestoreSnapshot would refuse (see the top of this
// file). That lasts from the entry that makes the key until its holders
// have certified the checkpoint it took.
func (f *FSM) CaptureCertified() (*Snap, error) {
	f.mu.RLock()
	keyed := f.state.Epoch > 0
	f.mu.RUnlock()
	sn := f.Capture()
	if keyed && sn.Certificate == nil {
		return nil, ErrNotCertified
	}
	return sn, nil
}

// MarshalJSON encodes a captured snapshot as WriteTo does, so that
// encoding/json does not leave out its checkpoint (held unencoded); a
// decoded one as encoding/json always does.
func (s *Snap) MarshalJSON() ([]byte, error) {
	if s.state != nil {
		return s.Bytes()
	}
	type plain Snap
	return json.Marshal((*plain)(s))
}

// Bytes encodes the captured snapshot: WriteTo's bytes.
func (s *Snap) Bytes() ([]byte, error) {
	var b bytes.Buffer
	if _, err := s.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteTo writes the snapshot to w as it encodes it, the bytes
// encoding/json would give for the Snap with its checkpoint's encoding:
// the checkpoint's state is encoded a key at a time and base64-encoded
// straight into w, and the entries one at a time, so writing a snapshot
// never holds an encoding of the whole state in memory.
func (s *Snap) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 64<<10)}
	put := func(v any) {
		if cw.err == nil {
			var b []byte
			if b, cw.err = json.Marshal(v); cw.err == nil {
				cw.Write(b)
			}
		}
	}
	fmt.Fprintf(cw, `{"version":%d`, s.Version)
	switch {
	case s.state != nil:
		cw.Write([]byte(`,"checkpoint":"`))
		if err := s.state.writeBase64To(cw); err != nil && cw.err == nil {
			cw.err = err
		}
		cw.Write([]byte(`"`))
	case len(s.Checkpoint) > 0:
		cw.Write([]byte(`,"checkpoint":"`))
		enc := base64.NewEncoder(base64.StdEncoding, cw)
		enc.Write(s.Checkpoint)
		enc.Close()
		cw.Write([]byte(`"`))
	}
	if s.Certificate != nil {
		cw.Write([]byte(`,"certificate":`))
		put(s.Certificate)
	}
	cw.Write([]byte(`,"entries":`))
	if s.Entries == nil {
		cw.Write([]byte(`null`))
	} else {
		cw.Write([]byte(`[`))
		for i := range s.Entries {
			if i > 0 {
				cw.Write([]byte(`,`))
			}
			put(&s.Entries[i])
		}
		cw.Write([]byte(`]`))
	}
	cw.Write([]byte(`}`))
	if cw.err == nil {
		cw.err = cw.w.(*bufio.Writer).Flush()
	}
	return cw.n, cw.err
}

// countWriter counts what it writes and keeps the first error, after
// which it writes nothing.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// Snapshot encodes a snapshot: the last certified checkpoint with its
// certificate, and every entry applied since. Two replicas that applied
// the same log give the same bytes.
func (f *FSM) Snapshot() ([]byte, error) { return f.Capture().Bytes() }

// PinClusterKey sets the cluster public key that Restore requires of a
// snapshot while the state has none of its own (a node joining with the
// key its operator gave it, or restarting with the key it saw before).
func (f *FSM) PinClusterKey(pub []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ck.pin = bytes.Clone(pub)
}

// PinFounding sets the SHA-256 of the cluster's founding entry (the init
// command's signed payload, as Founding returns it: its signature fixes
// those bytes, so no re-encoding of the real entry changes the hash, and
// nobody but the founding admin can make another): from then on Apply
// refuses any other founding entry. A node keeps it beside the pinned
// cluster key (cluster/pin.go), so that after a restart without a Raft
// snapshot, when a leader sends its log from index 1, a history that
// starts from another founding entry (another admin, a key generation of
// the sender's own) is not applied: see the top of this file.
func (f *FSM) PinFounding(hash []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ck.foundPin = bytes.Clone(hash)
}

// Founding returns the SHA-256 of the founding entry this replica
// applied, or nil if it has not applied one itself (not initialized, or
// restored from a certified checkpoint past it).
func (f *FSM) Founding() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return bytes.Clone(f.ck.founding)
}

// Restored says how Restore trusted a snapshot.
type Restored struct {
	// TOFU is set when the replica had no cluster key to check the
	// snapshot against (no state of its own with a key, and none pinned):
	// it took the snapshot's key on trust. The caller should log it.
	TOFU       bool
	Checkpoint uint64 // index of the certified checkpoint restored, 0 without one
	Entries    int    // entries replayed after it
	Applied    uint64 // the applied index reached
}

// Restore replaces the state with a snapshot's, after verifying it; see
// RestoreSnapshot.
func (f *FSM) Restore(data []byte) error {
	_, err := f.RestoreSnapshot(data)
	return err
}

// RestoreSnapshot verifies a snapshot and, only if it verifies, replaces
// the state with the one it gives. On any error the state is as it was.
//
// The pin is the cluster public key X: the state's own Poly[0] if it has
// one, else the key given to PinClusterKey. Without a pin the snapshot is
// taken on trust (Restored.TOFU), its own key checked for consistency.
//
// A checkpoint is accepted when its encoding hashes to the certificate's
// hash and the certificate holds partials at k = len(Poly) distinct
// indexes, each verifying against the certificate's Poly, with Poly[0] =
// X. That Poly is the sender's choice, and that is safe: each DLEQ proof
// is a proof of knowledge of log_G of Poly's evaluation at its index, so
// whoever made k valid partials knows the discrete logs of k distinct
// evaluations of a degree k-1 polynomial in the exponent, hence of its
// constant term, X: the cluster secret, which no coalition of fewer than
// t holders knows. And honest holders sign only the hash of a state they
// applied themselves (R is hashed from the cluster, index and state hash,
// so nobody knows its discrete log, and the proof's context binds them).
//
// The entries are then replayed through Apply (each checked by its
// operator's or node's signature), at strictly increasing indexes after
// the checkpoint; they must re-certify the checkpoint, keep the cluster
// key X, and not take the replica back before its own applied index or
// certified checkpoint. Without a checkpoint every entry is replayed from
// an empty state, and with a pin the state reached must have no key (nor
// may the replica have one): see the top of this file. A replica that
// has applied entries takes only a snapshot whose state, replayed to the
// replica's applied index, hashes as its own: entries may be left out
// after the checkpoint, and without this a snapshot that ends at or after
// the replica's index could take back what it applied (a revoke). A
// replica that has none of the entries left out cannot tell. Errors name
// what failed and carry no key bytes.
func (f *FSM) RestoreSnapshot(data []byte) (*Restored, error) {
	return f.RestoreSnapshotFrom(bytes.NewReader(data))
}

// RestoreSnapshotFrom is RestoreSnapshot reading the snapshot from r once,
// front to back, without holding a whole copy of it (readSnap).
func (f *FSM) RestoreSnapshotFrom(in io.Reader) (*Restored, error) {
	sn, err := readSnap(in)
	if err != nil {
		return nil, err
	}
	if sn.Version == 1 {
		return nil, fmt.Errorf("snapshot: version 1, whose checkpoint is certified by the hash of its encoding; this node checks version %d's, certified by the state hash: restore it with the keyquorum that made it, or take a new one", snapshotVersion)
	}
	if sn.Version == 2 {
		return nil, fmt.Errorf("snapshot: version 2, whose checkpoint is certified by the state hash as version 2 computed it (SHAKE128); this node checks version %d's (AES-256-CTR): restore it with the keyquorum that made it, or take a new one", snapshotVersion)
	}
	if sn.Version != snapshotVersion {
		return nil, fmt.Errorf("snapshot: version %d, want %d", sn.Version, snapshotVersion)
	}
	f.mu.RLock()
	pin := bytes.Clone(f.state.PublicKey())
	if pin == nil {
		pin = bytes.Clone(f.ck.pin)
	}
	ownCluster, ownApplied, ownEpoch := f.state.ClusterID, f.state.Applied, f.state.Epoch
	var ownCert uint64
	if f.ck.cert != nil {
		ownCert = f.ck.cert.Index
	}
	f.mu.RUnlock()
	// A replica that has applied entries compares its own state with the
	// snapshot's at its applied index: a snapshot may leave out entries
	// after its checkpoint (a revoke, say), and one that ends at or after
	// this replica's index would otherwise take back what it applied.
	var ownHash [32]byte
	if ownApplied > 0 {
		if ownHash, err = f.Hash(); err != nil {
			return nil, fmt.Errorf("snapshot: this replica's state hash: %w", err)
		}
	}

	g := &FSM{checker: f.checker, CheckpointEvery: f.CheckpointEvery, CheckpointBytes: f.CheckpointBytes, TokenWrites: f.TokenWrites, state: emptyState()}
	key := pin
	if sn.read || sn.Checkpoint != nil || sn.Certificate != nil {
		st, d, err := verifyCheckpoint(f.checker, sn, pin)
		if err != nil {
			return nil, err
		}
		if key == nil {
			key = sn.Certificate.Poly[0]
		}
		fr, err := st.freeze()
		if err != nil {
			return nil, fmt.Errorf("snapshot: checkpoint %d: %w", sn.Certificate.Index, err)
		}
		g.state, g.digest = st, *d
		g.ck = checkpoints{last: sn.Certificate.Index, cert: sn.Certificate.clone(), certState: fr}
		g.takeCheckpoint(sn.Certificate.Index, bytes.Clone(sn.Certificate.Hash), fr)
	}
	// The state hash's sum, built from the checkpoint's state as it was
	// checked (or from the empty state), is kept up to date by the replay
	// below like any Apply.
	if err := g.digest.fold(g.state); err != nil {
		return nil, fmt.Errorf("snapshot: the state hash: %w", err)
	}
	f.mu.RLock()
	g.ck.foundPin = f.ck.foundPin // a replayed founding entry must be the pinned one
	f.mu.RUnlock()
	last := g.ck.last
	// differs is set when the snapshot's state at this replica's applied
	// index is not this replica's; it is reported after the checks below,
	// which name a more particular fault.
	var differs error
	compared := ownApplied == 0 || ownApplied < last
	compare := func() error {
		compared = true
		sum, err := g.Hash()
		if err != nil {
			return fmt.Errorf("snapshot: its state hash: %w", err)
		}
		if sum != ownHash {
			differs = fmt.Errorf("snapshot: its history differs from this replica's at this replica's applied index %d: it leaves out or changes entries this replica applied", ownApplied)
		}
		return nil
	}
	pre := newSigPrefetch(g.state, sn.Entries, sigPrefetchChunk)
	for i, e := range sn.Entries {
		pre.ahead(i)
		if e.Index <= last {
			return nil, fmt.Errorf("snapshot: entry %d has index %d, not after %d", i, e.Index, last)
		}
		if !compared && e.Index > ownApplied {
			if err := compare(); err != nil {
				return nil, err
			}
		}
		last = e.Index
		g.Apply(e.Index, time.Unix(0, e.Time), e.Data)
	}
	if !compared && g.state.Applied >= ownApplied {
		if err := compare(); err != nil {
			return nil, err
		}
	}
	st := g.state
	switch {
	// Anyone can sign a founding entry, and the key generation's deals can
	// be replayed after it (see the top of this file): with a pin, a
	// history that is not under a certificate may not bring a key, nor
	// take a replica's away.
	case sn.Certificate == nil && key != nil && (st.Epoch > 0 || ownEpoch > 0):
		return nil, errors.New("snapshot: it gives a state at a key epoch, or would take this replica's key away, without a certified checkpoint: a history without one is not tied to this cluster's key (wait until the first checkpoint is certified)")
	case sn.Certificate != nil && (st.Checkpoint == nil || st.Checkpoint.Index != sn.Certificate.Index || !bytes.Equal(st.Checkpoint.Hash, sn.Certificate.Hash)):
		return nil, fmt.Errorf("snapshot: its entries do not certify its checkpoint %d", sn.Certificate.Index)
	case st.Epoch != 0 && st.PublicKey() == nil:
		return nil, fmt.Errorf("snapshot: the state it gives is at key epoch %d but has no cluster key", st.Epoch)
	// A state from before the first key generation has no key to compare
	// (a node's own snapshot taken then, restored at a restart): nothing
	// can use a share with it, since holders answer only at an epoch.
	case key != nil && st.PublicKey() != nil && !bytes.Equal(st.PublicKey(), key):
		return nil, errors.New("snapshot: the state it gives has another cluster key than this replica's")
	case ownCluster != "" && st.ClusterID != ownCluster:
		return nil, fmt.Errorf("snapshot: of cluster %q, not %q", st.ClusterID, ownCluster)
	case st.Applied < ownApplied:
		return nil, fmt.Errorf("snapshot: applied up to %d, before this replica's %d", st.Applied, ownApplied)
	case g.ck.cert == nil && ownCert > 0 || g.ck.cert != nil && g.ck.cert.Index < ownCert:
		return nil, fmt.Errorf("snapshot: its checkpoint is older than this replica's certified checkpoint %d", ownCert)
	case differs != nil:
		return nil, differs
	}
	f.mu.Lock()
	g.ck.pin = f.ck.pin
	g.ck.foundPin = f.ck.foundPin
	f.state, f.ck, f.digest = g.state, g.ck, g.digest
	f.changes++
	f.mu.Unlock()
	r := &Restored{TOFU: pin == nil, Entries: len(sn.Entries), Applied: st.Applied}
	if g.ck.cert != nil {
		r.Checkpoint = g.ck.cert.Index
	}
	return r, nil
}

// snapPrefix is how WriteTo and Bytes start a snapshot with a checkpoint.
var snapPrefix = []byte(fmt.Sprintf(`{"version":%d,"checkpoint":"`, snapshotVersion))

// decodeSnap decodes a snapshot's encoding, refusing unknown fields and
// anything after it. The checkpoint's state, most of a snapshot, is a
// base64 string: when the snapshot starts as WriteTo writes it and the
// string has no escapes, the string is base64-decoded directly and only
// the rest goes through the JSON decoder, which then must not see a
// second checkpoint. Either way the result is what encoding/json gives.
func decodeSnap(data []byte) (*Snap, error) {
	var checkpoint []byte
	if rest, ok := bytes.CutPrefix(data, snapPrefix); ok {
		if end := bytes.IndexByte(rest, '"'); end >= 0 && isBase64(rest[:end]) {
			b64 := rest[:end]
			checkpoint = make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
			n, err := base64.StdEncoding.Decode(checkpoint, b64)
			if err != nil {
				return nil, fmt.Errorf("snapshot: its checkpoint: %w", err)
			}
			checkpoint = checkpoint[:n]
			data = append(fmt.Appendf(nil, `{"version":%d`, snapshotVersion), rest[end+1:]...)
		}
	}
	var sn Snap
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sn); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if dec.More() {
		return nil, errors.New("snapshot: data after the snapshot")
	}
	if checkpoint != nil {
		if sn.Checkpoint != nil {
			return nil, errors.New("snapshot: two checkpoints")
		}
		sn.Checkpoint = checkpoint
	}
	return &sn, nil
}

// verifyCheckpoint checks a snapshot's checkpoint against its certificate
// and the pin (nil: the certificate's own key, which must be the
// checkpoint state's), and returns the checkpoint's state and its state
// hash's sum.
func verifyCheckpoint(checker DealChecker, sn *decodedSnap, pin []byte) (*State, *stateDigest, error) {
	c := sn.Certificate
	if !sn.read && sn.Checkpoint == nil || c == nil {
		return nil, nil, errors.New("snapshot: a checkpoint needs both its state and its certificate")
	}
	st, d, sum := sn.st, sn.d, sn.sum
	if !sn.read {
		var err error
		if st, d, sum, err = hashCheckpointFrom(&jsonScan{buf: sn.Checkpoint, eof: true}); err != nil {
			return nil, nil, fmt.Errorf("snapshot: checkpoint %d: %w", c.Index, err)
		}
	}
	if !bytes.Equal(sum[:], c.Hash) {
		return nil, nil, fmt.Errorf("snapshot: checkpoint %d's state does not have its certified hash", c.Index)
	}
	if st.Applied != c.Index || !st.Initialized() {
		return nil, nil, fmt.Errorf("snapshot: checkpoint certified at %d holds a state at %d", c.Index, st.Applied)
	}
	if len(c.Poly) == 0 {
		return nil, nil, fmt.Errorf("snapshot: checkpoint %d's certificate has no commitments", c.Index)
	}
	want := pin
	if want == nil {
		want = st.PublicKey()
	}
	if !bytes.Equal(c.Poly[0], want) {
		return nil, nil, fmt.Errorf("snapshot: checkpoint %d is certified under another cluster key", c.Index)
	}
	cc, ok := checker.(CheckpointChecker)
	if !ok {
		return nil, nil, errors.New("snapshot: this replica cannot check checkpoint certificates")
	}
	msg := CheckpointMessage(st.ClusterID, c.Index, c.Hash)
	seen := map[uint32]bool{}
	for _, p := range c.Partials {
		if p == nil {
			return nil, nil, fmt.Errorf("snapshot: checkpoint %d: a missing partial", c.Index)
		}
		if seen[p.Index] {
			return nil, nil, fmt.Errorf("snapshot: checkpoint %d: two partials of share %d", c.Index, p.Index)
		}
		if err := cc.VerifyCheckpointPartial(c.Poly, msg, p); err != nil {
			return nil, nil, fmt.Errorf("snapshot: checkpoint %d: partial of share %d: %w", c.Index, p.Index, err)
		}
		seen[p.Index] = true
	}
	if len(seen) < len(c.Poly) {
		return nil, nil, fmt.Errorf("snapshot: checkpoint %d: %d partials, %d needed", c.Index, len(seen), len(c.Poly))
	}
	return st, d, nil
}

// fixMaps makes every map of a decoded state usable: a map encoded as
// null decodes to nil.
func fixMaps(s *State) {
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Operators == nil {
		s.Operators = map[string]*Operator{}
	}
	if s.Rules == nil {
		s.Rules = map[string]*Rule{}
	}
	if s.Keys == nil {
		s.Keys = map[string]*Key{}
	}
	if s.Nonces == nil {
		s.Nonces = map[string]int64{}
	}
	if s.Machines == nil {
		s.Machines = map[string]*Machine{}
	}
	if s.Approvals == nil {
		s.Approvals = map[string]*Approval{}
	}
	if s.Sessions == nil {
		s.Sessions = map[string]*Session{}
	}
	if s.Granted == nil {
		s.Granted = map[string]int64{}
	}
	if s.Submitted == nil {
		s.Submitted = map[string]*SubmittedKey{}
	}
}

// Recent returns up to max of the last entries this FSM applied, refused
// or not, newest first: the entries since the certified checkpoint, which
// the FSM keeps anyway. The caller owns the slice; Data is shared and must
// not be changed.
func (f *FSM) Recent(max int) []Entry {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.ck.entries
	out := make([]Entry, 0, min(max, len(e)))
	for i := len(e) - 1; i >= 0 && len(out) < max; i-- {
		out = append(out, e[i])
	}
	return out
}
