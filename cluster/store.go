package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/keyquorum/keyquorum/shamir"
)

// Files in a node's data directory. identity.json and shares.json hold
// secrets and are written with mode 0600.
const (
	identityFile   = "identity.json"
	membershipFile = "membership.json"
	sharesFile     = "shares.json"
	raftDir        = "raft"
)

// identity is what a node is, before and after it joins a cluster.
type identity struct {
	NodeID  string             `json:"node_id"`
	SignKey ed25519.PrivateKey `json:"sign_key"` // Ed25519: TLS and signatures
	// EncPub is the newest encryption key: deals of the node's next round
	// are encrypted to it. Keyring holds the private keys, by hex public
	// key, of every encryption key not yet erased: a node rotates its key
	// after each round it received deals in, and erases the old one, so the
	// deals left in its Raft log cannot give back shares it erased.
	EncPub  []byte            `json:"enc_pub"`
	Keyring map[string][]byte `json:"keyring"`
}

func loadOrCreateIdentity(dir, nodeID string) (*identity, error) {
	var id identity
	err := readJSON(filepath.Join(dir, identityFile), &id)
	switch {
	case err == nil:
		if id.NodeID != nodeID {
			return nil, fmt.Errorf("data directory %s belongs to node %q, not %q", dir, id.NodeID, nodeID)
		}
		return &id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	encPriv, encPub, err := shamir.GenerateEncryptionKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	id = identity{NodeID: nodeID, SignKey: sign, EncPub: encPub, Keyring: map[string][]byte{hex.EncodeToString(encPub): encPriv}}
	if err := writeJSON(filepath.Join(dir, identityFile), &id); err != nil {
		return nil, err
	}
	return &id, nil
}

// membership is what a node learns when it is started into a cluster.
type membership struct {
	ClusterID string `json:"cluster_id"`
	CACert    []byte `json:"ca_cert"`   // PEM
	NodeCert  []byte `json:"node_cert"` // PEM, for the identity's SignKey
	GossipKey []byte `json:"gossip_key"`
	// ClusterKey is the cluster public key this node checks snapshots
	// against (pin.go): given at start by the operator who pinned it, or
	// written once the node's own state has it.
	ClusterKey []byte `json:"cluster_key,omitempty"`
	// Founding is the SHA-256 of the founding entry's signed payload
	// (fsm.Founding) the node applied, written once a checkpoint of its
	// state is certified under ClusterKey; Apply refuses any other
	// founding entry (pin.go).
	Founding []byte `json:"founding,omitempty"`
	// JoinCACert and JoinCAKey (PEM) are the cluster's join CA, when the
	// operator gave it one: this node admits nodes that join by
	// themselves (autojoin.go).
	JoinCACert []byte `json:"join_ca_cert,omitempty"`
	JoinCAKey  []byte `json:"join_ca_key,omitempty"`
}

// shareStore keeps the node's share of the current epoch and the share it
// computed for a round in progress, each with the node's shares of the
// Tang and FROST keys of that epoch. It is the only file that holds share
// material.
type shareStore struct {
	path string

	mu   sync.Mutex
	data shareFile
}

type shareFile struct {
	Current *epochShare `json:"current,omitempty"`
	Pending *epochShare `json:"pending,omitempty"` // computed in a round, not yet the epoch
}

type epochShare struct {
	Epoch  uint64        `json:"epoch"` // for Pending, the epoch the round will make
	Round  uint64        `json:"round"`
	Share  *shamir.Share `json:"share"`
	EncKey []byte        `json:"enc_key"` // the encryption key the round's deals came to
	// Tang are the node's shares of the Tang keys the round reshared, by
	// kid: erased with the epoch's share.
	Tang map[string]*shamir.P256Share `json:"tang,omitempty"`
	// Frost are the node's shares of the FROST keys the round reshared,
	// by frostStoreID: erased with the epoch's share.
	Frost map[string]*shamir.Share `json:"frost,omitempty"`
	// hot is the share ready for partials and this holder's values of the
	// keys it answered for (holdervalues.go): in memory only, erased with
	// the share.
	hot *holderCache
}

// erase overwrites the share, the Tang shares and the FROST shares.
func (e *epochShare) erase() {
	if e == nil {
		return
	}
	if e.Share != nil {
		e.Share.Erase()
	}
	e.hot.erase()
	e.hot = nil
	for _, sh := range e.Tang {
		sh.Erase()
	}
	for _, sh := range e.Frost {
		sh.Erase()
	}
}

func openShareStore(dir string) (*shareStore, error) {
	s := &shareStore{path: filepath.Join(dir, sharesFile)}
	if err := readJSON(s.path, &s.data); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return s, nil
}

func (s *shareStore) save() error { return writeJSON(s.path, &s.data) }

// current returns a copy of the share of epoch, or nil.
func (s *shareStore) current(epoch uint64) *shamir.Share {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.data.Current; c != nil && c.Epoch == epoch && c.Share != nil {
		return &shamir.Share{Index: c.Share.Index, Value: bytes.Clone(c.Share.Value)}
	}
	return nil
}

// holds reports whether the node holds a share of epoch, without copying
// it.
func (s *shareStore) holds(epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.data.Current
	return c != nil && c.Epoch == epoch && c.Share != nil
}

// tang returns a copy of the node's share of the Tang key kid of epoch,
// or nil.
func (s *shareStore) tang(epoch uint64, kid string) *shamir.P256Share {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.data.Current; c != nil && c.Epoch == epoch {
		if sh := c.Tang[kid]; sh != nil {
			return &shamir.P256Share{Index: sh.Index, Scalar: bytes.Clone(sh.Scalar)}
		}
	}
	return nil
}

// tangKids returns the kids of the Tang shares of the current epoch.
func (s *shareStore) tangKids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if c := s.data.Current; c != nil {
		for kid := range c.Tang {
			out = append(out, kid)
		}
	}
	return out
}

// eraseTang erases the current epoch's shares of the Tang keys kids (keys
// destroyed since).
func (s *shareStore) eraseTang(kids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.data.Current
	if c == nil {
		return nil
	}
	var gone []*shamir.P256Share
	for _, kid := range kids {
		if sh := c.Tang[kid]; sh != nil {
			gone = append(gone, sh)
			delete(c.Tang, kid)
		}
	}
	if err := s.save(); err != nil {
		return err
	}
	for _, sh := range gone {
		sh.Erase()
	}
	return nil
}

// frost returns a copy of the node's share of the FROST key id
// (frostStoreID) of epoch, or nil.
func (s *shareStore) frost(epoch uint64, id string) *shamir.Share {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.data.Current; c != nil && c.Epoch == epoch {
		if sh := c.Frost[id]; sh != nil {
			return &shamir.Share{Index: sh.Index, Value: bytes.Clone(sh.Value)}
		}
	}
	return nil
}

// frostIDs returns the IDs of the FROST shares of the current epoch.
func (s *shareStore) frostIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if c := s.data.Current; c != nil {
		for id := range c.Frost {
			out = append(out, id)
		}
	}
	return out
}

// eraseFROST erases the current epoch's shares of the FROST keys ids
// (keys destroyed since).
func (s *shareStore) eraseFROST(ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.data.Current
	if c == nil {
		return nil
	}
	var gone []*shamir.Share
	for _, id := range ids {
		if sh := c.Frost[id]; sh != nil {
			gone = append(gone, sh)
			delete(c.Frost, id)
		}
	}
	if err := s.save(); err != nil {
		return err
	}
	for _, sh := range gone {
		sh.Erase()
	}
	return nil
}

// snapshot returns the epochs and rounds the store holds shares for.
func (s *shareStore) snapshot() (cur, pend *epochShare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.data.Current; c != nil {
		cur = &epochShare{Epoch: c.Epoch, Round: c.Round, EncKey: c.EncKey}
	}
	if p := s.data.Pending; p != nil {
		pend = &epochShare{Epoch: p.Epoch, Round: p.Round, Share: p.Share, EncKey: p.EncKey}
	}
	return cur, pend
}

// setPending records the share computed in a round. It is on disk before
// the node acknowledges the round.
func (s *shareStore) setPending(p *epochShare) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Pending.erase()
	s.data.Pending = p
	return s.save()
}

// setCurrent records the share of the current epoch a node opened from
// the deals of the round it missed, and erases the one it replaces.
func (s *shareStore) setCurrent(c *epochShare) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.data.Current
	s.data.Current = c
	if err := s.save(); err != nil {
		return err
	}
	old.erase()
	return nil
}

// promote makes the pending share current and erases the old one.
func (s *shareStore) promote() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.data.Current
	s.data.Current, s.data.Pending = s.data.Pending, nil
	if err := s.save(); err != nil {
		return err
	}
	old.erase()
	return nil
}

// eraseCurrent forgets the share of the current epoch.
func (s *shareStore) eraseCurrent() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Current.erase()
	s.data.Current = nil
	return s.save()
}

// erasePending forgets the share computed in a round.
func (s *shareStore) erasePending() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Pending.erase()
	s.data.Pending = nil
	return s.save()
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJSON writes a file with mode 0600 atomically and durably: a
// temporary file, fsync, rename, fsync of the directory.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
