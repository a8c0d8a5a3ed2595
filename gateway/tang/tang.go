// Package tang is keyquorum's Tang gateway: the Tang protocol, as stock
// clevis speaks it (docs/protocols.md, "Tang, as stock clevis uses it"), served
// from keys held as t-of-n shares. The node mounts Handler on its API mux
// (at Patterns); ClusterKeys adapts the node to it. The advertisement and
// JWK formats are package client/jose's, which keyctl makes keys with.
//
// Endpoints, relative to a base URL that is either the root or
// /tang/NAME (a per-key base URL; NAME is a key name and may contain '/'):
//
//	GET  BASE/adv        the advertisement of the key (at the root: the
//	GET  BASE/adv/       node's default Tang key)
//	GET  BASE/adv/THP    the same, if THP (S256 or S1) is the thumbprint of
//	                     the key that signed it; 404 otherwise
//	POST BASE/rec/KID    body: the JWK of a point X (application/jwk+json);
//	                     answer: the JWK of s*X, alg ECMR, key_ops deriveKey
//
// The advertisement is a JWS in flattened JSON serialization, signed once
// with an ES256 key made for it and then discarded: clevis checks that the
// advertised verify key signed the advertisement and, when given a thp,
// that it is the trusted key, but never any freshness, so nothing needs to
// hold a signing key afterwards.
//
// Status codes follow tangd: 400 for a body that is not a P-256 EC JWK of a
// point on the curve or whose alg is not ECMR, 403 for key_ops without
// deriveKey, 404 for an unknown path, key or kid, 405 for a wrong method,
// and the cluster's error kinds otherwise (see tangStatus). Error bodies
// are empty: clevis reads only the status.
package tang

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/keyquorum/keyquorum/client/jose"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

const (
	// tangAdvContentType is what tangd serves the advertisement as.
	tangAdvContentType = "application/jose+json"
	// tangJWKContentType is the type of a recovery request and answer.
	tangJWKContentType = "application/jwk+json"
	// maxTangToken bounds a thumbprint or kid in a path.
	maxTangToken = 128
	// tangPrefix is the per-key base path.
	tangPrefix = "/tang/"
)

// Patterns are the http.ServeMux patterns that Handler serves:
// mount it with mux.Handle(p, h) for each.
var Patterns = []string{"/adv", "/adv/", "/rec/", tangPrefix}

// Keys is what the Tang endpoints need from the cluster. Errors are
// cluster errors; their kind chooses the status (tangStatus).
type Keys interface {
	// Adv returns the advertisement (JWS JSON) of the key named name;
	// name "" means the node's default Tang key. If thp != "" the
	// advertisement's signing-key thumbprint (S256 or S1) must match, else
	// the error is not_found.
	Adv(ctx context.Context, name, thp string) ([]byte, error)
	// Recover returns s*X (65-byte uncompressed P-256) for the key
	// whose exchange kid is kid (and, when name != "", whose name is
	// name), for a client at addr; x has been checked: a point on P-256,
	// not the identity. An unknown kid is not_found; the kid of a signing
	// key, or a client or key not allowed, is denied.
	Recover(ctx context.Context, name, kid string, x []byte, addr netip.Addr) ([]byte, error)
}

// Handler serves GET /adv, /adv/, /adv/{thp}, POST /rec/{kid}, and the
// same under /tang/{name}/ (a per-key base URL for clevis, e.g.
// https://node:port/tang/disks/web1; name may contain '/'). Mount it on
// each of Patterns. log gets one line per refused or failed request,
// never key material.
func Handler(keys Keys, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &tangHandler{keys: keys, log: log}
}

type tangHandler struct {
	keys Keys
	log  *slog.Logger
}

// tangRoute is a parsed request path.
type tangRoute struct {
	rec  bool   // POST /rec/KID rather than GET /adv
	name string // key name, "" for the default key
	arg  string // thp for /adv, kid for /rec
}

// parseTangPath maps a URL path to a route. A per-key path is
// /tang/NAME/adv[/[THP]] or /tang/NAME/rec/KID, NAME possibly containing
// '/': the endpoint is recognized from the end of the path, so a key named
// "a/adv" is /tang/a/adv/adv. THP and KID are base64url thumbprints, never
// "adv" or "rec".
func parseTangPath(p string) (tangRoute, bool) {
	name := ""
	if rest, ok := strings.CutPrefix(p, tangPrefix); ok {
		var tail string
		name, tail, ok = cutTangEndpoint(rest)
		if !ok || fsm.CheckKeyName(name) != nil {
			return tangRoute{}, false
		}
		p = tail
	}
	switch {
	case p == "/adv" || p == "/adv/":
		return tangRoute{name: name}, true
	case strings.HasPrefix(p, "/adv/"):
		thp := p[len("/adv/"):]
		return tangRoute{name: name, arg: thp}, tangTokenOK(thp)
	case strings.HasPrefix(p, "/rec/"):
		kid := p[len("/rec/"):]
		return tangRoute{rec: true, name: name, arg: kid}, tangTokenOK(kid)
	}
	return tangRoute{}, false
}

// cutTangEndpoint splits NAME/adv, NAME/adv/, NAME/adv/THP or NAME/rec/KID
// into NAME and the endpoint path ("/adv", "/adv/THP", ...).
func cutTangEndpoint(rest string) (name, tail string, ok bool) {
	if n, ok := strings.CutSuffix(rest, "/adv"); ok {
		return n, "/adv", true
	}
	if n, ok := strings.CutSuffix(rest, "/adv/"); ok {
		return n, "/adv/", true
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	head, last := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(head, '/')
	if j < 0 {
		return "", "", false
	}
	switch head[j+1:] {
	case "adv", "rec":
		return head[:j], head[j:] + "/" + last, true
	}
	return "", "", false
}

// tangTokenOK accepts a thumbprint or kid: 1 to 128 base64url characters.
func tangTokenOK(s string) bool {
	if s == "" || len(s) > maxTangToken {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (h *tangHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := parseTangPath(r.URL.Path)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if route.rec {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		h.recover(w, r, route)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	h.advertise(w, r, route)
}

func (h *tangHandler) advertise(w http.ResponseWriter, r *http.Request, route tangRoute) {
	adv, err := h.keys.Adv(r.Context(), route.name, route.arg)
	if err != nil {
		h.fail(w, r, route, err)
		return
	}
	w.Header().Set("Content-Type", tangAdvContentType)
	w.WriteHeader(http.StatusOK)
	w.Write(adv)
}

func (h *tangHandler) recover(w http.ResponseWriter, r *http.Request, route tangRoute) {
	body, err := io.ReadAll(io.LimitReader(r.Body, jose.MaxJWKSize+1))
	if err != nil {
		h.refuse(w, r, route, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	k, err := jose.ParseJWK(body)
	if err == nil {
		err = k.CheckUse(jose.JWKAlgECMR, jose.JWKOpDerive)
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, jose.ErrJWKKeyOps) {
			status = http.StatusForbidden
		}
		h.refuse(w, r, route, status, err.Error())
		return
	}
	x, err := k.Point()
	if err != nil {
		h.refuse(w, r, route, http.StatusBadRequest, err.Error())
		return
	}
	y, err := h.keys.Recover(r.Context(), route.name, route.arg, x, tangClientAddr(r))
	if err != nil {
		h.fail(w, r, route, err)
		return
	}
	reply, err := jose.NewJWK(y, jose.JWKAlgECMR, jose.JWKOpDerive)
	if err != nil {
		h.fail(w, r, route, cluster.Errorf(cluster.KindInternal, "the cluster returned an invalid point: %v", err))
		return
	}
	out, err := json.Marshal(reply)
	if err != nil {
		h.fail(w, r, route, err)
		return
	}
	w.Header().Set("Content-Type", tangJWKContentType)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// tangClientAddr is the TCP peer's address, IPv4-mapped addresses unmapped;
// the zero Addr if RemoteAddr does not parse.
func tangClientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// tangStatus maps a cluster error to a status: not_found 404, denied 403,
// invalid 400, no_quorum, unknown_outcome and not_initialized 503 (clevis
// only needs to know it failed; a Tang client cannot act on the
// difference), anything else 500.
func tangStatus(err error) int {
	switch cluster.KindOf(err) {
	case cluster.KindNotFound:
		return http.StatusNotFound
	case cluster.KindDenied:
		return http.StatusForbidden
	case cluster.KindInvalid:
		return http.StatusBadRequest
	case cluster.KindNoQuorum, cluster.KindUnknownOutcome, cluster.KindNotInitialized:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers a Keys error.
func (h *tangHandler) fail(w http.ResponseWriter, r *http.Request, route tangRoute, err error) {
	status := tangStatus(err)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "tang request refused", h.attrs(r, route, status, err.Error())...)
	w.WriteHeader(status)
}

// refuse answers a malformed request.
func (h *tangHandler) refuse(w http.ResponseWriter, r *http.Request, route tangRoute, status int, reason string) {
	h.log.Debug("tang request refused", h.attrs(r, route, status, reason)...)
	w.WriteHeader(status)
}

func (h *tangHandler) attrs(r *http.Request, route tangRoute, status int, reason string) []any {
	op, what := "adv", "thp"
	if route.rec {
		op, what = "rec", "kid"
	}
	return []any{"op", op, "key", route.name, what, route.arg, "client", r.RemoteAddr, "status", status, "reason", reason}
}
