// Package confirm is the confirmation of a view of the cluster shared by
// the Go SDK (client.Confirm) and the machine agent (agent.ConfirmPin): a
// node's status is one node's word, so every member it lists is asked for
// its own status at its own API address, authenticated by its certificate
// of the cluster CA naming its node ID and carrying the identity key the
// others list for it; the members must agree on the cluster, the key
// epoch, the threshold, the cluster key and every holder's index and key;
// and every holder of the view is challenged with a fresh nonce to prove
// it holds its share of the view's key (cluster/api possession.go).
//
// The package makes no calls itself: a caller brings its own transport
// (an Asker) and its own errors. It imports neither package cluster nor
// anything that links a node, so client and agent may use it.
package confirm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
)

// View is what a confirmation compares of a status.
type View struct {
	ClusterID string
	Epoch     uint64
	Threshold int
	PublicKey []byte
	// Holders are the share holders of the epoch, by node ID.
	Holders []api.MemberStatus
	// Applied is the applied index of the status the view was read from.
	// It is not compared (Differs): a member whose status is behind it may
	// not have applied the view yet, and Ask asks it again (CatchUp).
	Applied uint64
}

// ViewOf is the view a status reports.
func ViewOf(st *api.Status) *View {
	v := &View{ClusterID: st.ClusterID, Epoch: st.Epoch, Threshold: st.Threshold, PublicKey: st.PublicKey, Applied: st.Applied}
	for _, m := range st.Members {
		if m.Holder {
			v.Holders = append(v.Holders, api.MemberStatus{ID: m.ID, Index: m.Index, Holder: true, SignKey: m.SignKey, APIAddr: m.APIAddr})
		}
	}
	sort.Slice(v.Holders, func(i, j int) bool { return v.Holders[i].ID < v.Holders[j].ID })
	return v
}

// Sane checks a view on its own: a threshold of a majority of its
// holders, at distinct indexes, with Ed25519 keys.
func (v *View) Sane() error {
	n := len(v.Holders)
	if n == 0 || v.Threshold < n/2+1 || v.Threshold > n {
		return fmt.Errorf("threshold %d of %d holders", v.Threshold, n)
	}
	seen := map[uint32]bool{}
	for _, h := range v.Holders {
		if h.Index == 0 || seen[h.Index] || len(h.SignKey) != ed25519.PublicKeySize {
			return fmt.Errorf("holder %s with index %d and a %d-byte key", h.ID, h.Index, len(h.SignKey))
		}
		seen[h.Index] = true
	}
	return nil
}

// Differs says how another member's view o differs from v, or nil.
func (v *View) Differs(o *View) error {
	switch {
	case o.ClusterID != v.ClusterID:
		return fmt.Errorf("cluster %q, not %q", o.ClusterID, v.ClusterID)
	case o.Epoch != v.Epoch:
		return fmt.Errorf("key epoch %d, not %d", o.Epoch, v.Epoch)
	case !bytes.Equal(o.PublicKey, v.PublicKey):
		return fmt.Errorf("cluster public key %x, not %x", o.PublicKey, v.PublicKey)
	case o.Threshold != v.Threshold:
		return fmt.Errorf("threshold %d, not %d", o.Threshold, v.Threshold)
	case len(o.Holders) != len(v.Holders):
		return fmt.Errorf("%d share holders, not %d", len(o.Holders), len(v.Holders))
	}
	for i, h := range o.Holders {
		w := v.Holders[i]
		if h.ID != w.ID || h.Index != w.Index || !bytes.Equal(h.SignKey, w.SignKey) {
			return fmt.Errorf("holder %s at index %d with key %x, where the first node lists %s at %d with key %x",
				h.ID, h.Index, h.SignKey, w.ID, w.Index, w.SignKey)
		}
	}
	return nil
}

// Holder is the holder v lists with node ID id, or nil.
func (v *View) Holder(id string) *api.MemberStatus {
	for i := range v.Holders {
		if v.Holders[i].ID == id {
			return &v.Holders[i]
		}
	}
	return nil
}

// NodeCert checks that a certificate (verified against the cluster CA
// already) is a node's: node id's if id is set, with key signKey if that
// is set. It returns the node ID the certificate names.
func NodeCert(cert *x509.Certificate, id string, signKey []byte) (string, error) {
	role, certID, err := pki.CertRole(cert)
	if err != nil {
		return "", err
	}
	if role != pki.RoleNode || (id != "" && certID != id) {
		return "", fmt.Errorf("presents the certificate of %s %q, not of node %q", role, certID, id)
	}
	if len(signKey) > 0 {
		if k, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !k.Equal(ed25519.PublicKey(signKey)) {
			return "", fmt.Errorf("its certificate's key is not the identity key listed for node %s", certID)
		}
	}
	return certID, nil
}

// VerifyNode is a tls.Config VerifyConnection that checks the peer's
// certificate with NodeCert and, if certID is not nil, stores the node ID
// it names there.
func VerifyNode(id string, signKey []byte, certID *string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		cid, err := NodeCert(cs.PeerCertificates[0], id, signKey)
		if err != nil {
			return err
		}
		if certID != nil {
			*certID = cid
		}
		return nil
	}
}

// Asker makes a confirmation's calls to one member, at the member's own
// API address, checking that its certificate is node m.ID's with key
// signKey if that is set (VerifyNode).
type Asker interface {
	// Status is member m's status; it must be m's own.
	Status(ctx context.Context, m api.MemberStatus, signKey []byte) (*api.Status, error)
	// Possession is holder m's answer to the challenge nonce.
	Possession(ctx context.Context, m api.MemberStatus, signKey, nonce []byte) (*api.Possession, error)
}

// Result is what the members said of a view.
type Result struct {
	// Agree are the members that confirmed the view (and, holders, proved
	// their shares), by node ID, sorted.
	Agree []string
	// Disagree says, sorted, who did not and why: "ID at ADDR: why".
	Disagree []string
	// Proven is the most distinct share indexes proven against one
	// polynomial of the view's threshold whose constant term is its key
	// (api.PossessionCheck).
	Proven int
}

// CatchUp is how long Ask waits for a member that is behind the view:
// followers apply what the leader committed a heartbeat or so after it, so
// a view read from one node (the leader, say) just after a change, such as
// the first key epoch, may not be on the others yet. A member whose status
// differs from the view and whose applied index is below the view's is
// asked again every catchUpPoll until it shows the view, has applied the
// view's index, or CatchUp has passed. A member that lies about its index
// gains nothing by it: it delays the answer by CatchUp at most, as it could
// by answering slowly.
const (
	CatchUp     = 5 * time.Second
	catchUpPoll = 100 * time.Millisecond
)

// Ask asks every member of members that is not leaving and has an API
// address, concurrently, for its status, which must be view want (a member
// behind the view is given CatchUp to apply it), and challenges each
// holder of want with nonce (api.PossessionNonceSize fresh random bytes).
func Ask(ctx context.Context, a Asker, members []api.MemberStatus, want *View, nonce []byte) *Result {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		res    = &Result{}
		proofs = &api.PossessionCheck{ClusterID: want.ClusterID, Epoch: want.Epoch, Threshold: want.Threshold, PublicKey: want.PublicKey}
	)
	for _, m := range members {
		if m.Leaving || m.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := want.Holder(m.ID)
			var signKey []byte
			if h != nil {
				signKey = h.SignKey
			}
			err := showsView(ctx, a, m, signKey, want)
			var p *api.Possession
			if err == nil && h != nil {
				p, err = a.Possession(ctx, m, signKey, nonce)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil && h != nil {
				err = proofs.Add(p, h.ID, h.Index, nonce)
			}
			if err != nil {
				res.Disagree = append(res.Disagree, fmt.Sprintf("%s at %s: %v", m.ID, m.APIAddr, err))
				return
			}
			res.Agree = append(res.Agree, m.ID)
		}()
	}
	wg.Wait()
	sort.Strings(res.Agree)
	sort.Strings(res.Disagree)
	res.Proven = proofs.Proven()
	return res
}

// showsView asks member m for its status until it shows view want, and
// says how it differs if it does not: at once if m has applied want's
// index (or a later one), else when CatchUp has passed or ctx ends.
func showsView(ctx context.Context, a Asker, m api.MemberStatus, signKey []byte, want *View) error {
	deadline := time.Now().Add(CatchUp)
	for {
		st, err := a.Status(ctx, m, signKey)
		if err != nil {
			return err
		}
		err = want.Differs(ViewOf(st))
		if err == nil || st.Applied >= want.Applied {
			return err
		}
		err = fmt.Errorf("%w (it has applied index %d, the view is at %d)", err, st.Applied, want.Applied)
		if !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(catchUpPoll):
		}
	}
}
