package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// Backups (docs/disaster-recovery.md): a backup is the state machine's
// snapshot, which a node takes at a linearizable read and signs, and which
// a node restores into its own data directory, offline, after its Raft
// data was lost. Nothing in it decrypts anything without t shares.

// SnapshotService makes backups. *Node implements it.
type SnapshotService interface {
	// Backup makes a backup of the state at a linearizable read; only
	// admins may.
	Backup(ctx context.Context, principal string) (*api.Backup, error)
}

var _ SnapshotService = (*Node)(nil)

// Backup makes a backup at a linearizable read, for an admin.
func (n *Node) Backup(ctx context.Context, principal string) (*api.Backup, error) {
	var denied bool
	err := n.consistent(ctx, func(s *fsm.State) {
		o := s.Operators[principal]
		denied = o == nil || !o.Admin
	})
	if err != nil {
		return nil, err
	}
	if denied {
		return nil, Errorf(KindDenied, "%s is not an admin operator: only admins take backups", principal)
	}
	return n.MakeBackup()
}

// MakeBackup makes a backup of this replica's state as it is, without a
// read of the leader's: the scheduled backups of keyd. It replays the
// snapshot itself first, so a backup it signs is one that restores.
func (n *Node) MakeBackup() (*api.Backup, error) {
	if _, err := n.joined(); err != nil {
		return nil, err
	}
	var pin []byte
	n.fsm.Read(func(s *fsm.State) { pin = bytes.Clone(s.PublicKey()) })
	if pin == nil {
		return nil, Errorf(KindNotInitialized, "the cluster has no key yet: nothing to back up")
	}
	// A backup without a certified checkpoint would not restore: a history
	// that is not under one is not tied to the cluster key (fsm/checkpoint.go).
	capture, err := n.fsm.CaptureCertified()
	if err != nil {
		return nil, Errorf(KindNotInitialized, "%v: try again", err)
	}
	snap, err := capture.Bytes()
	if err != nil {
		return nil, err
	}
	st, _, err := replayBackup(snap, pin)
	if err != nil {
		return nil, Errorf(KindInternal, "this node's own snapshot does not verify: %v", err)
	}
	sum := sha256.Sum256(snap)
	b := &api.Backup{Format: api.BackupFormat, ClusterID: st.clusterID, ClusterKey: pin, Index: st.applied, Epoch: st.epoch,
		StateHash: st.hash[:], Node: n.id.NodeID, CreatedAt: now().UnixNano(), SHA256: sum[:], Snapshot: snap}
	b.Signature = ed25519.Sign(n.id.SignKey, api.BackupMessage(b))
	return b, nil
}

// replayed is what a verified backup's snapshot gives.
type replayed struct {
	clusterID string
	applied   uint64
	epoch     uint64
	hash      [32]byte
	key       []byte // the cluster key of the state reached
	nodes     map[string]*fsm.Node
	keys      int
	operators int
	restored  *fsm.Restored
}

// replayBackup verifies a snapshot against the cluster key pin, by
// restoring it into a fresh state machine (fsm.FSM.RestoreSnapshot: the
// certificate, then each entry's signature).
func replayBackup(snap, pin []byte) (*replayed, *fsm.FSM, error) {
	f := fsm.New(dealChecker{})
	f.TokenWrites = WriteTokenCheck
	f.PinClusterKey(pin)
	res, err := f.RestoreSnapshot(snap)
	if err != nil {
		return nil, nil, err
	}
	r := &replayed{restored: res, nodes: map[string]*fsm.Node{}}
	f.Read(func(s *fsm.State) {
		r.clusterID, r.applied, r.epoch, r.key = s.ClusterID, s.Applied, s.Epoch, bytes.Clone(s.PublicKey())
		r.keys, r.operators = len(s.Keys), len(s.Operators)
		for id, nd := range s.Nodes {
			c := *nd
			r.nodes[id] = &c
		}
	})
	if r.hash, err = f.Hash(); err != nil {
		return nil, nil, err
	}
	return r, f, nil
}

// BackupInfo is what a verified backup holds.
type BackupInfo struct {
	ClusterID  string
	Index      uint64 // the applied index it gives
	Epoch      uint64
	Keys       int
	Operators  int
	Members    []string // node IDs
	Checkpoint uint64   // index of its certified checkpoint (0: none, every entry replayed from the first)
	Entries    int      // signed entries replayed after the checkpoint
	Node       string   // the node that made and signed it
	CreatedAt  time.Time
}

// VerifyBackup checks a backup completely, against the cluster key pin:
// its format and checksum, its certificate and every entry's signature
// (by replaying it), that the replay reaches the state the making node
// signed, and that node's signature, by its key in that state.
func VerifyBackup(data, pin []byte) (*BackupInfo, *fsm.FSM, error) {
	var b api.Backup
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, fmt.Errorf("backup: not a keyquorum backup: %w", err)
	}
	if b.Format != api.BackupFormat {
		return nil, nil, fmt.Errorf("backup: format %q, want %q", b.Format, api.BackupFormat)
	}
	if sum := sha256.Sum256(b.Snapshot); len(b.SHA256) != sha256.Size || !bytes.Equal(sum[:], b.SHA256) {
		return nil, nil, errors.New("backup: the snapshot does not match its SHA-256 checksum: the file is damaged or was edited")
	}
	if len(pin) == 0 {
		return nil, nil, errors.New("backup: no cluster key to check it against")
	}
	if !bytes.Equal(b.ClusterKey, pin) {
		return nil, nil, errors.New("backup: made under another cluster key than this node's")
	}
	r, f, err := replayBackup(b.Snapshot, pin)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	switch {
	// The state machine takes a state with no key yet on the pin's word
	// (a node's own early snapshot); a backup must give the pinned key,
	// or a history made up without one would restore.
	case !bytes.Equal(r.key, pin):
		return nil, nil, errors.New("backup: the state it gives has no cluster key, or another one than this node's")
	case r.clusterID != b.ClusterID || r.applied != b.Index || r.epoch != b.Epoch:
		return nil, nil, fmt.Errorf("backup: it says cluster %q at index %d, epoch %d; its snapshot gives %q at %d, epoch %d", b.ClusterID, b.Index, b.Epoch, r.clusterID, r.applied, r.epoch)
	case !bytes.Equal(r.hash[:], b.StateHash):
		return nil, nil, fmt.Errorf("backup: its snapshot replays to another state than the one %s signed at index %d (entries left out or edited)", b.Node, b.Index)
	}
	signer := r.nodes[b.Node]
	if signer == nil || len(signer.SignKey) != ed25519.PublicKeySize || !ed25519.Verify(signer.SignKey, api.BackupMessage(&b), b.Signature) {
		return nil, nil, fmt.Errorf("backup: not signed by node %q of the state it gives", b.Node)
	}
	info := &BackupInfo{ClusterID: r.clusterID, Index: r.applied, Epoch: r.epoch, Keys: r.keys, Operators: r.operators,
		Checkpoint: r.restored.Checkpoint, Entries: r.restored.Entries, Node: b.Node, CreatedAt: time.Unix(0, b.CreatedAt)}
	for id := range r.nodes {
		info.Members = append(info.Members, id)
	}
	sort.Strings(info.Members)
	return info, f, nil
}

// RestoreBackup restores a backup into the data directory of a stopped
// node whose Raft data was lost but whose identity, membership and share
// are intact (drill 1 of docs/disaster-recovery.md). It verifies the
// backup against the cluster key the node pinned when it joined, checks
// that the node is a member of the state it gives and holds its share of
// that state's epoch, and writes it as the node's Raft snapshot, with the
// state's members as the Raft configuration. Every member restored from
// the same backup starts at the same index; the one restored from the
// newest wins the election and brings the others up to it.
func RestoreBackup(dataDir, nodeID string, data []byte) (*BackupInfo, error) {
	var id identity
	if err := readJSON(filepath.Join(dataDir, identityFile), &id); err != nil {
		return nil, fmt.Errorf("%s: no node identity (%v): a backup is restored into the data directory of a member that kept its identity and share", dataDir, err)
	}
	if id.NodeID != nodeID {
		return nil, fmt.Errorf("data directory %s belongs to node %q, not %q", dataDir, id.NodeID, nodeID)
	}
	var m membership
	if err := readJSON(filepath.Join(dataDir, membershipFile), &m); err != nil {
		return nil, fmt.Errorf("%s: node %s never joined a cluster (%v): nothing to check the backup against", dataDir, nodeID, err)
	}
	if len(m.ClusterKey) == 0 {
		return nil, fmt.Errorf("%s: node %s has no pinned cluster key to check the backup against", dataDir, nodeID)
	}
	dir := filepath.Join(dataDir, raftDir)
	switch entries, err := os.ReadDir(dir); {
	case err == nil && len(entries) > 0:
		return nil, fmt.Errorf("%s holds Raft data: a backup is restored only where it was lost (move it aside to restore over it)", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	info, f, err := VerifyBackup(data, m.ClusterKey)
	if err != nil {
		return nil, err
	}
	if info.ClusterID != m.ClusterID {
		return nil, fmt.Errorf("backup: of cluster %q; node %s is in %q", info.ClusterID, nodeID, m.ClusterID)
	}
	var servers []raft.Server
	var me *fsm.Node
	f.Read(func(s *fsm.State) {
		me = s.Nodes[nodeID]
		for nid, nd := range s.Nodes {
			servers = append(servers, raft.Server{ID: raft.ServerID(nid), Address: raft.ServerAddress(nd.RaftAddr)})
		}
	})
	if me == nil {
		return nil, fmt.Errorf("backup: node %s is not a member of the state it gives (members %v)", nodeID, info.Members)
	}
	shares, err := openShareStore(dataDir)
	if err != nil {
		return nil, err
	}
	if me.Holder && shares.current(info.Epoch) == nil {
		return nil, fmt.Errorf("backup: at key epoch %d, and node %s holds no share of it (its share is of another epoch: restore a backup taken at the shares' epoch)", info.Epoch, nodeID)
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	snap := f.Capture()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	store, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	if err != nil {
		return nil, err
	}
	_, trans := raft.NewInmemTransport("")
	sink, err := store.Create(raft.SnapshotVersionMax, info.Index, 1, raft.Configuration{Servers: servers}, info.Index, trans)
	if err != nil {
		return nil, err
	}
	if err := (snapshot{snap: snap, log: slog.Default()}).Persist(sink); err != nil {
		return nil, fmt.Errorf("writing the Raft snapshot: %w", err)
	}
	return info, nil
}
