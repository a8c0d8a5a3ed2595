package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/fsm"
)

// encodings returns the forms b takes in bytes that went through up to
// depth layers of base64 (JSON's encoding of []byte, nested: a command in
// a Signed's payload, a Signed in a snapshot's entry): b itself, then for
// each layer the base64 of each form of the layer below at each of the
// three alignments it may have in the encoded whole.
func encodings(b []byte, depth int) [][]byte {
	forms, level := [][]byte{b}, [][]byte{b}
	for range depth {
		var next [][]byte
		for _, x := range level {
			for off := range 3 {
				y := x[off:]
				y = y[:len(y)/3*3]
				next = append(next, []byte(base64.StdEncoding.EncodeToString(y)))
			}
		}
		forms, level = append(forms, next...), next
	}
	return forms
}

// filesCarrying lists the files under dir that hold any of the forms.
func filesCarrying(t *testing.T, dir string, forms [][]byte) []string {
	t.Helper()
	var out []string
	// Raft writes snapshots as NAME.tmp and renames them: a file that is
	// gone when the walk reaches it was renamed or removed meanwhile.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(b, f) }) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDestroyErasesFromEveryDisk: a secret's R and sealed ciphertext are
// on every node's disk once it is created (the scan finds them, so it
// looks for the right bytes); after key destroy, each node reports the
// erasure, and then no file in any node's data directory holds them, in
// any encoding. The cluster goes on: another secret still releases
// through every node, and a node restarted on its rewritten log and
// snapshot comes back to the same state.
func TestDestroyErasesFromEveryDisk(t *testing.T) {
	t.Parallel()
	// Raft snapshots often, so older snapshots hold the ciphertext too,
	// and keeps its default trailing log behind each.
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	ct := c.seal("erase/doomed", randomBytes(t, 4096))
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeCreateKey, CreateKey: &fsm.CreateKey{
		Name: "erase/doomed", Type: fsm.KeyTypeSecret, R: ct.R, Sealed: ct.Sealed}}); err != nil {
		t.Fatal(err)
	}
	kept := randomBytes(t, 32)
	c.createSecret("erase/kept", kept)
	forms := append(encodings(ct.R, 3), encodings(ct.Sealed, 3)...)
	fillers := 0
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.nodes {
			files := filesCarrying(t, tn.cfg.DataDir, forms)
			if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "raft.db") }) ||
				!slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "state.bin") }) {
				fillers++
				c.createSecret(fmt.Sprintf("erase/filler%d", fillers), kept) // entries to snapshot after
				return false, fmt.Sprintf("%s's disk does not hold the ciphertext in its log and a snapshot yet: %v", tn.id(), files)
			}
		}
		return true, ""
	})

	res, err := c.submit(&fsm.Command{Type: fsm.TypeDestroyKey, DestroyKey: "erase/doomed"})
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		var why []string
		for _, tn := range c.nodes {
			if got := tn.n.ErasedThrough(); got < res.Index {
				why = append(why, fmt.Sprintf("%s erased through %d", tn.id(), got))
			}
		}
		return len(why) == 0, fmt.Sprintf("destroy at %d: %s", res.Index, strings.Join(why, ", "))
	})
	for _, tn := range c.nodes {
		if files := filesCarrying(t, tn.cfg.DataDir, forms); len(files) > 0 {
			t.Errorf("%s reports the destroy erased, but these files hold the ciphertext: %v", tn.id(), files)
		}
		// Nor does Raft read the entry back from its log cache.
		run := tn.n.cons.current()
		for i := uint64(1); i <= res.Index; i++ {
			var l raft.Log
			if err := run.logs.GetLog(i, &l); err == nil && slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(l.Data, f) }) {
				t.Errorf("%s's Raft still reads entry %d, with the ciphertext, after the erasure", tn.id(), i)
			}
		}
	}

	for _, tn := range c.nodes {
		if got := c.mustRelease(tn, "erase/kept"); !bytes.Equal(got, kept) {
			t.Fatalf("%s released another secret after the erasure", tn.id())
		}
	}
	if _, err := c.release(c.nodes[0], "erase/doomed"); KindOf(err) != KindDenied {
		t.Errorf("releasing the destroyed key: %v, want %s", err, KindDenied)
	}
	tn := c.nodes[2]
	c.stop(tn)
	c.restart(tn)
	ldr := c.leader()
	c.createSecret("erase/later", randomBytes(t, 32))
	c.waitFor(settleTimeout, func() (bool, string) {
		want, _ := ldr.n.fsm.Hash()
		got, _ := tn.n.fsm.Hash()
		return got == want, fmt.Sprintf("%s's state hash %x, the leader's %x", tn.id(), got[:4], want[:4])
	})
	if got := c.mustRelease(tn, "erase/kept"); !bytes.Equal(got, kept) {
		t.Fatalf("%s released another secret after its restart", tn.id())
	}
	if files := filesCarrying(t, tn.cfg.DataDir, forms); len(files) > 0 {
		t.Errorf("%s's files hold the ciphertext after its restart: %v", tn.id(), files)
	}
}
