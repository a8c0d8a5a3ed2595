package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Backup asks the node for a backup of the cluster's state, taken at a
// linearizable read (admins only), and checks it as Inspect does before
// returning it.
func (c *Client) Backup(ctx context.Context) (*api.Backup, error) {
	var b api.Backup
	if err := c.do(ctx, http.MethodGet, "/v1/snapshot", nil, &b); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(&b)
	if err != nil {
		return nil, err
	}
	if _, err := InspectBackup(raw, c.creds.ClusterKey); err != nil {
		return nil, &Error{Kind: vocab.KindBadReply, Message: fmt.Sprintf("the node's backup: %v", err)}
	}
	return &b, nil
}

// BackupSummary is what InspectBackup reads of a backup, without a
// cluster.
type BackupSummary struct {
	ClusterID  string
	ClusterKey []byte
	Index      uint64 // the applied index it restores to
	Epoch      uint64 // the key epoch at Index: restoring nodes need their shares of it
	Node       string // the node that made and signed it
	CreatedAt  time.Time
	Size       int // bytes of the snapshot
	// Checkpoint is the certified checkpoint it starts from: a backup
	// without one is refused, since no node restores it.
	Checkpoint *CheckpointSummary
	Entries    int  // signed entries after the checkpoint, replayed at restore
	Pinned     bool // the certificate was checked against the caller's pinned cluster key
}

// CheckpointSummary is the certified state a backup starts from.
type CheckpointSummary struct {
	Index     uint64
	Epoch     uint64
	Threshold int
	Partials  int // holders' partials that certify it
	Keys      int
	Operators int
	Members   []string
}

// InspectBackup reads a backup file without a cluster: it checks the
// format, the checksum and the certificate of its checkpoint (t holders'
// partials, each with its proof, under the cluster key: pin when given,
// the backup's own otherwise; a backup without one is refused) and
// summarizes what it holds.
//
// It does not replay the entries after the checkpoint: that needs the
// node's state machine, and keyd snapshot restore does it, with the
// making node's signature over the state they reach, before it writes
// anything.
func InspectBackup(data, pin []byte) (*BackupSummary, error) {
	var b api.Backup
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("not a keyquorum backup: %w", err)
	}
	if b.Format != api.BackupFormat {
		return nil, fmt.Errorf("backup format %q, want %q", b.Format, api.BackupFormat)
	}
	if sum := sha256.Sum256(b.Snapshot); !bytes.Equal(sum[:], b.SHA256) {
		return nil, errors.New("the snapshot does not match its SHA-256 checksum: the file is damaged or was edited")
	}
	if pin != nil && !bytes.Equal(pin, b.ClusterKey) {
		return nil, errors.New("the backup is of another cluster key than the pinned one (KEYQUORUM_CLUSTER_KEY)")
	}
	var sn fsm.Snap
	sd := json.NewDecoder(bytes.NewReader(b.Snapshot))
	sd.DisallowUnknownFields()
	if err := sd.Decode(&sn); err != nil {
		return nil, fmt.Errorf("its snapshot: %w", err)
	}
	out := &BackupSummary{ClusterID: b.ClusterID, ClusterKey: b.ClusterKey, Index: b.Index, Epoch: b.Epoch, Node: b.Node,
		CreatedAt: time.Unix(0, b.CreatedAt), Size: len(b.Snapshot), Entries: len(sn.Entries), Pinned: pin != nil}
	if sn.Certificate == nil && sn.Checkpoint == nil {
		// A history without a certified checkpoint is not tied to the
		// cluster key: anyone can sign a founding entry (fsm/checkpoint.go).
		return nil, errors.New("it has no certified checkpoint: no node restores it")
	}
	cp, err := checkCertificate(&sn, b.ClusterID, b.ClusterKey)
	if err != nil {
		return nil, err
	}
	out.Checkpoint = cp
	return out, nil
}

// checkCertificate checks a snapshot's checkpoint against its certificate
// under the cluster key, as a node does (fsm.FSM.RestoreSnapshot with
// shamir's partial checks), and summarizes the certified state.
func checkCertificate(sn *fsm.Snap, clusterID string, key []byte) (*CheckpointSummary, error) {
	c := sn.Certificate
	if c == nil || sn.Checkpoint == nil {
		return nil, errors.New("its checkpoint lacks its state or its certificate")
	}
	st, sum, err := fsm.CheckpointHash(sn.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", c.Index, err)
	}
	if !bytes.Equal(sum[:], c.Hash) {
		return nil, fmt.Errorf("checkpoint %d's state does not have its certified hash", c.Index)
	}
	if len(c.Poly) == 0 || !bytes.Equal(c.Poly[0], key) {
		return nil, fmt.Errorf("checkpoint %d is not certified under the backup's cluster key", c.Index)
	}
	pp := &shamir.PublicPoly{Commits: c.Poly}
	if err := pp.Validate(); err != nil {
		return nil, fmt.Errorf("checkpoint %d's commitments: %w", c.Index, err)
	}
	if st.Applied != c.Index || st.ClusterID != clusterID {
		return nil, fmt.Errorf("checkpoint certified at %d of cluster %q holds a state at %d of %q", c.Index, clusterID, st.Applied, st.ClusterID)
	}
	msg := fsm.CheckpointMessage(clusterID, c.Index, c.Hash)
	R, err := shamir.HashToPoint(fsm.CheckpointLabel, msg)
	if err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	for _, p := range c.Partials {
		if p == nil || seen[p.Index] {
			return nil, fmt.Errorf("checkpoint %d: a missing or repeated partial", c.Index)
		}
		if err := shamir.VerifyPartial(pp, R, &shamir.Partial{Index: p.Index, Value: p.Value, Challenge: p.Challenge, Response: p.Response}, msg); err != nil {
			return nil, fmt.Errorf("checkpoint %d: partial of share %d: %w", c.Index, p.Index, err)
		}
		seen[p.Index] = true
	}
	if len(seen) < len(c.Poly) {
		return nil, fmt.Errorf("checkpoint %d: %d partials, %d needed", c.Index, len(seen), len(c.Poly))
	}
	cp := &CheckpointSummary{Index: c.Index, Epoch: c.Epoch, Threshold: len(c.Poly), Partials: len(seen), Keys: len(st.Keys), Operators: len(st.Operators)}
	for id := range st.Nodes {
		cp.Members = append(cp.Members, id)
	}
	slices.Sort(cp.Members)
	return cp, nil
}
