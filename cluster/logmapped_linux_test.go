package cluster

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
)

// TestReleaseMappedLog: after releaseMapped, the Raft log's pages that
// bolt's map had brought in are no longer part of the process's resident
// memory, and every entry still reads back whole.
func TestReleaseMappedLog(t *testing.T) {
	path := t.TempDir() + "/raft.db"
	l, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const entries, size = 32, 256 << 10
	data := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	for i := 1; i <= entries; i++ {
		if err := l.StoreLog(&raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data(i)}); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		for i := 1; i <= entries; i++ {
			var e raft.Log
			if err := l.GetLog(uint64(i), &e); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.Data, data(i)) {
				t.Fatalf("entry %d reads back changed", i)
			}
		}
	}
	readAll()
	if kb := mappedKB(t, path); kb < entries*size/1024/2 {
		t.Fatalf("%d KiB of the log mapped after reading it: the test reads nothing through the map", kb)
	}
	if err := l.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	if kb := mappedKB(t, path); kb > 64 {
		t.Errorf("%d KiB of the log still resident after releaseMapped", kb)
	}
	readAll()
}

// mappedKB is the resident size of this process's mappings of the file,
// from /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := strconv.FormatUint(st.Sys().(*syscall.Stat_t).Ino, 10)
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	kb, in := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = f[4] == ino
		case in && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			kb += n
		}
	}
	return kb
}

// TestLogReleasesMappedPagesAsItGrows: a log written and read back in
// large entries, as a bulk load's, with no snapshot to release its pages,
// does not stay resident: the store releases them every
// releaseMappedEvery bytes it stores.
func TestLogReleasesMappedPagesAsItGrows(t *testing.T) {
	path := t.TempDir() + "/raft.db"
	l, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const size = 256 << 10
	entries := 6 * releaseMappedEvery / size
	data := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	for i := 1; i <= entries; i++ {
		if err := l.StoreLog(&raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data(i)}); err != nil {
			t.Fatal(err)
		}
		var e raft.Log // read back through bolt's map, as Raft does for entries its cache skips
		if err := l.GetLog(uint64(i), &e); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Data, data(i)) {
			t.Fatalf("entry %d reads back changed", i)
		}
	}
	if kb, most := mappedKB(t, path), 2*releaseMappedEvery/1024; kb > most {
		t.Errorf("%d KiB of a %d KiB log resident, more than %d KiB", kb, entries*size/1024, most)
	}
}

// TestLogReleasesMappedPagesAfterCompaction: Raft compacts its log after
// a snapshot's Persist released the log's mapped pages, and bolt's delete
// of a bulk load's large entries maps most of them again (38 of 50 MiB
// measured); the store releases them after the delete, so a compacted log
// does not stay resident until the next release.
func TestLogReleasesMappedPagesAfterCompaction(t *testing.T) {
	path := t.TempDir() + "/raft.db"
	l, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const size, entries, kept = 256 << 10, 160, 8
	data := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	for i := 1; i <= entries; i++ {
		if err := l.StoreLog(&raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.releaseMapped(); err != nil { // as a snapshot's Persist does
		t.Fatal(err)
	}
	if err := l.DeleteRange(1, entries-kept); err != nil { // as Raft's compaction does next
		t.Fatal(err)
	}
	if kb, most := mappedKB(t, path), releaseMappedEvery/1024; kb > most {
		t.Errorf("%d KiB of the log resident after compacting a %d KiB log to %d KiB, more than %d KiB",
			kb, entries*size/1024, kept*size/1024, most)
	}
	for i := entries - kept + 1; i <= entries; i++ {
		var e raft.Log
		if err := l.GetLog(uint64(i), &e); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Data, data(i)) {
			t.Fatalf("entry %d reads back changed", i)
		}
	}
}

// TestLogReleasesMappedPagesOfSmallEntries: small entries appended one
// at a time to a log with free pages (compacted, as Raft's log is after a
// snapshot) do not stay mapped until releaseMappedEvery bytes of them
// were stored: the store counts each append as at least mappedPerStore.
func TestLogReleasesMappedPagesOfSmallEntries(t *testing.T) {
	path := t.TempDir() + "/raft.db"
	l, err := openLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	i := uint64(1)
	store := func(size int) {
		t.Helper()
		if err := l.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 160 {
		store(256 << 10)
	}
	if err := l.DeleteRange(1, 150); err != nil { // frees most of the file's pages
		t.Fatal(err)
	}
	const size, entries = 1500, 2500 // 3.6 MiB: under releaseMappedEvery
	for range entries {
		store(size)
	}
	if kb, most := mappedKB(t, path), releaseMappedEvery/1024/2; kb > most {
		t.Errorf("%d KiB of the log resident after %d KiB of small entries, more than %d KiB", kb, entries*size/1024, most)
	}
}
