package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestLogStoreCompactErasesDeletedEntries: an entry deleted from the log
// is still in bolt's file (the reason compact exists: if this ever stops
// holding, compact is no longer needed); after compact it is not, and the
// entries kept and the stable store's keys read back the same.
func TestLogStoreCompactErasesDeletedEntries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raft.db")
	l, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	secret := randomBytes(t, 256)
	for i := uint64(1); i <= 200; i++ {
		data := randomBytes(t, 300)
		if i == 17 {
			copy(data[20:], secret)
		}
		if err := l.StoreLog(&raft.Log{Index: i, Term: 1, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var kept raft.Log
	if err := l.GetLog(150, &kept); err != nil {
		t.Fatal(err)
	}
	if err := l.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Contains(b, secret) {
		t.Log("bolt no longer keeps a deleted entry's bytes in its file")
	}
	if err := l.compact(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); bytes.Contains(b, secret) {
		t.Fatal("the compacted file still holds a deleted entry")
	}
	if _, err := os.Stat(path + ".old"); !os.IsNotExist(err) {
		t.Fatalf("the old file is still there: %v", err)
	}
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	var got raft.Log
	if err := l.GetLog(150, &got); err != nil || !bytes.Equal(got.Data, kept.Data) || first != 101 || last != 200 {
		t.Fatalf("after compact: entries %d..%d, entry 150 %v (%v)", first, last, bytes.Equal(got.Data, kept.Data), err)
	}
	if term, err := l.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("after compact: CurrentTerm %d, %v", term, err)
	}
	if err := l.StoreLog(&raft.Log{Index: 201, Term: 2, Data: []byte("next")}); err != nil {
		t.Fatal(err)
	}
}

// TestLogStoreRecoversInterruptedCompact: whatever step a crash stopped
// compact at, the store opens whole, and no copy of the old file is left.
func TestLogStoreRecoversInterruptedCompact(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"copied", "linked", "renamed"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "raft.db")
			l, err := openLogStore(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.StoreLog(&raft.Log{Index: 1, Term: 1, Data: []byte("one")}); err != nil {
				t.Fatal(err)
			}
			l.Close()
			if err := copyLive(path, path+".compact"); err != nil {
				t.Fatal(err)
			}
			if step != "copied" {
				if err := os.Link(path, path+".old"); err != nil {
					t.Fatal(err)
				}
			}
			if step == "renamed" {
				if err := os.Rename(path+".compact", path); err != nil {
					t.Fatal(err)
				}
			}
			l, err = openLogStore(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var got raft.Log
			if err := l.GetLog(1, &got); err != nil || string(got.Data) != "one" {
				t.Fatalf("entry 1 after recovery: %q, %v", got.Data, err)
			}
			for _, left := range []string{".old", ".compact"} {
				if _, err := os.Stat(path + left); !os.IsNotExist(err) {
					t.Errorf("%s left after recovery: %v", left, err)
				}
			}
		})
	}
}
