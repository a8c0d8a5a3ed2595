// Package kxd is keyquorum's kxd gateway: kxd's protocol, as stock kxc
// speaks it, on a listener of its own, with kxd's notifications (an e-mail
// and a hook on every access; notify.go).
//
// kxc turns kxd://host[:port]/a/b into GET https://host:19840/v1/a/b over
// TLS with a client certificate, and prints the body of a 200 answer.
// Handler answers it the way kxd does, with kxd's checks in kxd's order
// and kxd's status codes and messages:
//
//	path not clean under /v1/, or with ".."   406 "Invalid key path"
//	no such key                               404 "Unknown key"
//	peer address not in allowed_hosts         403 "Host not allowed"
//	leaf certificate not allowed              403 "No allowed certificate found"
//	the hook refused (Notifier.HookVeto)      403 "Prevented by hook"
//	granted                                   200 application/octet-stream, the key's bytes
//
// Error bodies are the message and a newline, as text/plain. Errors of the
// cluster (no quorum, the rules refuse) keep their own status (the REST
// API's, vocab.Kind.HTTPStatus) and safe message.
//
// Where it differs from kxd, on purpose: only the leaf certificate is an
// identity. kxd verifies every certificate the client sends, so a client
// holding its own key could send someone else's allowed certificate after
// its own and be let in; here the further certificates can only be
// intermediates toward a CA of allowed_clients. A failing mail relay does
// not refuse the key (kxd answers 500 "Error sending notification"): it is
// logged. kxd's rules are enforced by the node that terminates the
// connection, which is all a legacy protocol allows, with the admission
// check every legacy gateway shares (cluster.Admission: hosts, networks,
// certificates, rate); the key itself is
// released by a quorum (Keys.Release).
package kxd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/keyquorum/keyquorum/client/kxddir"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// Port is the TCP port kxd listens on and kxc dials when the URL has none.
const Port = 19840

// kxd's answers; kxc prints them after `HTTP error "<status>" getting key: `.
const (
	kxdInvalidPath = "Invalid key path"
	kxdUnknownKey  = "Unknown key"
	kxdHostDenied  = "Host not allowed"
	kxdNoCert      = "No allowed certificate found"
	kxdHookRefused = "Prevented by hook"
)

// Policy is a kxd key's access rules, as stored with the key in the
// cluster: the type keyctl's import reads them into (kxddir.Parse).
type Policy = kxddir.Policy

// Keys is what the kxd endpoint needs from the cluster. Paths are the
// key's path without "/v1/", such as "host1/disk".
type Keys interface {
	// Admit decides whether the client may use the key, by the key's
	// rules (cluster.Admission, the same check for every legacy
	// gateway). A refusal is a *cluster.AdmitError, whose Rule the
	// handler turns into kxd's answer; any other error is the cluster's.
	Admit(ctx context.Context, path string, client Client) (*Admitted, error)
	// Release releases a key by quorum, for a client Admit admitted. The
	// handler owns the returned slice and wipes it once written.
	Release(ctx context.Context, path string, client Client, admitted *Admitted) ([]byte, error)
}

// Client is the client a key is released to.
type Client struct {
	Cert  *x509.Certificate   // the leaf certificate the client proved it holds
	Chain []*x509.Certificate // every certificate the client sent, leaf first
	Addr  netip.AddrPort      // the TCP peer
}

// Admitted is what Admit lets through: who to tell of the access, and the
// chains that allow the client's leaf.
type Admitted struct {
	EmailTo []string
	Chains  [][]*x509.Certificate
	// access is the rules the client was admitted by, for ClusterKeys to
	// compare with the rules at the release's linearizable read.
	access *fsm.Access
}

type kxdHandler struct {
	keys   Keys
	notify *Notifier
	log    *slog.Logger
	now    func() time.Time
}

// Handler serves GET /v1/<path> with kxd's checks in kxd's order (see
// the table above), and notifies through notify (which may be nil) on
// every granted access. It must be the root handler of its own listener
// (kxd's port, Port by default) with TLSConfig: a ServeMux in front
// would redirect the paths it thinks unclean before they are checked.
// log may be nil.
func Handler(keys Keys, notify *Notifier, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &kxdHandler{keys: keys, notify: notify, log: log, now: time.Now}
}

// TLSConfig returns a copy of base, which supplies the server
// certificate (kxc checks it against --server_cert and the URL's host, so
// it needs a subject alternative name for that host), for the kxd
// listener: TLS 1.2 at least (kxc is Go and negotiates 1.3), and a client
// certificate required but not verified by TLS: Handler checks the leaf
// against each key's allowed_clients.
func TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS12
	c.ClientAuth = tls.RequireAnyClientCert
	return c
}

func kxdError(w http.ResponseWriter, status int, msg string) {
	// http.Error writes exactly kxd's body: the message and a newline, as
	// text/plain.
	http.Error(w, msg, status)
}

func (h *kxdHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.log.With("remote", r.RemoteAddr, "url_path", kxdOneLine(r.URL.Path))
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		kxdError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	keyPath, ok := kxddir.KeyPath(r.URL.Path)
	if !ok {
		log.Info("kxd: refused", "reason", kxdInvalidPath)
		kxdError(w, http.StatusNotAcceptable, kxdInvalidPath)
		return
	}
	log = h.log.With("remote", r.RemoteAddr, "key", keyPath)
	ctx := r.Context()

	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	var presented []*x509.Certificate
	if r.TLS != nil {
		presented = r.TLS.PeerCertificates
	}
	client := Client{Chain: presented, Addr: peer}
	if len(presented) > 0 {
		client.Cert = presented[0]
	}
	admitted, err := h.keys.Admit(ctx, keyPath, client)
	if err != nil {
		var refused *cluster.AdmitError
		switch {
		case errors.As(err, &refused) && refused.Rule == cluster.RuleHosts:
			log.Info("kxd: refused", "reason", kxdHostDenied)
			kxdError(w, http.StatusForbidden, kxdHostDenied)
		case errors.As(err, &refused) && refused.Rule == cluster.RuleCertificate:
			log.Info("kxd: refused", "reason", kxdNoCert, "detail", err.Error())
			kxdError(w, http.StatusForbidden, kxdNoCert)
		default:
			h.clusterError(w, log, err)
		}
		return
	}
	leaf := client.Cert
	log = log.With("client", kxdSubject(leaf), "client_sha256", kxdFingerprint(leaf))

	access := Access{Path: keyPath, Client: leaf, Addr: peer, EmailTo: admitted.EmailTo, Chains: admitted.Chains, Time: h.now()}
	if h.notify.vetoes() {
		if err := h.notify.runHook(ctx, access); err != nil {
			log.Warn("kxd: refused", "reason", kxdHookRefused, "detail", err.Error())
			kxdError(w, http.StatusForbidden, kxdHookRefused)
			return
		}
	}

	key, err := h.keys.Release(ctx, keyPath, client, admitted)
	if err != nil {
		h.clusterError(w, log, err)
		return
	}
	defer clear(key)

	// The cluster has released the key: tell of it even if the client
	// hangs up now.
	if err := h.notify.Notify(context.WithoutCancel(ctx), access); err != nil {
		log.Warn("kxd: notification failed; the key is served anyway", "error", err.Error())
	}
	log.Info("kxd: key released")

	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Length", strconv.Itoa(len(key)))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(key)
}

// clusterError answers an error of Policy or Release: kxd's 404 for
// an unknown key, otherwise the kind's status and the error's safe message.
func (h *kxdHandler) clusterError(w http.ResponseWriter, log *slog.Logger, err error) {
	kind := cluster.KindOf(err)
	if kind == cluster.KindNotFound {
		log.Info("kxd: refused", "reason", kxdUnknownKey)
		kxdError(w, http.StatusNotFound, kxdUnknownKey)
		return
	}
	log.Warn("kxd: cluster error", "kind", string(kind), "error", err.Error())
	msg := "Internal error"
	var e *cluster.Error
	if kind != cluster.KindInternal && errors.As(err, &e) {
		msg = kxdOneLine(e.Message)
	}
	kxdError(w, kind.HTTPStatus(), msg)
}
