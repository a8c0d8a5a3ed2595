package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// backupCluster is a 3-node cluster with secrets and a certified
// checkpoint, and a backup of it taken by an admin.
func backupCluster(t *testing.T) (*testCluster, map[string][]byte, *api.Backup, []byte) {
	c := newTestClusterWith(t, 3, func(cfg *Config) { cfg.CheckpointEvery = 16 })
	secrets := map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("backup/%d", i)
		secrets[name] = randomBytes(t, 32)
		c.createSecret(name, secrets[name])
	}
	ldr := c.leader()
	c.waitFor(settleTimeout, func() (bool, string) {
		return ldr.n.fsm.Capture().Certificate != nil, "no checkpoint certified"
	})
	// Entries after the checkpoint too: the backup carries them signed.
	secrets["after"] = randomBytes(t, 32)
	c.createSecret("after", secrets["after"])
	b, err := ldr.n.Backup(context.Background(), c.opID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return c, secrets, b, data
}

// TestBackupRestoreAfterEveryNodesRaftDataIsLost is drill 1: the Raft data
// of every node is lost, their identities and shares are intact. Each
// node is restored from the same backup, offline, and the cluster serves
// the same keys again.
func TestBackupRestoreAfterEveryNodesRaftDataIsLost(t *testing.T) {
	t.Parallel()
	c, secrets, b, data := backupCluster(t)
	if b.Snapshot == nil || b.Epoch == 0 {
		t.Fatalf("backup without a snapshot or an epoch: %+v", b)
	}
	if _, err := c.nodes[0].n.Backup(context.Background(), "nobody"); KindOf(err) != KindDenied {
		t.Fatalf("a backup for a principal that is no admin: %v, want denied", err)
	}
	for _, tn := range c.nodes {
		c.stop(tn)
	}
	for _, tn := range c.nodes {
		if _, err := RestoreBackup(tn.cfg.DataDir, tn.id(), data); err == nil || !strings.Contains(err.Error(), "holds Raft data") {
			t.Fatalf("restore over a node's Raft data: %v, want a refusal", err)
		}
		if err := os.RemoveAll(filepath.Join(tn.cfg.DataDir, raftDir)); err != nil {
			t.Fatal(err)
		}
		info, err := RestoreBackup(tn.cfg.DataDir, tn.id(), data)
		if err != nil {
			t.Fatalf("restoring %s: %v", tn.id(), err)
		}
		if info.Checkpoint == 0 || info.Entries == 0 || info.Keys != len(secrets) || len(info.Members) != 3 {
			t.Fatalf("restore of %s reports %+v", tn.id(), info)
		}
	}
	for _, tn := range c.nodes {
		c.restart(tn)
	}
	for _, tn := range c.nodes {
		c.waitReleases(tn, "after", secrets["after"])
	}
	for _, tn := range c.nodes {
		for name, want := range secrets {
			if got := c.mustRelease(tn, name); !bytes.Equal(got, want) {
				t.Fatalf("%s released a different %s after the restore", tn.id(), name)
			}
		}
	}
	// And it goes on: a new key after the restore.
	c.createSecret("new", []byte("after the drill"))
	if got := c.mustRelease(c.nodes[2], "new"); string(got) != "after the drill" {
		t.Fatalf("released %q", got)
	}
}

// TestForgedBackupIsRefused: whoever can write a backup file, without t
// shares or the making node's key, cannot make a node restore a state of
// their choosing: every edit is refused, by the checksum, the certificate,
// the replayed state hash or the node's signature.
func TestForgedBackupIsRefused(t *testing.T) {
	t.Parallel()
	c, _, b, data := backupCluster(t)
	pin := c.clusterKey()
	if _, _, err := VerifyBackup(data, pin); err != nil {
		t.Fatalf("the genuine backup: %v", err)
	}
	var sn fsm.Snap
	if err := json.Unmarshal(b.Snapshot, &sn); err != nil {
		t.Fatal(err)
	}
	reseal := func(edit func(*api.Backup)) []byte {
		cp := *b
		edit(&cp)
		sum := sha256.Sum256(cp.Snapshot)
		cp.SHA256 = sum[:]
		out, err := json.Marshal(&cp)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	withSnap := func(edit func(*fsm.Snap)) func(*api.Backup) {
		return func(cp *api.Backup) {
			var s fsm.Snap
			if err := json.Unmarshal(b.Snapshot, &s); err != nil {
				t.Fatal(err)
			}
			edit(&s)
			raw, err := json.Marshal(&s)
			if err != nil {
				t.Fatal(err)
			}
			cp.Snapshot = raw
		}
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"a flipped byte": {func() []byte {
			cp := *b
			cp.Snapshot = bytes.Clone(b.Snapshot)
			cp.Snapshot[len(cp.Snapshot)/2] ^= 1
			out, _ := json.Marshal(&cp)
			return out
		}(), "checksum"},
		"the last entry left out": {reseal(withSnap(func(s *fsm.Snap) { s.Entries = s.Entries[:len(s.Entries)-1] })), "its snapshot gives"},
		"an entry's bytes edited": {reseal(withSnap(func(s *fsm.Snap) {
			edited := 0
			for i := range s.Entries {
				var sg fsm.Signed
				if json.Unmarshal(s.Entries[i].Data, &sg) != nil || !bytes.Contains(sg.Payload, []byte(`"after"`)) {
					continue
				}
				sg.Payload = bytes.Replace(sg.Payload, []byte(`"after"`), []byte(`"AFTER"`), 1)
				raw, err := json.Marshal(&sg)
				if err != nil {
					t.Fatal(err)
				}
				s.Entries[i].Data, edited = raw, edited+1
			}
			if edited == 0 {
				t.Fatal("no entry after the checkpoint creates \"after\"")
			}
		})), "another state"},
		"the certified state edited": {reseal(withSnap(func(s *fsm.Snap) {
			s.Checkpoint = bytes.Replace(s.Checkpoint, []byte(`"backup/1"`), []byte(`"backup/X"`), 1)
		})), "certified hash"},
		"the certified state edited and rehashed": {reseal(withSnap(func(s *fsm.Snap) {
			s.Checkpoint = bytes.Replace(s.Checkpoint, []byte(`"backup/1"`), []byte(`"backup/X"`), 1)
			_, sum, err := fsm.CheckpointHash(s.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			s.Certificate.Hash = sum[:]
		})), "partial"},
		"the certified state edited and rehashed as snapshot version 1 did": {reseal(withSnap(func(s *fsm.Snap) {
			s.Checkpoint = bytes.Replace(s.Checkpoint, []byte(`"backup/1"`), []byte(`"backup/X"`), 1)
			sum := sha256.Sum256(s.Checkpoint)
			s.Certificate.Hash = sum[:]
		})), "certified hash"},
		"the certificate's partials dropped": {reseal(withSnap(func(s *fsm.Snap) { s.Certificate.Partials = s.Certificate.Partials[:1] })), "needed"},
		"re-signed by another key": {reseal(func(cp *api.Backup) {
			cp.Signature = ed25519.Sign(otherKey, api.BackupMessage(cp))
		}), "not signed by node"},
		"an entry left out, the header made to match, signed by another key": {reseal(func(cp *api.Backup) {
			withSnap(func(s *fsm.Snap) { s.Entries = s.Entries[:len(s.Entries)-1] })(cp)
			r, _, err := replayBackup(cp.Snapshot, pin)
			if err != nil {
				t.Fatal(err)
			}
			cp.Index, cp.StateHash = r.applied, r.hash[:]
			sum := sha256.Sum256(cp.Snapshot)
			cp.SHA256 = sum[:]
			cp.Signature = ed25519.Sign(otherKey, api.BackupMessage(cp))
		}), "not signed by node"},
		"a history with no cluster key, the header made to match": {reseal(func(cp *api.Backup) {
			cp.Snapshot = []byte(`{"version":3,"entries":[]}`)
			r, _, err := replayBackup(cp.Snapshot, pin)
			if err != nil {
				t.Fatal(err)
			}
			cp.Index, cp.Epoch, cp.ClusterID, cp.StateHash = r.applied, r.epoch, r.clusterID, r.hash[:]
		}), "no cluster key"},
		"another cluster key": {reseal(func(cp *api.Backup) { cp.ClusterKey = bytes.Repeat([]byte{9}, 32) }), "another cluster key"},
		"not a backup":        {[]byte(`{"format":"x"}`), "format"},
	} {
		if _, _, err := VerifyBackup(tc.data, pin); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	// A restore checks the same, against the key the node pinned.
	tn := c.nodes[1]
	c.stop(tn)
	if err := os.RemoveAll(filepath.Join(tn.cfg.DataDir, raftDir)); err != nil {
		t.Fatal(err)
	}
	forged := reseal(withSnap(func(s *fsm.Snap) { s.Entries = s.Entries[:len(s.Entries)-1] }))
	if _, err := RestoreBackup(tn.cfg.DataDir, tn.id(), forged); err == nil {
		t.Fatal("a node restored a forged backup")
	}
	if entries, _ := os.ReadDir(filepath.Join(tn.cfg.DataDir, raftDir)); len(entries) != 0 {
		t.Fatalf("a refused restore left %d files in the Raft directory", len(entries))
	}
}

// TestForgedFoundingBackupIsRefused: the thief of one member's data
// directory writes a backup of a history of its own: a founding entry
// naming its own admin, with the cluster's real ID, CA and the stolen node
// as the only member, then a key generation in which the stolen node deals
// alone, its deal's commitments made the pinned cluster key (a fresh deal
// proves no knowledge of its constant term, so shamir's public checks pass
// it), and acknowledges. The history reaches the pinned key, at the
// cluster's epoch, and the backup is signed by a node of the state it
// gives: before certification was required of every keyed history,
// VerifyBackup accepted it and RestoreBackup wrote it into the stolen
// node's data directory. It has no certified checkpoint (only t holders
// of the real key can make one), and both refuse it, writing nothing.
func TestForgedFoundingBackupIsRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	pin := c.clusterKey()
	victim := c.nodes[0]
	var id identity
	if err := readJSON(filepath.Join(victim.cfg.DataDir, identityFile), &id); err != nil {
		t.Fatal(err)
	}
	var clusterID string
	var ca []byte
	var me fsm.Node
	var epoch uint64
	victim.n.fsm.Read(func(s *fsm.State) {
		clusterID, ca, me, epoch = s.ClusterID, bytes.Clone(s.CACert), *s.Nodes[id.NodeID], s.Epoch
	})
	evePub, eveKey, _ := ed25519.GenerateKey(rand.Reader)
	eve := fsm.PrincipalID(evePub)

	f := fsm.New(dealChecker{})
	now := time.Now()
	var index uint64
	apply := func(signer string, key ed25519.PrivateKey, cmd *fsm.Command) {
		t.Helper()
		cmd.Nonce, cmd.IssuedAt = randomBytes(t, 16), now.UnixNano()
		sg, err := fsm.Sign(signer, key, cmd)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(sg)
		index++
		if res := f.Apply(index, now, raw); res.Error != nil {
			t.Fatalf("forged entry %d (%s): %v", index, cmd.Type, res.Error)
		}
	}
	apply(eve, eveKey, &fsm.Command{Type: fsm.TypeInit, Init: &fsm.Init{ClusterID: clusterID, CACert: ca,
		Operator: &fsm.Operator{ID: eve, Name: "eve", PublicKey: evePub}, Node: &me, InitialNodes: 1}})
	// Epochs the key generation at 1; the cluster's own epoch is reached
	// by refreshing the shares (restart_reshare) as often as needed.
	for {
		var r *fsm.Reshare
		f.Read(func(s *fsm.State) { r = s.Reshare })
		deal, err := shamir.NewFreshDeal(rand.Reader, 1, 1, []shamir.Recipient{{Index: 1, EncPub: me.EncKey}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Fresh {
			// A resharing deal of a constant polynomial: its one
			// commitment is the old public share, the key itself.
			deal.Commits = nil
		}
		deal.Commits = append(deal.Commits[:0], pin)
		raw, _ := json.Marshal(deal)
		apply(id.NodeID, id.SignKey, &fsm.Command{Type: fsm.TypeDeal, Deal: &fsm.DealCommand{Round: r.Round, Dealer: 1, Deal: raw}})
		apply(id.NodeID, id.SignKey, &fsm.Command{Type: fsm.TypeReshareAck, ReshareAck: &fsm.ReshareAck{Round: r.Round}})
		var e uint64
		f.Read(func(s *fsm.State) { e = s.Epoch })
		if e == epoch {
			break
		}
		apply(eve, eveKey, &fsm.Command{Type: fsm.TypeRestartReshare, RestartReshare: &fsm.RestartReshare{}})
	}
	var key []byte
	var applied uint64
	f.Read(func(s *fsm.State) { key, applied = bytes.Clone(s.PublicKey()), s.Applied })
	if !bytes.Equal(key, pin) {
		t.Fatal("the forged history should reach the pinned cluster key")
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := f.Hash()
	sum := sha256.Sum256(snap)
	b := &api.Backup{Format: api.BackupFormat, ClusterID: clusterID, ClusterKey: pin, Index: applied, Epoch: epoch,
		StateHash: hash[:], Node: id.NodeID, CreatedAt: now.UnixNano(), SHA256: sum[:], Snapshot: snap}
	b.Signature = ed25519.Sign(id.SignKey, api.BackupMessage(b))
	data, _ := json.Marshal(b)

	if _, _, err := VerifyBackup(data, pin); err == nil || !strings.Contains(err.Error(), "certified checkpoint") {
		t.Fatalf("VerifyBackup of the forged founding: %v, want a refusal for want of a certified checkpoint", err)
	}
	c.stop(victim)
	if err := os.RemoveAll(filepath.Join(victim.cfg.DataDir, raftDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreBackup(victim.cfg.DataDir, victim.id(), data); err == nil || !strings.Contains(err.Error(), "certified checkpoint") {
		t.Fatalf("RestoreBackup of the forged founding: %v, want a refusal for want of a certified checkpoint", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(victim.cfg.DataDir, raftDir)); len(entries) != 0 {
		t.Fatalf("a refused restore left %d files in the Raft directory", len(entries))
	}
}
