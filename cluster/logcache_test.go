package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// TestLogCacheSkipsLargeEntries: the log cache keeps the last small
// entries in memory and not a create_keys-sized one, which still reads
// back whole from the store.
func TestLogCacheSkipsLargeEntries(t *testing.T) {
	l, err := openLogStore(t.TempDir() + "/raft.db")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := newLogCache(l)
	small := []byte("a create_key entry")
	large := bytes.Repeat([]byte{7}, logCacheMaxEntry+1)
	entries := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: small},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: large},
		{Index: 1 + logCacheEntries, Term: 1, Type: raft.LogCommand, Data: small}, // the slot of 1
		{Index: 2 + logCacheEntries, Term: 1, Type: raft.LogCommand, Data: large}, // the slot of 2
	}
	if err := c.StoreLogs(entries[:2]); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLog(entries[2]); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLog(entries[3]); err != nil {
		t.Fatal(err)
	}
	var held int
	for _, e := range c.cache {
		if e != nil {
			held += len(e.Data)
		}
	}
	if held != len(small) {
		t.Errorf("the cache holds %d bytes of entries, want only the last small one's %d", held, len(small))
	}
	for _, want := range entries {
		var got raft.Log
		if err := c.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		if got.Index != want.Index || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("entry %d reads back as entry %d with %d bytes", want.Index, got.Index, len(got.Data))
		}
	}
}
