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
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/confirm"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/vocab"
)

// Confirming the pin at enroll (keyagent enroll --confirm), for an
// operator who would rather not copy the key by hand: the cluster's
// status is asked of every member at its own API address, each
// authenticated by its certificate of the cluster CA naming its node ID
// (and carrying the identity key the others list for it), and the pin is
// the cluster ID and public key that t of them agree on: the check of
// package cluster/confirm, which the Go SDK's client.Confirm makes too.
// Every holder of the view is also challenged with a fresh nonce and must
// prove it holds its share of the view's key (cluster/api
// possession.go): t proofs at distinct indexes,
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
			if err := usable(confirm.ViewOf(st)); err != nil {
				return nil, &Error{Kind: vocab.KindBadReply, Server: addr, Message: fmt.Sprintf("node %s reports %v", st.Node, err)}
			}
			continue
		}
		if err := confirm.ViewOf(first).Differs(confirm.ViewOf(st)); err != nil {
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
	want := confirm.ViewOf(first)
	nonce := make([]byte, api.PossessionNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, errorf(vocab.KindInternal, "drawing a nonce: %v", err)
	}
	res := confirm.Ask(ctx, memberAsker{cf}, first.Members, want, nonce)
	if len(res.Agree) < want.Threshold {
		return nil, errorf(vocab.KindBadReply,
			"only %d of the %d members needed confirm node %s's view of the cluster (%s, key epoch %d, threshold %d): refusing to pin it; %s",
			len(res.Agree), want.Threshold, first.Node, want.ClusterID, want.Epoch, want.Threshold, strings.Join(res.Disagree, "; "))
	}
	if res.Proven < want.Threshold {
		return nil, errorf(vocab.KindBadReply,
			"only %d of the %d holders needed prove they hold a share of cluster key %x in node %s's view (%s, key epoch %d, threshold %d): refusing to pin it; %s",
			res.Proven, want.Threshold, want.PublicKey, first.Node, want.ClusterID, want.Epoch, want.Threshold, strings.Join(res.Disagree, "; "))
	}
	return &Confirmed{ClusterID: want.ClusterID, PublicKey: want.PublicKey, Epoch: want.Epoch, Threshold: want.Threshold, Confirmers: res.Agree}, nil
}

// usable checks the first server's view on its own: a cluster ID, a
// cluster key, and a sane threshold and holders (confirm.View.Sane).
func usable(v *confirm.View) error {
	if v.ClusterID == "" {
		return errors.New("no cluster ID")
	}
	if len(v.PublicKey) != ClusterKeySize {
		return errors.New("no cluster public key yet (wait for the first key epoch)")
	}
	return v.Sane()
}

// confirmer makes the status calls.
type confirmer struct {
	roots   *x509.CertPool
	cert    tls.Certificate
	timeout time.Duration
}

// memberAsker makes ConfirmPin's calls to the members (confirm.Asker),
// each error on one line.
type memberAsker struct{ cf *confirmer }

func (a memberAsker) Status(ctx context.Context, m api.MemberStatus, signKey []byte) (*api.Status, error) {
	st, err := a.cf.status(ctx, m.APIAddr, m.ID, signKey)
	if err != nil {
		return nil, errors.New(oneLine(err.Error()))
	}
	return st, nil
}

func (a memberAsker) Possession(ctx context.Context, m api.MemberStatus, signKey, nonce []byte) (*api.Possession, error) {
	p, err := a.cf.possession(ctx, m.APIAddr, m.ID, signKey, nonce)
	if err != nil {
		return nil, errors.New(oneLine(err.Error()))
	}
	return p, nil
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
		MinVersion:       tls.VersionTLS13,
		RootCAs:          cf.roots,
		ServerName:       host,
		Certificates:     []tls.Certificate{cf.cert},
		VerifyConnection: confirm.VerifyNode(id, signKey, &certID),
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
