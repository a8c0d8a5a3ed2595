package fsm_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// certifiedSnapshotOf is a snapshot of n keys (plus a few the harness
// made) whose checkpoint is certified by real partials, followed by tail
// entries applied after the checkpoint, as a node's snapshot carries
// them. It applies entries straight to the FSM, without the harness's
// per-entry checks, which would cost O(n) each.
func certifiedSnapshotOf(b testing.TB, n, tail int) (snap []byte, pin []byte, c *cryptoChecker) {
	snap, pin, c, _ = certifiedSnapshotThen(b, n, tail, 0)
	return snap, pin, c
}

// certifiedSnapshotThen is certifiedSnapshotOf, and after entries of
// creates made after the snapshot, as Raft's log holds them past it.
func certifiedSnapshotThen(b testing.TB, n, tail, after int) (snap []byte, pin []byte, c *cryptoChecker, log []fsm.Entry) {
	h, c := certifiedHarness(b, n, tail)
	snap, pin = snapshotAndPin(b, h)
	for i := range after {
		h.at = h.at.Add(time.Millisecond)
		h.index++
		log = append(log, fsm.Entry{Index: h.index, Time: h.at.UnixNano(), Data: h.entry(admin, createKeyCmd(fmt.Sprintf("after/%05d", i)))})
	}
	return snap, pin, c, log
}

// snapshotAndPin is a snapshot of h's FSM and its cluster key.
func snapshotAndPin(b testing.TB, h *harness) (snap, pin []byte) {
	snap, err := h.f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	h.f.Read(func(s *fsm.State) { pin = s.PublicKey() })
	return snap, pin
}

// certifiedHarness is a harness whose FSM holds n keys (plus a few the
// harness made) in a checkpoint certified by real partials, and tail
// entries applied after it: what certifiedSnapshotOf snapshots.
func certifiedHarness(b testing.TB, n, tail int) (*harness, *cryptoChecker) {
	return certifiedHarnessWithNonces(b, n, tail, 0)
}

// certifiedHarnessWithNonces is certifiedHarness whose checkpoint also
// holds nonces nonces, as a cluster that applied that many signed
// commands in the last 2*MaxClockSkew remembers them.
func certifiedHarnessWithNonces(b testing.TB, n, tail, nonces int) (*harness, *cryptoChecker) {
	h, c := newCryptoHarness(b)
	h.f.CheckpointEvery = 1 << 40 // no checkpoint while loading
	threeHolders(h)
	h.must(admin, createKeyCmd("seed"))
	fsm.WriteStateForTest(h.f, func(s *fsm.State) {
		for i := range n {
			k := *s.Keys["seed"]
			k.Name = fmt.Sprintf("load/%07d", i)
			k.ID = fsm.KeyID(s.ClusterID, 1, i, "load", nil) // each key its own, as created
			s.Keys[k.Name] = &k
		}
		exp := h.at.Add(2 * fsm.MaxClockSkew).UnixNano()
		for i := range nonces {
			s.Nonces[fmt.Sprintf("operator-%02d/%032x", i%50, uint64(i)*0x9e3779b97f4a7c15)] = exp + int64(i)
		}
	})
	applyRaw := func(p principal, cmd *fsm.Command) {
		h.index++
		if res := h.f.Apply(h.index, h.at, h.entry(p, cmd)); res.Error != nil {
			b.Fatalf("%s: %v", cmd.Type, res.Error)
		}
	}
	h.f.CheckpointEvery = h.index + 1 // the next entry takes a checkpoint
	applyRaw(admin, createKeyCmd("db/checkpoint"))
	var pc *fsm.Checkpoint
	var holders []*fsm.Node
	var clusterID string
	var poly [][]byte
	h.f.Read(func(s *fsm.State) {
		pc, holders, clusterID, poly = s.Pending[len(s.Pending)-1], s.Holders(), s.ClusterID, s.Poly
	})
	shares := c.shares[polyKey(poly)]
	for _, nd := range holders[:2] {
		applyRaw(h.nodeNamed(nd.ID), attestCmd(pc.Index, pc.Hash, checkpointPartial(b, shares[nd.Index], clusterID, pc.Index, pc.Hash)))
	}
	h.f.CheckpointEvery = 1 << 40
	for i := range tail {
		h.at = h.at.Add(time.Millisecond)
		applyRaw(admin, createKeyCmd(fmt.Sprintf("tail/%05d", i)))
	}
	return h, c
}

// BenchmarkSnapWrite is what a node does to persist a Raft snapshot at
// 10,000 and 100,000 keys: encode the certified checkpoint's state a key
// at a time, base64-encode it into the snapshot's JSON, and write it
// (here to io.Discard; the file's own cost is the kernel's).
func BenchmarkSnapWrite(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			h, _ := certifiedHarness(b, n, 1000)
			sn := h.f.Capture()
			size, err := sn.WriteTo(io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := sn.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system: on a
// machine shared with other work it says more than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRestore is what a restarting node's state machine does with
// its snapshot before it serves: verify and decode the certified
// checkpoint, replay the entries after it, and the first Hash (status).
func BenchmarkRestore(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			snap, pin, c := certifiedSnapshotOf(b, n, 1000)
			timeRestores(b, snap, pin, c)
		})
	}
}

// timeRestores times what a restarting node's state machine does with
// snap: restore it in a new FSM pinned to pin, and the first Hash.
func timeRestores(b *testing.B, snap, pin []byte, c *cryptoChecker) {
	b.SetBytes(int64(len(snap)))
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		fsm.ForgetSignaturesForTest() // as in a process that restarts
		f := fsm.New(c)               // checkpoints every DefaultCheckpointEvery entries, as a node's
		f.PinClusterKey(pin)
		if _, err := f.RestoreSnapshot(snap); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Hash(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRestoreNonces is BenchmarkRestore's restore of 10,000 keys
// with the nonces a cluster remembers after 2*MaxClockSkew (10 minutes)
// of signed commands: none, or 100,000 (about 170 a second).
func BenchmarkRestoreNonces(b *testing.B) {
	for _, nonces := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("nonces=%d", nonces), func(b *testing.B) {
			h, c := certifiedHarnessWithNonces(b, 10_000, 0, nonces)
			snap, pin := snapshotAndPin(b, h)
			timeRestores(b, snap, pin, c)
		})
	}
}

// BenchmarkApplyAfterRestore is what a restarted node's state machine
// does once its snapshot is restored and before it serves: apply the
// entries its Raft log holds after the snapshot (1,000 creates here), as
// Raft hands them over once the leader says they are committed: one at a
// time (batch=1), or in batches of Raft's MaxAppendEntries (64) with
// their signatures verified ahead (FSM.NewBatch).
func BenchmarkApplyAfterRestore(b *testing.B) {
	for _, bc := range []struct{ n, batch int }{{10_000, 1}, {10_000, 64}, {100_000, 1}, {100_000, 64}} {
		n := bc.n
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d/batch=%d", n, bc.batch), func(b *testing.B) {
			snap, pin, c, log := certifiedSnapshotThen(b, n, 0, 1000)
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				fsm.ForgetSignaturesForTest() // as in a process that restarts
				f := fsm.New(c)
				f.PinClusterKey(pin)
				if _, err := f.RestoreSnapshot(snap); err != nil {
					b.Fatal(err)
				}
				cpu0 := cpuTime()
				b.StartTimer()
				for lo := 0; lo < len(log); lo += bc.batch {
					batch := log[lo:min(lo+bc.batch, len(log))]
					ahead := f.NewBatch(batch)
					for i, e := range batch {
						ahead.Ahead(i)
						if res := f.Apply(e.Index, time.Unix(0, e.Time), e.Data); res.Error != nil {
							b.Fatal(res.Error)
						}
					}
				}
				cpu += cpuTime() - cpu0
			}
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// snapDecodeSeeds are snapshots the fast path of the decoder takes and
// near misses it must hand to encoding/json or refuse as it would.
var snapDecodeSeeds = []string{
	`{"version":3,"checkpoint":"e30=","certificate":{"index":1,"hash":"","epoch":1,"poly":[""],"partials":[null]},"entries":null}`,
	`{"version":3,"checkpoint":"e30=","entries":[]}`,
	`{"version":3,"checkpoint":"","entries":[]}`,
	`{"version":3,"checkpoint":"e3\/0=","entries":[]}`,                   // an escape: encoding/json decodes it
	`{"version":3,"checkpoint":"e3` + "\n" + `0=","entries":[]}`,         // a raw newline: refused
	`{"version":3,"checkpoint":"e30=","checkpoint":"e30=","entries":[]}`, // twice
	`{"version":3,"checkpoint":"e30","entries":[]}`,                      // bad padding
	`{"version":3,"checkpoint":"e30=","entries":[]} {}`,                  // data after
	`{"version":3,"checkpoint":"e30=","bogus":1,"entries":[]}`,           // unknown field
	`{"version":3,"checkpoint":"e31=","entries":[]}`,                     // non-canonical last bits
	`{"version":3,"checkpoint":"e30="`,
	`{"version":3,"entries":[]}`,
	`{"version":1,"checkpoint":"e30=","entries":[]}`, // the old version: decoded, then refused by Restore
}

// checkSnapDecode: the decoder gives what encoding/json gives (with
// unknown fields refused, nothing after), and refuses what it refuses.
func checkSnapDecode(t *testing.T, data []byte) {
	got, err := fsm.DecodeSnapForTest(data)
	var want fsm.Snap
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	werr := dec.Decode(&want)
	if werr == nil && dec.More() {
		werr = errors.New("data after")
	}
	if (err == nil) != (werr == nil) {
		// encoding/json takes the last of two checkpoints; the decoder
		// refuses them, which is stricter and safe.
		if err != nil && werr == nil && bytes.Count(data, []byte(`"checkpoint"`)) > 1 {
			return
		}
		t.Fatalf("decoder: %v; encoding/json: %v", err, werr)
	}
	if err != nil {
		return
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(&want)
	if !bytes.Equal(g, w) || (got.Checkpoint == nil) != (want.Checkpoint == nil) {
		t.Fatalf("decoder gives %s, encoding/json %s", g, w)
	}
}

func TestSnapDecodeIsEncodingJSON(t *testing.T) {
	for _, s := range snapDecodeSeeds {
		t.Run("", func(t *testing.T) { checkSnapDecode(t, []byte(s)) })
	}
}

// FuzzSnapDecode: on any input the snapshot decoder agrees with
// encoding/json.
func FuzzSnapDecode(f *testing.F) {
	for _, s := range snapDecodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkSnapDecode)
}

// checkReadSnap: a snapshot read as a stream (RestoreSnapshotFrom) is
// accepted only if encoding/json accepts it too, and gives what it gives:
// the same snapshot and the same checkpoint state; and the state hash it
// computed from the keys' bytes in the snapshot is the state's own when
// those bytes are canonical (json.Marshal's, as every replica writes
// them). It may refuse more: a key or the keys given twice, a checkpoint
// that is not plain base64.
func checkReadSnap(t *testing.T, data []byte) {
	got, state, sum, err := fsm.ReadSnapForTest(data)
	if err != nil {
		return
	}
	var want fsm.Snap
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil || dec.More() {
		t.Fatalf("read as a stream, refused by encoding/json (%v)", err)
	}
	if state == nil {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(&want)
		if !bytes.Equal(g, w) {
			t.Fatalf("read as a stream %s, encoding/json %s", g, w)
		}
		return
	}
	if want.Checkpoint == nil {
		t.Fatal("a checkpoint read as a stream, none for encoding/json")
	}
	st, wsum, err := fsm.CheckpointHash(want.Checkpoint)
	if err != nil {
		t.Fatalf("the checkpoint read as a stream, refused read whole: %v", err)
	}
	if w, _ := json.Marshal(st); !bytes.Equal(state, w) {
		t.Fatalf("checkpoint state read as a stream %s, read whole %s", state, w)
	}
	if sum != wsum {
		t.Fatal("the state hash read as a stream differs from the one read whole")
	}
	if bytes.Equal(state, want.Checkpoint) { // canonical: the state hash is the state's
		g := fsm.New(nil)
		if err := fsm.LoadStateForTest(g, want.Checkpoint); err != nil {
			t.Fatal(err)
		}
		if h, err := fsm.HashFromScratchForTest(g); err != nil || h != sum {
			t.Fatalf("a canonical checkpoint read as a stream hashes as %x, its state as %x (%v)", sum, h, err)
		}
	}
	got.Checkpoint = want.Checkpoint
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(&want)
	if !bytes.Equal(g, w) {
		t.Fatalf("read as a stream %s, encoding/json %s", g, w)
	}
}

// FuzzReadSnap: on any input, a snapshot read as a stream agrees with
// encoding/json or is refused (checkReadSnap).
func FuzzReadSnap(f *testing.F) {
	for _, s := range snapDecodeSeeds {
		f.Add([]byte(s))
	}
	snap, _, _ := certifiedSnapshotOf(f, 3, 2)
	f.Add(snap)
	for _, s := range []string{
		`{"version":3,"checkpoint":"` + base64.StdEncoding.EncodeToString([]byte(`{"applied":1,"keys":{"a":{"name":"a","type":"secret"},"a":{"name":"b"}}}`)) + `","entries":[]}`,
		`{"version":3,"checkpoint":"` + base64.StdEncoding.EncodeToString([]byte(`{"applied":1,"Keys":{},"keys":{"a":{"name":"a"}}}`)) + `","entries":[]}`,
		`{"version":3,"checkpoint":"` + base64.StdEncoding.EncodeToString([]byte(`{"applied":1,"keys":{"a":{"name" : "a"}}} `)) + `","entries":[]}`,
		`{"version":3,"checkpoint":"` + base64.StdEncoding.EncodeToString([]byte(`{"keys":null,"nonces":{"x":1}}`)) + `","entries":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkReadSnap)
}

// TestRestoreBuildsTheHashOfManyKeys: a restore builds the state hash's
// sum across workers (at this size, more than one) from the checkpoint,
// and the replay keeps it: Hash equals the hash computed one entry at a
// time, and the one a later rebuild gives.
func TestRestoreBuildsTheHashOfManyKeys(t *testing.T) {
	snap, pin, c := certifiedSnapshotOf(t, 5000, 20)
	f := fsm.New(c)
	f.PinClusterKey(pin)
	if _, err := f.RestoreSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	got, err := f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := fsm.HashFromScratchForTest(f); got != want {
		t.Errorf("restored hash %x, computed one entry at a time %x", got, want)
	}
	g := fsm.New(c)
	g.PinClusterKey(pin)
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	fsm.WriteStateForTest(g, func(*fsm.State) {}) // forgets the sum: the next Hash rebuilds it
	if h, _ := g.Hash(); h != got {
		t.Errorf("a rebuilt hash %x differs from the restored one %x", h, got)
	}
}

// BenchmarkLiveHeap reports the heap a replica keeps per key (live-B/key:
// objects live after a collection, over the keys): restored from a
// snapshot of n keys, then after 2,048 more entries, which take two
// checkpoints that stay pending (no holder attests them here), as they
// are while holders attest.
func BenchmarkLiveHeap(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			snap, pin, c := certifiedSnapshotOf(b, n, 10)
			h := newHarness(b)
			h.nonces = 1 << 40 // none of the snapshot's
			var restored, checkpointed float64
			for range b.N {
				live0 := liveHeap()
				f := fsm.New(c)
				f.PinClusterKey(pin)
				r, err := f.RestoreSnapshot(snap)
				if err != nil {
					b.Fatal(err)
				}
				restored = float64(liveHeap()-live0) / float64(n)
				h.f, h.index = f, r.Applied
				for i := range 2048 {
					h.at = h.at.Add(time.Millisecond)
					if res := f.Apply(h.index+1, h.at, h.entry(admin, createKeyCmd(fmt.Sprintf("more/%05d", i)))); res.Error != nil {
						b.Fatal(res.Error)
					}
					h.index++
				}
				checkpointed = float64(liveHeap()-live0) / float64(n)
				runtime.KeepAlive(f)
			}
			b.ReportMetric(restored, "restored-B/key")
			b.ReportMetric(checkpointed, "checkpointed-B/key")
		})
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCheckpoint times an Apply that takes a checkpoint (every entry
// does here) at 10,000 and 100,000 keys: the state hash since the last
// one, the small rest of the state encoded and a clone of the keys, so
// its cost does not grow with the keys (it used to encode them all).
func BenchmarkCheckpoint(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			h := newHarness(b)
			h.f.CheckpointEvery = 1 << 40
			threeHolders(h)
			h.must(admin, createKeyCmd("seed"))
			fsm.WriteStateForTest(h.f, func(s *fsm.State) {
				for i := range n {
					k := *s.Keys["seed"]
					k.Name = fmt.Sprintf("load/%07d", i)
					s.Keys[k.Name] = &k
				}
			})
			if _, err := h.f.Hash(); err != nil { // the sum, built once
				b.Fatal(err)
			}
			h.f.CheckpointEvery = 1
			entries := make([][]byte, b.N)
			for i := range entries {
				entries[i] = h.entry(admin, createKeyCmd(fmt.Sprintf("new/%07d", i)))
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				h.index++
				if res := h.f.Apply(h.index, h.at, entries[i]); res.Error != nil {
					b.Fatal(res.Error)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			var pending int
			h.f.Read(func(s *fsm.State) { pending = len(s.Pending) })
			if pending == 0 {
				b.Fatal("no checkpoint was taken")
			}
		})
	}
}

// BenchmarkCheckpointNonces times an Apply that takes a checkpoint (every
// entry does here) with 10,000 and 100,000 nonces remembered (a sustained
// 1,000 signed writes a second remembers 600,000): its cost does not
// grow with the nonces (it used to encode them all). live-B/nonce is the
// heap the state keeps per nonce remembered, its map, index and hash's
// entry, measured after the first checkpoint.
func BenchmarkCheckpointNonces(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		if testing.Short() && n > 10_000 {
			continue
		}
		b.Run(fmt.Sprintf("nonces=%d", n), func(b *testing.B) {
			h := newHarness(b)
			h.f.CheckpointEvery = 1 << 40
			threeHolders(h)
			h.must(admin, createKeyCmd("seed"))
			live0 := liveHeap()
			fsm.WriteStateForTest(h.f, func(s *fsm.State) {
				exp := h.at.Add(2 * fsm.MaxClockSkew).UnixNano()
				for i := range n {
					s.Nonces[fmt.Sprintf("operator-%02d/%032x", i%50, uint64(i)*0x9e3779b97f4a7c15)] = exp + int64(i)
				}
			})
			if _, err := h.f.Hash(); err != nil { // the sum, built once
				b.Fatal(err)
			}
			h.f.CheckpointEvery = 1
			entries := make([][]byte, b.N+1)
			for i := range entries {
				entries[i] = h.entry(admin, createKeyCmd(fmt.Sprintf("new/%07d", i)))
			}
			h.index++
			if res := h.f.Apply(h.index, h.at, entries[b.N]); res.Error != nil {
				b.Fatal(res.Error)
			}
			live := float64(liveHeap()-live0) / float64(n)
			cpu0 := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.index++
				if res := h.f.Apply(h.index, h.at, entries[i]); res.Error != nil {
					b.Fatal(res.Error)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(live, "live-B/nonce")
			var pending int
			h.f.Read(func(s *fsm.State) { pending = len(s.Pending) })
			if pending == 0 {
				b.Fatal("no checkpoint was taken")
			}
		})
	}
}

// BenchmarkLiveHeapCreated reports the heap a replica keeps per key
// after a bulk load (loaded-B/key): n keys created from a ready state in
// create_keys entries of 1,000, as keybench -scale loads them, and the
// state hash computed once (status). Of that, entries-B/key are the
// entries' bytes, which the FSM keeps (for its snapshots) until a
// checkpoint after them is certified: here none is.
func BenchmarkLiveHeapCreated(b *testing.B) {
	const n = 30_000
	var loaded, held float64
	for range b.N {
		live0 := liveHeap()
		h := newHarness(b)
		ready(h)
		entries := make([][]byte, 0, n/1000)
		for i := 0; i < n; i += 1000 {
			names := make([]string, 1000)
			for j := range names {
				names[j] = fmt.Sprintf("scale/%08d", i+j)
			}
			entries = append(entries, h.entry(admin, createKeysCmd(names...)))
		}
		held = 0
		for _, e := range entries {
			held += float64(len(e)) / n
			h.index++
			h.at = h.at.Add(time.Millisecond)
			if res := h.f.Apply(h.index, h.at, e); res.Error != nil {
				b.Fatal(res.Error)
			}
		}
		entries = nil
		if _, err := h.f.Hash(); err != nil {
			b.Fatal(err)
		}
		loaded = float64(liveHeap()-live0) / n
		runtime.KeepAlive(h)
	}
	b.ReportMetric(loaded, "loaded-B/key")
	b.ReportMetric(held, "entries-B/key")
}
