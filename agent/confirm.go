package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/vocab"
)

// Confirming the pin at enroll (keyagent enroll --confirm), for an
// operator who would rather not copy the key by hand: the cluster's
// status is asked of every member at its own API address, each
// authenticated by its certificate of the cluster CA naming its node ID
// (and carrying the identity key the others list for it), and the pin is
// the cluster ID and public key that t of them agree on, as the Go SDK's
// client.Confirm does (package agent may not import package client, so
// this is the same check, small). Every holder of the view is also
// challenged with a fresh nonce and must prove it holds its share of the
// view's key (cluster/api possession.go): t proofs at distinct indexes,
// so one node that lists itself as the only holder, t=1, would have to
// know the cluster secret. The status and the challenge are operator's
// calls: the operator's certificate is used for them, once, and is not
// recorded.

// statusPath is the node's status call.
const statusPath = "/v1/cluster/status"

// ConfirmOptions is how ConfirmPin reaches the cluster.
type ConfirmOptions struct {
	// Servers are the nodes asked first, host:port; every one that
	// answers must agree with the others.
	Servers []string
	// CA is the cluster CA certificate (a PEM file's path, or the PEM):
	// required, as the members' certificates must be the cluster's.
	CA string
	// Operator is an operator's TLS client certificate.
	Operator tls.Certificate
	// TimeoutPerNode bounds each call (DefaultTimeoutPerNode if zero).
	TimeoutPerNode time.Duration
}

// Confirmed is the cluster as t members agree it is.
type Confirmed struct {
	ClusterID string
	PublicKey []byte
	Epoch     uint64
	Threshold int
	// Confirmers are the members that agreed, by node ID.
	Confirmers []string
}

// LoadOperatorCert reads an operator's certificate and Ed25519 key (PEM
// files, as keyctl cluster init writes them).
func LoadOperatorCert(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readFile(certFile, "the operator certificate")
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile(keyFile, "the operator key")
	if err != nil {
		return tls.Certificate{}, err
	}
	defer clear(keyPEM)
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return tls.Certificate{}, errorf(vocab.KindConfig, "operator certificate %s: %v", certFile, err)
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, errorf(vocab.KindConfig, "operator key %s: %v", keyFile, err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(leaf.PublicKey) {
		return tls.Certificate{}, errorf(vocab.KindConfig, "operator key %s is not the key of certificate %s", keyFile, certFile)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func readFile(path, what string) ([]byte, error) {
	if path == "" {
		return nil, errorf(vocab.KindConfig, "no file for %s", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf(vocab.KindConfig, "reading %s: %v", what, err)
	}
	return b, nil
}

// ConfirmPin returns the cluster ID and public key that t members of the
// cluster, each asked at its own address and authenticated as itself,
// agree on. Every configured server that answers must agree too. A view
// that fewer than t members confirm, or a server that disagrees, is a
// bad_reply error naming who differs.
func ConfirmPin(ctx context.Context, o ConfirmOptions) (*Confirmed, error) {
	if o.CA == "" {
		return nil, errorf(vocab.KindConfig, "confirming the pin needs the cluster CA certificate (--ca)")
	}
	if len(o.Servers) == 0 {
		return nil, errorf(vocab.KindConfig, "confirming the pin needs a server (--server HOST:PORT)")
	}
	roots, err := loadRoots(o.CA)
	if err != nil {
		return nil, err
	}
	if o.TimeoutPerNode <= 0 {
		o.TimeoutPerNode = DefaultTimeoutPerNode
	}
	cf := &confirmer{roots: roots, cert: o.Operator, timeout: o.TimeoutPerNode}

	// The configured servers: all that answer must agree.
	var first *api.Status
	var unreached []string
	var worst *Error
	for _, s := range o.Servers {
		addr, err := normalizeAddr(s)
		if err != nil {
			return nil, &Error{Kind: vocab.KindConfig, Message: err.Error()}
		}
		st, err := cf.status(ctx, addr, "", nil)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Kind != vocab.KindUnreachable && worst == nil {
				worst = e
			}
			unreached = append(unreached, err.Error())
			continue
		}
		if first == nil {
			first = st
			if err := viewOf(st).usable(); err != nil {
				return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("node %s reports %v", st.Node, err)}
			}
			continue
		}
		if err := viewOf(first).differs(viewOf(st)); err != nil {
			return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf(
				"node %s reports %v, where node %s reports otherwise: refusing to pin either", st.Node, err, first.Node)}
		}
	}
	if first == nil {
		if worst != nil {
			return nil, worst
		}
		return nil, errorf(vocab.KindUnreachable, "no server answered: %s", strings.Join(unreached, "; "))
	}

	// t members of the first answer's view, each at its own address, and
	// t of its holders proving their shares of the view's key.
	want := viewOf(first)
	nonce := make([]byte, api.PossessionNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, errorf(vocab.KindInternal, "drawing a nonce: %v", err)
	}
	var (
		mu       sync.Mutex
		agree    []string
		disagree []string
		wg       sync.WaitGroup
		proofs   = &api.PossessionCheck{ClusterID: want.clusterID, Epoch: want.epoch, Threshold: want.threshold, PublicKey: want.publicKey}
	)
	for _, m := range first.Members {
		if m.Leaving || m.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := want.holder(m.ID)
			var signKey []byte
			if h != nil {
				signKey = h.SignKey
			}
			st, err := cf.status(ctx, m.APIAddr, m.ID, signKey)
			if err == nil {
				err = want.differs(viewOf(st))
			}
			var p *api.Possession
			if err == nil && h != nil {
				p, err = cf.possession(ctx, m.APIAddr, m.ID, signKey, nonce)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil && h != nil {
				err = proofs.Add(p, h.ID, h.Index, nonce)
			}
			if err != nil {
				disagree = append(disagree, fmt.Sprintf("%s at %s: %v", m.ID, m.APIAddr, oneLine(err.Error())))
				return
			}
			agree = append(agree, m.ID)
		}()
	}
	wg.Wait()
	sort.Strings(agree)
	sort.Strings(disagree)
	if len(agree) < want.threshold {
		return nil, errorf(vocab.KindBadReply,
			"only %d of the %d members needed confirm node %s's view of the cluster (%s, key epoch %d, threshold %d): refusing to pin it; %s",
			len(agree), want.threshold, first.Node, want.clusterID, want.epoch, want.threshold, strings.Join(disagree, "; "))
	}
	if n := proofs.Proven(); n < want.threshold {
		return nil, errorf(vocab.KindBadReply,
			"only %d of the %d holders needed prove they hold a share of cluster key %x in node %s's view (%s, key epoch %d, threshold %d): refusing to pin it; %s",
			n, want.threshold, want.publicKey, first.Node, want.clusterID, want.epoch, want.threshold, strings.Join(disagree, "; "))
	}
	return &Confirmed{ClusterID: want.clusterID, PublicKey: want.publicKey, Epoch: want.epoch, Threshold: want.threshold, Confirmers: agree}, nil
}

// view is what ConfirmPin compares of a status.
type view struct {
	clusterID string
	epoch     uint64
	threshold int
	publicKey []byte
	holders   []api.MemberStatus // by ID
}

func viewOf(st *api.Status) *view {
	v := &view{clusterID: st.ClusterID, epoch: st.Epoch, threshold: st.Threshold, publicKey: st.PublicKey}
	for _, m := range st.Members {
		if m.Holder {
			v.holders = append(v.holders, api.MemberStatus{ID: m.ID, Index: m.Index, SignKey: m.SignKey})
		}
	}
	sort.Slice(v.holders, func(i, j int) bool { return v.holders[i].ID < v.holders[j].ID })
	return v
}

// usable checks a view on its own: a cluster key, no resharing round
// under way, and a threshold of a majority of its holders at distinct
// indexes with Ed25519 keys.
func (v *view) usable() error {
	if v.clusterID == "" {
		return errors.New("no cluster ID")
	}
	if len(v.publicKey) != ClusterKeySize {
		return errors.New("no cluster public key yet (wait for the first key epoch)")
	}
	n := len(v.holders)
	if n == 0 || v.threshold < n/2+1 || v.threshold > n {
		return fmt.Errorf("threshold %d of %d holders", v.threshold, n)
	}
	seen := map[uint32]bool{}
	for _, h := range v.holders {
		if h.Index == 0 || seen[h.Index] || len(h.SignKey) != ed25519.PublicKeySize {
			return fmt.Errorf("holder %s with index %d and a %d-byte key", h.ID, h.Index, len(h.SignKey))
		}
		seen[h.Index] = true
	}
	return nil
}

// differs says how another member's view o differs from v, or nil.
func (v *view) differs(o *view) error {
	switch {
	case o.clusterID != v.clusterID:
		return fmt.Errorf("cluster %q, not %q", o.clusterID, v.clusterID)
	case !bytes.Equal(o.publicKey, v.publicKey):
		return fmt.Errorf("cluster public key %x, not %x", o.publicKey, v.publicKey)
	case o.epoch != v.epoch:
		return fmt.Errorf("key epoch %d, not %d", o.epoch, v.epoch)
	case o.threshold != v.threshold:
		return fmt.Errorf("threshold %d, not %d", o.threshold, v.threshold)
	case len(o.holders) != len(v.holders):
		return fmt.Errorf("%d share holders, not %d", len(o.holders), len(v.holders))
	}
	for i, h := range o.holders {
		w := v.holders[i]
		if h.ID != w.ID || h.Index != w.Index || !bytes.Equal(h.SignKey, w.SignKey) {
			return fmt.Errorf("holder %s at index %d, where the first node lists %s at %d", h.ID, h.Index, w.ID, w.Index)
		}
	}
	return nil
}

// holder is the holder v lists with node ID id, or nil.
func (v *view) holder(id string) *api.MemberStatus {
	for i := range v.holders {
		if v.holders[i].ID == id {
			return &v.holders[i]
		}
	}
	return nil
}

// confirmer makes the status calls.
type confirmer struct {
	roots   *x509.CertPool
	cert    tls.Certificate
	timeout time.Duration
}

// status gets the status of the node at addr. Its certificate must be a
// node certificate of the cluster CA: of node id if id is set, with key
// signKey if that is set; and the status must be that node's.
func (cf *confirmer) status(ctx context.Context, addr, id string, signKey []byte) (*api.Status, error) {
	body, certID, err := cf.call(ctx, addr, id, signKey, http.MethodGet, statusPath, nil)
	if err != nil {
		return nil, err
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("the answer is not a status: %v", err)}
	}
	if st.Node != certID {
		return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("answers as node %q with the certificate of node %q", st.Node, certID)}
	}
	return &st, nil
}

// possession challenges holder id at addr (with key signKey) with nonce.
func (cf *confirmer) possession(ctx context.Context, addr, id string, signKey, nonce []byte) (*api.Possession, error) {
	req, err := json.Marshal(&api.PossessionRequest{Nonce: nonce})
	if err != nil {
		return nil, err
	}
	body, _, err := cf.call(ctx, addr, id, signKey, http.MethodPost, api.PossessionPath, req)
	if err != nil {
		return nil, err
	}
	var p api.Possession
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("the answer is not a proof of possession: %v", err)}
	}
	return &p, nil
}

// call makes one call to the node at addr and returns the body of its
// 200 answer and the node ID its certificate names. Its certificate must
// be a node certificate of the cluster CA: of node id if id is set, with
// key signKey if that is set.
func (cf *confirmer) call(ctx context.Context, addr, id string, signKey []byte, method, path string, body []byte) ([]byte, string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("member address: %v", err)}
	}
	var certID string
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      cf.roots,
		ServerName:   host,
		Certificates: []tls.Certificate{cf.cert},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			leaf := cs.PeerCertificates[0]
			role, cid, err := pki.CertRole(leaf)
			if err != nil {
				return err
			}
			if role != pki.RoleNode || (id != "" && cid != id) {
				return fmt.Errorf("presents the certificate of %s %q, not of node %q", role, cid, id)
			}
			if len(signKey) > 0 {
				if k, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !k.Equal(ed25519.PublicKey(signKey)) {
					return fmt.Errorf("its certificate's key is not the identity key listed for node %s", cid)
				}
			}
			certID = cid
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
	if err != nil {
		return nil, "", &Error{Kind: vocab.KindConfig, Server: addr, Message: err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "keyagent")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", &Error{Kind: vocab.KindUnreachable, Server: addr, Message: err.Error()}
	}
	defer resp.Body.Close()
	rep, err := readReply(resp, resp.Proto)
	if err != nil {
		return nil, "", &Error{Kind: vocab.KindUnreachable, Server: addr, Message: err.Error()}
	}
	if rep.status != http.StatusOK {
		return nil, "", serverErrorAt(addr, path, rep)
	}
	return rep.body, certID, nil
}
