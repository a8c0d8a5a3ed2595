package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// The recovery kit (fsm/recovery.go, docs/disaster-recovery.md): each
// holder of the epoch deals its share to the recovery officers, and the
// officers, k of them, rebuild the cluster key's shares on new nodes from a
// backup when fewer than t nodes survive. This file has the three parts:
// the public checks the state machine makes of a holder's deal, a node's
// dealing, and the officers' side (open a kit share from a verified state,
// deal it to new nodes, and the new nodes' combine), which runs without a
// cluster.

// recoveryHooks let tests stage attacks on the kit; nil in production.
type recoveryHooks struct {
	// tamper changes a node's recovery deal before it is proposed.
	tamper func(nodeID string, d *shamir.Deal)
}

var recoveryTestHooks atomic.Pointer[recoveryHooks]

// RecoveryContext binds a holder's deal to the officers to the cluster and
// the epoch it reshares.
func RecoveryContext(clusterID string, epoch uint64) []byte {
	b := []byte("keyquorum/recovery-kit/v1\x00" + clusterID + "\x00")
	return binary.BigEndian.AppendUint64(b, epoch)
}

// RebuildContext binds the officers' deals to the new nodes to the cluster
// they rebuild.
func RebuildContext(clusterID string) []byte {
	return []byte("keyquorum/recovery-rebuild/v1\x00" + clusterID)
}

// CheckRecoveryDeal checks a holder's deal to the officers publicly: a
// resharing of its share under the epoch's commitments, k-of-m to the
// officers.
func (dealChecker) CheckRecoveryDeal(kit *fsm.RecoveryKit, epochPoly [][]byte, dealer uint32, b []byte) error {
	d, err := decodeDeal(b)
	if err != nil {
		return err
	}
	if d.Dealer != dealer {
		return fmt.Errorf("deal names dealer %d, signed by %d", d.Dealer, dealer)
	}
	return shamir.VerifyReshareDeal(d, &shamir.PublicPoly{Commits: epochPoly}, kit.Threshold, kit.OfficerIndexes())
}

// CombineRecovery is the kit's public polynomial over deals' dealers.
func (dealChecker) CombineRecovery(raw []fsm.Deal) ([][]byte, error) {
	p, err := kitPoly(raw)
	if err != nil {
		return nil, err
	}
	return p.Commits, nil
}

func kitPoly(raw []fsm.Deal) (*shamir.PublicPoly, error) {
	deals, err := decodeKitDeals(raw)
	if err != nil {
		return nil, err
	}
	_, p, err := shamir.CombineReshare(deals, nil, 0)
	return p, err
}

func decodeKitDeals(raw []fsm.Deal) ([]*shamir.Deal, error) {
	out := make([]*shamir.Deal, len(raw))
	for i, r := range raw {
		d, err := decodeDeal(r.Deal)
		if err != nil {
			return nil, fmt.Errorf("recovery deal of %d: %w", r.Dealer, err)
		}
		out[i] = d
	}
	return out, nil
}

// mayDealRecovery reports whether this node, a holder of the epoch, has
// its part of the kit to deal.
func (n *Node) mayDealRecovery() (clusterID string, epoch uint64, kit *fsm.RecoveryKit, me *fsm.Node) {
	n.fsm.Read(func(s *fsm.State) {
		m := s.Nodes[n.id.NodeID]
		if m == nil || !m.Holder || m.Leaving || !s.MayDealRecovery(m.Index) {
			return
		}
		c, k := *m, *s.Recovery
		k.Officers = slices.Clone(k.Officers)
		clusterID, epoch, kit, me = s.ClusterID, s.Epoch, &k, &c
	})
	return
}

// dealRecovery deals this node's share of the epoch to the kit's officers.
func (n *Node) dealRecovery(ctx context.Context) error {
	clusterID, epoch, kit, me := n.mayDealRecovery()
	if kit == nil {
		return nil
	}
	share := n.shares.current(epoch)
	if share == nil {
		return fmt.Errorf("no share of epoch %d to deal to the recovery officers", epoch)
	}
	defer share.Erase()
	rs := make([]shamir.Recipient, len(kit.Officers))
	for i, o := range kit.Officers {
		rs[i] = shamir.Recipient{Index: uint32(i + 1), EncPub: o.EncKey}
	}
	d, err := shamir.NewReshareDeal(rand.Reader, share, kit.Threshold, rs, RecoveryContext(clusterID, epoch))
	if err != nil {
		return err
	}
	if h := recoveryTestHooks.Load(); h != nil && h.tamper != nil {
		h.tamper(n.id.NodeID, d)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	sg, err := n.nodeCommand(&fsm.Command{Type: fsm.TypeRecoveryDeal, RecoveryDeal: &fsm.RecoveryDeal{Epoch: epoch, Dealer: me.Index, Deal: b}})
	if err != nil {
		return err
	}
	_, err = n.submit(ctx, sg)
	return err
}

func recoveryStatus(s *fsm.State) *api.RecoveryKitStatus {
	k := s.Recovery
	if k == nil {
		return nil
	}
	st := &api.RecoveryKitStatus{Officers: len(k.Officers), Threshold: k.Threshold, Epoch: k.Epoch, Dealt: len(k.Deals), Needed: k.Needed, Usable: k.Usable()}
	if st.Needed == 0 {
		st.Needed = s.Threshold
	}
	return st
}

// The officers' side.

// KitOpening is what an officer finds in a kit: its sub-share of each
// holder's deal that opened and checked out, and why each other did not.
type KitOpening struct {
	Officer uint32
	Sub     map[uint32][]byte // dealer -> the officer's sub-share
	Bad     map[uint32]error  // dealer -> why its sub-share is unusable
}

// Erase wipes the sub-shares.
func (o *KitOpening) Erase() {
	for _, b := range o.Sub {
		clear(b)
	}
}

// OpenRecoveryKit opens officer's sub-shares of the kit in a state (from a
// backup that VerifyBackup checked), with the officer's encryption key.
func OpenRecoveryKit(s *fsm.State, officer uint32, encPriv []byte) (*KitOpening, error) {
	k := s.Recovery
	switch {
	case k == nil:
		return nil, Errorf(KindNotFound, "the cluster has no recovery kit")
	case !k.Usable():
		return nil, Errorf(KindConflict, "the recovery kit was never usable: %d of %d holders dealt it", len(k.Deals), k.Needed)
	case officer < 1 || int(officer) > len(k.Officers):
		return nil, Errorf(KindInvalid, "officer %d: the kit has officers 1 to %d", officer, len(k.Officers))
	}
	pub, err := shamir.EncryptionPublicKey(encPriv)
	if err != nil {
		return nil, Errorf(KindInvalid, "the officer's key: %v", err)
	}
	if !bytes.Equal(pub, k.Officers[officer-1].EncKey) {
		return nil, Errorf(KindDenied, "this key is not officer %d's (%s)", officer, k.Officers[officer-1].Name)
	}
	o := &KitOpening{Officer: officer, Sub: map[uint32][]byte{}, Bad: map[uint32]error{}}
	ctx := RecoveryContext(s.ClusterID, k.Epoch)
	for _, r := range k.Deals {
		d, err := decodeDeal(r.Deal)
		if err == nil {
			var sub []byte
			if sub, err = shamir.OpenDeal(d, officer, encPriv, ctx); err == nil {
				o.Sub[r.Dealer] = sub
				continue
			}
		}
		o.Bad[r.Dealer] = err
	}
	return o, nil
}

// KitShare combines an officer's share over dealers (t of the kit's
// dealers, whose sub-shares opened for every officer taking part), checked
// against the kit's public polynomial over the same dealers, whose constant
// term must be the cluster key.
func KitShare(s *fsm.State, o *KitOpening, dealers []uint32) (*shamir.Share, *shamir.PublicPoly, error) {
	k := s.Recovery
	if k == nil || !k.Usable() {
		return nil, nil, Errorf(KindConflict, "the cluster has no usable recovery kit")
	}
	raw, err := kitDeals(k, dealers, s.Threshold)
	if err != nil {
		return nil, nil, err
	}
	deals, err := decodeKitDeals(raw)
	if err != nil {
		return nil, nil, err
	}
	mine := map[uint32][]byte{}
	for _, d := range dealers {
		sub, ok := o.Sub[d]
		if !ok {
			return nil, nil, Errorf(KindInvalid, "officer %d's sub-share from holder %d did not open: %v", o.Officer, d, o.Bad[d])
		}
		mine[d] = sub
	}
	sh, p, err := shamir.CombineReshare(deals, mine, o.Officer)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(p.PublicKey(), s.PublicKey()) {
		sh.Erase()
		return nil, nil, Errorf(KindInvalid, "the kit over holders %v does not share the cluster key", dealers)
	}
	return sh, p, nil
}

// kitDeals picks dealers' deals from the kit: exactly t distinct dealers
// that dealt it.
func kitDeals(k *fsm.RecoveryKit, dealers []uint32, t int) ([]fsm.Deal, error) {
	if len(dealers) != t {
		return nil, Errorf(KindInvalid, "a kit share combines exactly %d holders' deals, got %d", t, len(dealers))
	}
	var out []fsm.Deal
	for i, d := range dealers {
		if slices.Contains(dealers[:i], d) {
			return nil, Errorf(KindInvalid, "holder %d named twice", d)
		}
		r := k.DealOf(d)
		if r == nil {
			return nil, Errorf(KindNotFound, "holder %d did not deal the kit (dealers: %v)", d, kitDealers(k))
		}
		out = append(out, *r)
	}
	return out, nil
}

func kitDealers(k *fsm.RecoveryKit) []uint32 {
	out := make([]uint32, len(k.Deals))
	for i, d := range k.Deals {
		out[i] = d.Dealer
	}
	return out
}

// KitPoly is the kit's public polynomial over dealers.
func KitPoly(s *fsm.State, dealers []uint32) (*shamir.PublicPoly, error) {
	k := s.Recovery
	if k == nil || !k.Usable() {
		return nil, Errorf(KindConflict, "the cluster has no usable recovery kit")
	}
	raw, err := kitDeals(k, dealers, s.Threshold)
	if err != nil {
		return nil, err
	}
	return kitPoly(raw)
}

// RebuildRecipient is a new node that receives a share at the rebuild:
// its share index and encryption public key.
type RebuildRecipient = shamir.Recipient

// RebuildDeal is an officer's deal of its kit share to the new nodes,
// threshold t.
func RebuildDeal(clusterID string, kitShare *shamir.Share, t int, to []RebuildRecipient) (*shamir.Deal, error) {
	return shamir.NewReshareDeal(rand.Reader, kitShare, t, to, RebuildContext(clusterID))
}

// ErrTooFewOfficers is returned by CombineRebuild when fewer than k
// officers' deals check out.
var ErrTooFewOfficers = errors.New("too few recovery officers")

// CombineRebuild is a new node's share of the rebuilt cluster key: it
// checks every officer's deal against the kit's public polynomial (so a
// deal from anyone but an officer, or of another key, is refused), needs k
// that check out from distinct officers, opens its sub-share of each, and
// combines them. The share it returns is of the cluster key kit.PublicKey()
// and checks out against the returned polynomial (threshold t).
func CombineRebuild(clusterID string, kit *shamir.PublicPoly, deals []*shamir.Deal, t int, to []RebuildRecipient, me uint32, encPriv []byte) (*shamir.Share, *shamir.PublicPoly, error) {
	idx := make([]uint32, len(to))
	for i, r := range to {
		idx[i] = r.Index
	}
	var good []*shamir.Deal
	var refused []error
	for _, d := range deals {
		if d == nil || slices.ContainsFunc(good, func(g *shamir.Deal) bool { return g.Dealer == d.Dealer }) {
			continue
		}
		if err := shamir.VerifyReshareDeal(d, kit, t, idx); err != nil {
			refused = append(refused, err)
			continue
		}
		good = append(good, d)
	}
	k := kit.Threshold()
	if len(good) < k {
		return nil, nil, fmt.Errorf("%w: %d officers' deals check out against the kit, %d are needed (%v)", ErrTooFewOfficers, len(good), k, errors.Join(refused...))
	}
	good = good[:k]
	ctx := RebuildContext(clusterID)
	mine := map[uint32][]byte{}
	defer func() {
		for _, b := range mine {
			clear(b)
		}
	}()
	for _, d := range good {
		sub, err := shamir.OpenDeal(d, me, encPriv, ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("officer %d's deal to %d: %w", d.Dealer, me, err)
		}
		mine[d.Dealer] = sub
	}
	sh, p, err := shamir.CombineReshare(good, mine, me)
	if err != nil {
		return nil, nil, err
	}
	if !shamir.SamePublicKey(kit, p) {
		sh.Erase()
		return nil, nil, errors.New("the rebuilt sharing has another key than the kit's")
	}
	return sh, p, nil
}

// CheckRebuild checks the officers' deals of a rebuild against the kit's
// public polynomial over holders, and returns the rebuilt sharing's.
func (dealChecker) CheckRebuild(kit *fsm.RecoveryKit, holders []uint32, raw [][]byte, t int, indexes []uint32) ([][]byte, error) {
	if len(holders) != kit.Needed {
		return nil, fmt.Errorf("the kit is combined over %d holders, got %d", kit.Needed, len(holders))
	}
	var picked []fsm.Deal
	for i, h := range holders {
		if slices.Contains(holders[:i], h) {
			return nil, fmt.Errorf("holder %d named twice", h)
		}
		d := kit.DealOf(h)
		if d == nil {
			return nil, fmt.Errorf("holder %d did not deal the kit", h)
		}
		picked = append(picked, *d)
	}
	kp, err := kitPoly(picked)
	if err != nil {
		return nil, err
	}
	if kp.Threshold() != kit.Threshold {
		return nil, fmt.Errorf("the kit's polynomial has %d commitments, want %d", kp.Threshold(), kit.Threshold)
	}
	var good []*shamir.Deal
	for i, b := range raw {
		d, err := decodeDeal(b)
		if err != nil {
			return nil, fmt.Errorf("officer deal %d: %w", i+1, err)
		}
		if d.Dealer < 1 || int(d.Dealer) > len(kit.Officers) {
			return nil, fmt.Errorf("officer deal %d names officer %d; the kit has 1 to %d", i+1, d.Dealer, len(kit.Officers))
		}
		if slices.ContainsFunc(good, func(g *shamir.Deal) bool { return g.Dealer == d.Dealer }) {
			return nil, fmt.Errorf("officer %d dealt twice", d.Dealer)
		}
		if err := shamir.VerifyReshareDeal(d, kp, t, indexes); err != nil {
			return nil, fmt.Errorf("officer %d's deal: %w", d.Dealer, err)
		}
		good = append(good, d)
	}
	if len(good) < kit.Threshold {
		return nil, fmt.Errorf("%w: %d officers' deals, the kit needs %d", ErrTooFewOfficers, len(good), kit.Threshold)
	}
	_, p, err := shamir.CombineReshare(good[:kit.Threshold], nil, 0)
	if err != nil {
		return nil, err
	}
	return p.Commits, nil
}

// RebuildMembership is what the operator gives a new node at a rebuild:
// the cluster's CA certificate, the node's certificate from it, and the
// gossip key (keyctl's credentials hold them).
type RebuildMembership struct {
	CACert, NodeCert, GossipKey []byte
}

// RebuildNode makes a new node a member of the cluster a backup holds,
// offline, after fewer than t of its nodes survived: the new node was
// started once (it has its identity) and stopped. It verifies the backup
// against the cluster key pin, applies the admin-signed rebuild entry
// after its last entry (every replica checks the officers' deals against
// the kit when it replays it), checks that the entry names this node with
// its identity's keys, combines the node's share of the same cluster key
// from the officers' deals, and writes the share, the membership and the
// state as the node's Raft snapshot, with the rebuilt members as the Raft
// configuration. Every new node is given the same backup and entry, and
// reaches the same state; they elect a leader when started. Refused, it
// writes nothing.
func RebuildNode(dataDir, nodeID string, backup, pin []byte, rebuild *fsm.Signed, ms RebuildMembership) (*BackupInfo, error) {
	var id identity
	if err := readJSON(filepath.Join(dataDir, identityFile), &id); err != nil {
		return nil, fmt.Errorf("%s: no node identity (%v): start the new node once, unjoined, to make it", dataDir, err)
	}
	if id.NodeID != nodeID {
		return nil, fmt.Errorf("data directory %s belongs to node %q, not %q", dataDir, id.NodeID, nodeID)
	}
	if _, err := os.Stat(filepath.Join(dataDir, membershipFile)); err == nil {
		return nil, fmt.Errorf("%s: node %s is already a member of a cluster: a rebuild makes new nodes", dataDir, nodeID)
	}
	dir := filepath.Join(dataDir, raftDir)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s holds Raft data: a rebuild starts from none", dir)
	}
	info, f, err := VerifyBackup(backup, pin)
	if err != nil {
		return nil, err
	}
	entry, err := json.Marshal(rebuild)
	if err != nil {
		return nil, err
	}
	var cmd fsm.Command
	if err := json.Unmarshal(rebuild.Payload, &cmd); err != nil || cmd.Rebuild == nil {
		return nil, errors.New("the rebuild entry carries no rebuild")
	}
	// The entry's time is the admin's signing time, not this machine's
	// clock: every new node applies the same entry at the same time, so
	// their states are the same, and a rebuild taken hours after the
	// signing is as fresh as the signing.
	index := info.Index + 1
	if res := f.Apply(index, time.Unix(0, cmd.IssuedAt), entry); res.Error != nil {
		return nil, fmt.Errorf("the rebuild entry: %s", res.Error.Message)
	}
	var (
		me      *fsm.Node
		kp      *shamir.PublicPoly
		servers []raft.Server
		epoch   uint64
		poly    [][]byte
	)
	f.Read(func(s *fsm.State) {
		if m := s.Nodes[nodeID]; m != nil {
			c := *m
			me = &c
		}
		kp, err = KitPoly(s, cmd.Rebuild.Holders)
		for nid, nd := range s.Nodes {
			servers = append(servers, raft.Server{ID: raft.ServerID(nid), Address: raft.ServerAddress(nd.RaftAddr)})
		}
		epoch, poly = s.Epoch, slices.Clone(s.Poly)
	})
	if err != nil {
		return nil, err
	}
	if me == nil {
		return nil, fmt.Errorf("the rebuild does not name node %s", nodeID)
	}
	if !bytes.Equal(me.SignKey, id.SignKey.Public().(ed25519.PublicKey)) || !bytes.Equal(me.EncKey, id.EncPub) {
		return nil, fmt.Errorf("the rebuild names node %s with other keys than its identity's", nodeID)
	}
	encPriv := id.Keyring[hex.EncodeToString(id.EncPub)]
	if encPriv == nil {
		return nil, fmt.Errorf("node %s has no private key for its encryption key", nodeID)
	}
	var deals []*shamir.Deal
	for _, b := range cmd.Rebuild.Deals {
		d, err := decodeDeal(b)
		if err != nil {
			return nil, err
		}
		deals = append(deals, d)
	}
	to := make([]RebuildRecipient, len(cmd.Rebuild.Nodes))
	for i, nd := range cmd.Rebuild.Nodes {
		to[i] = RebuildRecipient{Index: nd.Index, EncPub: nd.EncKey}
	}
	sh, p, err := CombineRebuild(info.ClusterID, kp, deals, cmd.Rebuild.Threshold, to, me.Index, encPriv)
	if err != nil {
		return nil, err
	}
	defer sh.Erase()
	if !(&shamir.PublicPoly{Commits: poly}).Equal(p) {
		return nil, errors.New("the node's combined sharing is not the one the state records")
	}
	shares, err := openShareStore(dataDir)
	if err != nil {
		return nil, err
	}
	if err := shares.setCurrent(&epochShare{Epoch: epoch, Round: index, Share: &shamir.Share{Index: sh.Index, Value: bytes.Clone(sh.Value)}, EncKey: bytes.Clone(id.EncPub)}); err != nil {
		return nil, err
	}
	m := membership{ClusterID: info.ClusterID, CACert: ms.CACert, NodeCert: ms.NodeCert, GossipKey: ms.GossipKey, ClusterKey: bytes.Clone(pin)}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	store, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	if err != nil {
		return nil, err
	}
	_, trans := raft.NewInmemTransport("")
	sink, err := store.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{Servers: servers}, index, trans)
	if err != nil {
		return nil, err
	}
	if err := (snapshot{snap: f.Capture(), log: slog.Default()}).Persist(sink); err != nil {
		return nil, fmt.Errorf("writing the Raft snapshot: %w", err)
	}
	if err := writeJSON(filepath.Join(dataDir, membershipFile), &m); err != nil {
		return nil, err
	}
	info.Index, info.Epoch = index, epoch
	info.Members = info.Members[:0]
	for _, s := range servers {
		info.Members = append(info.Members, string(s.ID))
	}
	return info, nil
}
