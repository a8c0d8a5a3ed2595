package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// logStore is the node's Raft log and stable store: raft-boltdb's, behind
// a lock that lets the node rewrite its file while Raft runs.
//
// Why rewrite it: bolt frees the pages of deleted entries and reuses them
// for later writes, but never overwrites them until then, so an entry that
// Raft compacted away stays readable in raft.db, possibly for ever (a
// measured case: an entry deleted from a log of 500, with nothing written
// after, is still in the file; one deleted from 5000 entries is still there
// after 100 more). Bolt also writes a page from a reused buffer whose end
// is not cleared, so bytes of one page can be copied into another. compact
// copies every bucket's live keys and values, and nothing else, into a
// new file, which replaces the old one; the old one is overwritten with
// zeros before it is removed.
type logStore struct {
	path string

	mu sync.RWMutex
	s  *raftboltdb.BoltStore // nil once closed, or if reopening failed

	// unreleased counts the bytes of entries stored since the log's
	// mapped pages were last released (releaseMapped).
	unreleased atomic.Uint64
}

// releaseMappedEvery is how many bytes of entries the store takes before
// it releases the log's mapped pages (releaseMapped) without waiting for
// a snapshot: Raft snapshots after 8,192 entries by default, and a bulk
// load of a million keys is a thousand create_keys entries, so a node
// that nothing wrote to after such a load kept its whole log resident
// (125 B a key at 100,000 keys). A release costs about 2 ms of the
// store's lock.
const releaseMappedEvery = 4 << 20

// mappedPerStore is what the store counts for each StoreLogs besides its
// entries' bytes: bolt reads the leaf it appends to through its map, at
// a page its free list chose anywhere in the file, and the kernel maps up
// to 64 KiB of the cached file around each page it faults in, so small
// entries appended to a log with free pages (any log Raft has compacted)
// mapped about 1.7 times their bytes, 7-10 MiB before a release
// (TestLogReleasesMappedPagesOfSmallEntries). A release with little
// mapped costs about 0.1 ms.
const mappedPerStore = 64 << 10

var errLogStoreClosed = errors.New("raft log store is closed")

// openLogStore opens the store at path, first finishing or undoing a
// rewrite that a crash interrupted.
func openLogStore(path string) (*logStore, error) {
	if err := recoverCompaction(path); err != nil {
		return nil, err
	}
	s, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		return nil, err
	}
	return &logStore{path: path, s: s}, nil
}

// recoverCompaction removes what a crashed compact left. path is always a
// whole store, the old or the new: compact links the old file to
// path.old before it renames the new one over path.
func recoverCompaction(path string) error {
	if err := shred(path + ".compact"); err != nil {
		return err
	}
	old := path + ".old"
	a, errA := os.Stat(path)
	b, errB := os.Stat(old)
	switch {
	case errB != nil:
		return nil
	case errA == nil && os.SameFile(a, b):
		return os.Remove(old) // the crash came before the rename: path is the old store
	}
	return shred(old)
}

func (l *logStore) with(fn func(s *raftboltdb.BoltStore) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.s == nil {
		return errLogStoreClosed
	}
	return fn(l.s)
}

func (l *logStore) FirstIndex() (i uint64, err error) {
	err = l.with(func(s *raftboltdb.BoltStore) (err error) { i, err = s.FirstIndex(); return })
	return
}

func (l *logStore) LastIndex() (i uint64, err error) {
	err = l.with(func(s *raftboltdb.BoltStore) (err error) { i, err = s.LastIndex(); return })
	return
}

func (l *logStore) GetLog(index uint64, log *raft.Log) error {
	return l.with(func(s *raftboltdb.BoltStore) error { return s.GetLog(index, log) })
}

func (l *logStore) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

func (l *logStore) StoreLogs(logs []*raft.Log) error {
	if err := l.with(func(s *raftboltdb.BoltStore) error { return s.StoreLogs(logs) }); err != nil {
		return err
	}
	n := mappedPerStore
	for _, e := range logs {
		n += len(e.Data)
	}
	if l.unreleased.Add(uint64(n)) >= releaseMappedEvery {
		// A failure leaves the pages resident until the next snapshot's
		// release, which logs it.
		_ = l.releaseMapped()
	}
	return nil
}

// DeleteRange deletes the entries from min to max, then releases the
// log's mapped pages: Raft compacts its log after a snapshot's Persist
// released them, and bolt's delete of large entries maps most of their
// pages again (TestLogReleasesMappedPagesAfterCompaction).
func (l *logStore) DeleteRange(min, max uint64) error {
	if err := l.with(func(s *raftboltdb.BoltStore) error { return s.DeleteRange(min, max) }); err != nil {
		return err
	}
	// A failure leaves the pages resident until the next release.
	_ = l.releaseMapped()
	return nil
}

func (l *logStore) Set(k, v []byte) error {
	return l.with(func(s *raftboltdb.BoltStore) error { return s.Set(k, v) })
}

func (l *logStore) Get(k []byte) (v []byte, err error) {
	err = l.with(func(s *raftboltdb.BoltStore) (err error) { v, err = s.Get(k); return })
	return
}

func (l *logStore) SetUint64(k []byte, v uint64) error {
	return l.with(func(s *raftboltdb.BoltStore) error { return s.SetUint64(k, v) })
}

func (l *logStore) GetUint64(k []byte) (v uint64, err error) {
	err = l.with(func(s *raftboltdb.BoltStore) (err error) { v, err = s.GetUint64(k); return })
	return
}

// Close closes the store; later calls fail.
func (l *logStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	err := l.s.Close()
	l.s = nil
	return err
}

// compact rewrites the store's file with only its live keys and values,
// and overwrites the old file with zeros before removing it. Raft's calls
// wait meanwhile. A crash at any point leaves a whole store at path (see
// recoverCompaction).
func (l *logStore) compact() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return errLogStoreClosed
	}
	if err := l.s.Close(); err != nil {
		return fmt.Errorf("closing the raft log to compact it: %w", err)
	}
	l.s = nil
	tmp, old := l.path+".compact", l.path+".old"
	err := copyLive(l.path, tmp)
	if err == nil {
		err = swapIn(l.path, tmp, old)
	}
	if err != nil {
		shred(tmp)
	}
	s, oerr := raftboltdb.NewBoltStore(l.path)
	if oerr != nil {
		return fmt.Errorf("reopening the raft log after compacting it: %w", errors.Join(err, oerr))
	}
	l.s = s
	if err != nil {
		return fmt.Errorf("compacting the raft log: %w", err)
	}
	return recoverCompaction(l.path)
}

// swapIn makes tmp the file at path, keeping the old file as old (a hard
// link, so path names a whole store at every moment).
func swapIn(path, tmp, old string) error {
	if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(path, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(old)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// copyLive copies every bucket's keys and values of the bolt file src into
// a new bolt file dst, and syncs it.
func copyLive(src, dst string) error {
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	in, err := bbolt.Open(src, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := bbolt.Open(dst, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = in.View(func(itx *bbolt.Tx) error {
		return out.Update(func(otx *bbolt.Tx) error {
			return itx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				ob, err := otx.CreateBucket(name)
				if err != nil {
					return err
				}
				ob.FillPercent = 1 // keys are copied in order
				return b.ForEach(func(k, v []byte) error {
					if v == nil {
						return fmt.Errorf("bucket %q holds a bucket: not a raft-boltdb file", name)
					}
					return ob.Put(k, v)
				})
			})
		})
	})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// shred overwrites a file with zeros, syncs it and removes it; a missing
// file is no error. On a copy-on-write filesystem or a flash disk the
// zeros may be written elsewhere than the old bytes: see the README.
func shred(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil {
		_, err = io.CopyN(f, zeroReader{}, st.Size())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("overwriting %s: %w", path, err)
	}
	return os.Remove(path)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
