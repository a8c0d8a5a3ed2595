package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// A holder answers release after release of the same key at the same
// epoch, and each partial's value s_i*R is the same for a key version:
// it was the costliest part of a partial, with s_i*G, which is the same
// for every partial of the epoch. So the share store keeps, in memory
// only, beside the epoch's share: the share made ready for proofs
// (shamir.Prover, with s_i*G) and this holder's value s_i*R of each key it
// answered for. A value is as secret as the partial it goes into (t of
// them open the key), and no more than the share it was computed from,
// which the node holds in the same memory; it is erased:
//
//   - with the share, when the epoch ends (a reshare, the node's removal:
//     epochShare.erase);
//   - as soon as the node applies a change to its key: a destroy, a
//     revoke, a new version (compare-and-swap, rotation), an expiry, or a
//     new key under the name (forgetStaleValues);
//   - and a value is used only for the key it was computed for: the same
//     key ID, version and ciphertext point R.
//
// It also keeps this holder's opened share of each transit key version it
// answered for (made ready for partials), erased the same ways: with the
// epoch's cache, and as soon as the node applies a change to its key that
// removes the version or puts it below min_decryption_version, changes
// its sharing, or makes the key another, not
// active or expired (forgetStale); it is used only for the same key ID,
// version and sharing.
//
// Every check a holder makes is made before any of this is used: the
// cache changes what a partial costs, never whether one is given.

// heldValuesMax bounds the values kept per epoch; when full, it starts
// again empty.
const heldValuesMax = 4096

// holderCache is the epoch's share ready for partials and the values,
// and this holder's shares of transit key versions, opened and made ready
// for partials (transitProver).
type holderCache struct {
	prover  *shamir.Prover
	mu      sync.Mutex
	values  map[string]heldValue   // by key name; nil once erased
	transit map[string]heldTransit // by fsm.SharingRef; nil once erased
}

// heldTransit is this holder's opened share of one transit key version:
// used only for the same key ID, version and sharing (its epoch and every
// commitment), and erased as the values are (forgetStale).
type heldTransit struct {
	name, id string
	version  uint64
	sharing  string // the sharing's epoch and commitments
	prover   *shamir.Prover
}

// heldValue is s_i*R for one key version.
type heldValue struct {
	name    string
	id      string
	version uint64
	r       []byte
	v       []byte
}

func (h *holderCache) erase() {
	if h == nil {
		return
	}
	h.mu.Lock()
	for _, hv := range h.values {
		clear(hv.v)
	}
	h.values = nil
	for _, ht := range h.transit {
		ht.prover.Erase()
	}
	h.transit = nil
	h.mu.Unlock()
	h.prover.Erase()
}

// partial is this holder's partial of key for rctx, with a proof that
// carries its commitments (shamir.Prover.Partial).
func (h *holderCache) partial(rand io.Reader, key *fsm.Key, rctx []byte) (*shamir.Partial, error) {
	var v [shamir.PointSize]byte
	defer clear(v[:])
	if err := h.value(key, &v); err != nil {
		return nil, err
	}
	return h.prover.Partial(rand, key.R, v[:], rctx)
}

// sealValue is this holder's value of key sealed to the client's
// ephemeral key eph with its share, for the release context rctx, bound
// to key's ciphertext as this holder's state has it
// (shamir.Prover.SealToEphemeral; share mode), and its share index.
func (h *holderCache) sealValue(key *fsm.Key, eph, rctx []byte) (uint32, []byte, error) {
	var v [shamir.PointSize]byte
	defer clear(v[:])
	if err := h.value(key, &v); err != nil {
		return 0, nil, err
	}
	i := h.prover.Index()
	ctHash := shamir.CiphertextHash(&shamir.Ciphertext{R: key.R, Sealed: key.Sealed})
	sealed, err := h.prover.SealToEphemeral(eph, ctHash, fsm.PartialSealInfo(rctx, i), v[:])
	return i, sealed, err
}

// value puts this holder's value s_i*R of key in v: the one held for the
// same key ID, version and R, or computed and held.
func (h *holderCache) value(key *fsm.Key, v *[shamir.PointSize]byte) error {
	h.mu.Lock()
	hv, ok := h.values[key.Name]
	ok = ok && hv.id == key.ID && hv.version == key.Version && bytes.Equal(hv.r, key.R)
	if ok {
		copy(v[:], hv.v)
	}
	h.mu.Unlock()
	if !ok {
		val, err := h.prover.Value(key.R)
		if err != nil {
			return err
		}
		copy(v[:], val)
		h.mu.Lock()
		if h.values != nil {
			if len(h.values) >= heldValuesMax {
				for _, old := range h.values {
					clear(old.v)
				}
				clear(h.values)
			}
			if old, ok := h.values[key.Name]; ok {
				clear(old.v)
			}
			h.values[key.Name] = heldValue{name: key.Name, id: key.ID, version: key.Version, r: bytes.Clone(key.R), v: val}
		} else {
			clear(val)
		}
		h.mu.Unlock()
	}
	return nil
}

// holderCache returns the cache of the share of epoch, made on first
// use, or nil when the node holds no share of epoch.
func (s *shareStore) holderCache(epoch uint64) (*holderCache, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.data.Current
	if c == nil || c.Epoch != epoch || c.Share == nil {
		return nil, nil
	}
	if c.hot == nil {
		p, err := shamir.NewProver(c.Share)
		if err != nil {
			return nil, err
		}
		c.hot = &holderCache{prover: p, values: map[string]heldValue{}, transit: map[string]heldTransit{}}
	}
	return c.hot, nil
}

// transitSharingID names a transit version's sharing: its epoch and
// every commitment (a reshare keeps the public key, not the shares).
func transitSharingID(fk *fsm.FROSTKey) string {
	b := binary.BigEndian.AppendUint64(nil, fk.Epoch)
	for _, c := range fk.Commits {
		b = append(b, c...)
	}
	return string(b)
}

// transitProver returns this holder's share of version tv of the transit
// key key ready for partials, from the cache or from open (which opens it,
// after every check of the request was made), keeping it. The caller
// calls done when it no longer uses it: that erases it if the cache
// could not keep it; the cache erases the ones it keeps. One erased by
// the cache during a request (its key changed) makes no more partials.
func (h *holderCache) transitProver(key *fsm.Key, tv *fsm.TransitVersion, open func() (*shamir.Share, error)) (_ *shamir.Prover, done func(), _ error) {
	ref, sid := fsm.SharingRef(key.Name, tv.Version), transitSharingID(tv.Sharing)
	if h != nil {
		h.mu.Lock()
		ht, ok := h.transit[ref]
		h.mu.Unlock()
		if ok && ht.id == key.ID && ht.version == tv.Version && ht.sharing == sid {
			return ht.prover, func() {}, nil
		}
	}
	share, err := open()
	if err != nil {
		return nil, nil, err
	}
	p, err := shamir.NewProver(share)
	share.Erase()
	if err != nil {
		return nil, nil, Errorf(KindInternal, "the share of transit version %d: %v", tv.Version, err)
	}
	if h == nil {
		// No share of the epoch (a holder of transit versions only):
		// this request's alone.
		return p, p.Erase, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.transit == nil {
		// The cache was erased meanwhile: this request's alone.
		return p, p.Erase, nil
	}
	if len(h.transit) >= heldValuesMax {
		for _, old := range h.transit {
			old.prover.Erase()
		}
		clear(h.transit)
	}
	if old, ok := h.transit[ref]; ok {
		old.prover.Erase()
	}
	h.transit[ref] = heldTransit{name: key.Name, id: key.ID, version: tv.Version, sharing: sid, prover: p}
	return p, func() {}, nil
}

// currentCache is the current epoch and its holder cache: nil if the node
// holds no share or has made no partial of the epoch yet.
func (s *shareStore) currentCache() (epoch uint64, h *holderCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.data.Current; c != nil {
		return c.Epoch, c.hot
	}
	return 0, nil
}

// held lists what the cache holds, without the secrets: the keys it holds
// values of, and the transit key versions it holds shares of.
func (h *holderCache) held() (values []heldValue, transit []heldTransit) {
	if h == nil {
		return nil, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hv := range h.values {
		values = append(values, heldValue{name: hv.name, id: hv.id, version: hv.version, r: hv.r})
	}
	for _, ht := range h.transit {
		transit = append(transit, heldTransit{name: ht.name, id: ht.id, version: ht.version, sharing: ht.sharing})
	}
	return values, transit
}

// forget erases the values and transit shares listed (as held lists
// them) that the cache still holds. A cache erased meanwhile (its epoch
// ended) holds nothing.
func (h *holderCache) forget(values []heldValue, transit []heldTransit) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range values {
		if hv, ok := h.values[k.name]; ok && hv.id == k.id && hv.version == k.version && bytes.Equal(hv.r, k.r) {
			clear(hv.v)
			delete(h.values, k.name)
		}
	}
	for _, k := range transit {
		ref := fsm.SharingRef(k.name, k.version)
		if ht, ok := h.transit[ref]; ok && ht.id == k.id && ht.sharing == k.sharing {
			ht.prover.Erase()
			delete(h.transit, ref)
		}
	}
}

// forgetStaleValues erases a held value as soon as this node applies a
// change to its key (above), and at the latest 5 s after its key expires.
func (n *Node) forgetStaleValues(ctx context.Context, _ *runtime) {
	for {
		_, changed := n.watch()
		n.forgetStale(now())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(5 * time.Second):
		}
	}
}

// forgetStale erases the held values whose key is no longer the one they
// were computed for, at the state this node has applied.
func (n *Node) forgetStale(at time.Time) {
	epoch, h := n.shares.currentCache()
	values, transit := h.held()
	if len(values)+len(transit) == 0 {
		return
	}
	var staleValues []heldValue
	var staleTransit []heldTransit
	n.fsm.Read(func(s *fsm.State) {
		expired := func(k *fsm.Key) bool { return k.ExpiresAt != 0 && at.UnixNano() >= k.ExpiresAt }
		for _, hv := range values {
			k := s.Keys[hv.name]
			if s.Epoch != epoch || k == nil || k.ID != hv.id || k.State != fsm.KeyActive || k.Version != hv.version ||
				!bytes.Equal(k.R, hv.r) || expired(k) {
				staleValues = append(staleValues, hv)
			}
		}
		for _, ht := range transit {
			k := s.Keys[ht.name]
			var tv *fsm.TransitVersion
			if k != nil && k.Transit() != nil {
				tv = k.Transit().Version(ht.version)
			}
			if s.Epoch != epoch || k == nil || k.ID != ht.id || k.State != fsm.KeyActive || tv == nil || tv.Sharing == nil ||
				ht.version < k.Transit().MinDecryptionVersion ||
				transitSharingID(tv.Sharing) != ht.sharing || expired(k) {
				staleTransit = append(staleTransit, ht)
			}
		}
	})
	h.forget(staleValues, staleTransit)
}

// holderPartial is this node's partial of key at epoch for rctx, from the
// epoch's holder cache.
func (n *Node) holderPartial(epoch uint64, key *fsm.Key, rctx []byte) (*shamir.Partial, error) {
	h, err := n.holderCacheOf(epoch)
	if err != nil {
		return nil, err
	}
	return h.partial(rand.Reader, key, rctx)
}

// holderCacheOf is the cache of this node's share of epoch; an error when
// it holds none.
func (n *Node) holderCacheOf(epoch uint64) (*holderCache, error) {
	h, err := n.shares.holderCache(epoch)
	if err != nil {
		return nil, Errorf(KindInternal, "the share of epoch %d: %v", epoch, err)
	}
	if h == nil {
		return nil, Errorf(KindNoQuorum, "node %s holds no share of epoch %d", n.id.NodeID, epoch)
	}
	return h, nil
}
