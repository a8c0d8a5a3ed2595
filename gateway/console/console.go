// Package console is the operator's web console that every node serves at
// /ui/ on its API address: the cluster, keys and who can see them,
// machines and their waiting sessions, approvals, passkeys and the log of
// decisions, as server-rendered HTML (html/template) with one small
// script for WebAuthn. Nothing is fetched from elsewhere: the stylesheet
// and the script are embedded, and a strict Content-Security-Policy
// allows only them.
//
// The console reads through the node (cluster.ConsoleService) and can
// ask, never approve: an approval or a denial is a command the operator's
// passkey signs in the browser (a WebAuthn assertion whose challenge is
// fsm.CommandChallenge of the exact command), which the console submits
// and every replica verifies when it applies it. Signing in is the same
// assertion over a sign_in command, checked by this node alone: it opens
// a session (a random cookie) for reading on this node, and authorizes
// nothing a share holder relies on.
//
// Routes, under Prefix:
//
//	GET  /ui/                  the cluster: members, leader, health, epoch, n, t, failure tolerance
//	GET  /ui/keys              keys; /ui/keys/NAME one key and its custody
//	GET  /ui/machines          machines and the sessions waiting for an approval
//	GET  /ui/approvals         approvals and denials in force
//	GET  /ui/passkeys          register a passkey; the passkeys registered
//	GET  /ui/audit             this node's audit trail and the log it applied
//	GET  /ui/signin            sign in with a passkey
//	POST /ui/api/signin/begin  -> a sign_in command to sign
//	POST /ui/api/signin/finish the assertion -> a session cookie
//	POST /ui/api/register      a new credential -> the request an admin signs (keyctl passkey add)
//	POST /ui/api/prepare       an approval or denial -> the command to sign
//	POST /ui/api/submit        the command and its assertion -> submitted to the log
//	POST /ui/signout
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// Prefix is where the console is served; Patterns what to mount.
const Prefix = "/ui/"

// Patterns are the console's mux patterns on the API server.
var Patterns = []string{Prefix}

// CSP is the Content-Security-Policy of every console response: only
// the console's own script, stylesheet and calls; no inline code, no
// frames, forms posting only to the console.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Session lifetime and limits.
const (
	sessionTTL  = 30 * time.Minute
	maxSessions = 1024
	// cookiePrefix and the node's ID name the session cookie: a cookie is
	// the host's, whatever the port, and nodes on one host (localhost)
	// keep sessions of their own.
	cookiePrefix = "__Host-keyquorum-console-"
	maxBody      = 64 << 10
	// decisions shown on the audit page.
	auditRows = 200
	// defaultDenial is how long a denial lasts when the form gives none.
	defaultDenial = time.Hour
)

//go:embed templates/*.html static/*
var files embed.FS

// Console serves the pages. Create it with New.
type Console struct {
	svc  cluster.ConsoleService
	log  *slog.Logger
	tmpl map[string]*template.Template
	mux  *http.ServeMux
	now  func() time.Time

	mu       sync.Mutex
	sessions map[string]session
}

type session struct {
	op      *fsm.Operator
	expires time.Time
}

// New makes the console of a node.
func New(svc cluster.ConsoleService, log *slog.Logger) *Console {
	c := &Console{svc: svc, log: log, now: time.Now, sessions: map[string]session{}, tmpl: map[string]*template.Template{}}
	funcs := template.FuncMap{"when": when, "stamp": stamp, "words": Words, "join": strings.Join, "b64": base64.StdEncoding.EncodeToString}
	for _, page := range []string{"cluster", "keys", "key", "machines", "approvals", "passkeys", "audit", "signin", "error"} {
		c.tmpl[page] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+page+".html"))
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/{$}", c.page("cluster", c.cluster))
	m.HandleFunc("GET /ui/keys", c.page("keys", c.keys))
	m.HandleFunc("GET /ui/keys/{name...}", c.page("key", c.key))
	m.HandleFunc("GET /ui/machines", c.page("machines", c.machines))
	m.HandleFunc("GET /ui/approvals", c.page("approvals", c.approvals))
	m.HandleFunc("GET /ui/audit", c.page("audit", c.audit))
	m.HandleFunc("GET /ui/passkeys", c.passkeys)
	m.HandleFunc("GET /ui/signin", c.signin)
	m.HandleFunc("GET /ui/static/", c.static)
	m.HandleFunc("POST /ui/api/signin/begin", c.api(c.signinBegin))
	m.HandleFunc("POST /ui/api/signin/finish", c.api(c.signinFinish))
	m.HandleFunc("POST /ui/api/register", c.api(c.register))
	m.HandleFunc("POST /ui/api/prepare", c.api(c.signedIn(c.prepare)))
	m.HandleFunc("POST /ui/api/submit", c.api(c.signedIn(c.submit)))
	m.HandleFunc("POST /ui/signout", c.signout)
	c.mux = m
	return c
}

// ServeHTTP sets the console's security headers on every response.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) cookie() string { return cookiePrefix + c.svc.Identity().NodeID }

// origin is the console's own origin as the browser sees it.
func origin(r *http.Request) string { return "https://" + r.Host }

// rpID is the relying party ID of a passkey registered or used from r:
// the host the browser asked, without its port.
func rpID(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		return r.Host
	}
	return host
}

// operator is the operator of r's session, or nil.
func (c *Console) operator(r *http.Request) *fsm.Operator {
	ck, err := r.Cookie(c.cookie())
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[ck.Value]
	if !ok || c.now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	return s.op
}

func (c *Console) openSession(w http.ResponseWriter, op *fsm.Operator) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := c.now()
	c.mu.Lock()
	for k, s := range c.sessions {
		if now.After(s.expires) {
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= maxSessions {
		c.mu.Unlock()
		return vocab.Errorf(vocab.KindConflict, "this node has %d console sessions open; sign in on another node or later", maxSessions)
	}
	c.sessions[token] = session{op: op, expires: now.Add(sessionTTL)}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: c.cookie(), Value: token, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	return nil
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	if ck, err := r.Cookie(c.cookie()); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: c.cookie(), Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// sameOrigin reports whether a state-changing request comes from the
// console's own pages: browsers send Origin on every POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return subtle.ConstantTimeCompare([]byte(o), []byte(origin(r))) == 1
}

// view is what every page template gets.
type view struct {
	Title    string
	Page     string
	Operator *fsm.Operator
	Node     string
	Error    string
	Data     any
}

// page serves a page that needs a session: without one it sends the
// browser to sign in.
func (c *Console) page(name string, load func(ctx context.Context, r *http.Request, op *fsm.Operator) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op := c.operator(r)
		if op == nil {
			http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
			return
		}
		data, err := load(r.Context(), r, op)
		c.render(w, name, op, data, err)
	}
}

var titles = map[string]string{"cluster": "Cluster", "keys": "Keys", "key": "Key", "machines": "Machines", "approvals": "Approvals",
	"passkeys": "Passkeys", "audit": "Audit", "signin": "Sign in", "error": "Error"}

func (c *Console) render(w http.ResponseWriter, name string, op *fsm.Operator, data any, err error) {
	v := view{Title: titles[name], Page: name, Operator: op, Node: c.svc.Identity().NodeID, Data: data}
	status := http.StatusOK
	if err != nil {
		v.Error = Words(err)
		status = cluster.KindOf(err).HTTPStatus()
		if data == nil {
			name = "error"
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.tmpl[name].Execute(w, v); err != nil {
		c.log.Warn("console page", "page", name, "err", err)
	}
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	b, err := files.ReadFile(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	w.Write(b)
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	c.render(w, "signin", c.operator(r), nil, nil)
}

// api serves a JSON call from the console's script: same origin only,
// bounded body, errors as {"kind", "message", "words"}.
func (c *Console) api(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var out any
		var err error
		if !sameOrigin(r) {
			err = vocab.Errorf(vocab.KindDenied, "the console takes calls from its own pages only (origin %q)", r.Header.Get("Origin"))
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			out, err = h(w, r)
		}
		if err != nil {
			k := cluster.KindOf(err)
			w.WriteHeader(k.HTTPStatus())
			json.NewEncoder(w).Encode(map[string]string{"kind": string(k), "message": err.Error(), "words": Words(err)})
			return
		}
		json.NewEncoder(w).Encode(out)
	}
}

func (c *Console) signedIn(h func(w http.ResponseWriter, r *http.Request, op *fsm.Operator) (any, error)) func(http.ResponseWriter, *http.Request) (any, error) {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		op := c.operator(r)
		if op == nil {
			return nil, vocab.Errorf(vocab.KindUnauthenticated, "sign in first")
		}
		return h(w, r, op)
	}
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return vocab.Errorf(vocab.KindInvalid, "reading the request: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return vocab.Errorf(vocab.KindInvalid, "the request is not the JSON the console sends: %v", err)
	}
	return nil
}

// challenge is a command for a passkey to sign.
type challenge struct {
	Payload   string   `json:"payload"`   // base64url of the command's JSON, exactly as signed
	Challenge string   `json:"challenge"` // base64url of fsm.CommandChallenge(payload)
	RPID      string   `json:"rp_id"`
	Allow     []string `json:"allow,omitempty"` // credential IDs, base64url
	Summary   string   `json:"summary"`         // what the command does, in words
}

func newChallenge(r *http.Request, rp string, cmd *fsm.Command, summary string, allow []string) (*challenge, error) {
	cmd.Nonce = make([]byte, 16)
	if _, err := rand.Read(cmd.Nonce); err != nil {
		return nil, err
	}
	cmd.IssuedAt = time.Now().UnixNano()
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return &challenge{Payload: base64.RawURLEncoding.EncodeToString(payload), Challenge: base64.RawURLEncoding.EncodeToString(fsm.CommandChallenge(payload)),
		RPID: rp, Allow: allow, Summary: summary}, nil
}

// assertion is what the script posts back: the payload it was given and
// the authenticator's response.
type assertion struct {
	Payload           string `json:"payload"`
	Credential        string `json:"credential"`
	AuthenticatorData string `json:"authenticator_data"`
	ClientDataJSON    string `json:"client_data_json"`
	Signature         string `json:"signature"`
}

func (a *assertion) signed(signer string) (*fsm.Signed, error) {
	var parts [4][]byte
	for i, s := range []string{a.Payload, a.AuthenticatorData, a.ClientDataJSON, a.Signature} {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, vocab.Errorf(vocab.KindInvalid, "the assertion is not base64url")
		}
		parts[i] = b
	}
	return &fsm.Signed{Signer: signer, Payload: parts[0], WebAuthn: &fsm.Assertion{Credential: a.Credential,
		AuthenticatorData: parts[1], ClientDataJSON: parts[2], Signature: parts[3]}}, nil
}

func (c *Console) signinBegin(w http.ResponseWriter, r *http.Request) (any, error) {
	v, err := c.svc.ConsoleView(r.Context())
	if err != nil {
		return nil, err
	}
	rp, _ := relyingParty(v.Passkeys, origin(r), rpID(r), "")
	return newChallenge(r, rp, &fsm.Command{Type: fsm.TypeSignIn, SignIn: &fsm.SignIn{Origin: origin(r)}}, "sign in to the console of node "+c.svc.Identity().NodeID, nil)
}

// relyingParty is the relying party ID a passkey asked at origin (whose
// host is host) signs for, and the credentials of operator opID (any
// operator when empty) that may sign there: those registered for origin,
// preferring the ones scoped to host itself over a parent domain. With
// none, it is host and no credential.
func relyingParty(passkeys []*fsm.Passkey, origin, host, opID string) (string, []string) {
	var found []*fsm.Passkey
	for _, pk := range passkeys {
		if slices.Contains(pk.Origins, origin) && (opID == "" || pk.Operator == opID) {
			found = append(found, pk)
		}
	}
	if len(found) == 0 {
		return host, nil
	}
	rp := found[0].RPID
	if slices.ContainsFunc(found, func(pk *fsm.Passkey) bool { return pk.RPID == host }) {
		rp = host
	}
	var allow []string
	for _, pk := range found {
		if pk.RPID == rp {
			allow = append(allow, pk.ID)
		}
	}
	return rp, allow
}

func (c *Console) signinFinish(w http.ResponseWriter, r *http.Request) (any, error) {
	var a assertion
	if err := readJSON(r, &a); err != nil {
		return nil, err
	}
	sg, err := a.signed("")
	if err != nil {
		return nil, err
	}
	op, cmd, err := c.svc.SignIn(r.Context(), sg)
	if err != nil {
		return nil, err
	}
	if cmd.SignIn.Origin != origin(r) {
		return nil, vocab.Errorf(vocab.KindUnauthenticated, "the sign-in is for %s, not this console", cmd.SignIn.Origin)
	}
	if err := c.openSession(w, op); err != nil {
		return nil, err
	}
	return map[string]string{"operator": op.Name, "next": Prefix}, nil
}

// registration is a new credential as the browser made it.
type registration struct {
	Operator  string `json:"operator"` // ID or name
	Name      string `json:"name"`
	ID        string `json:"id"` // rawId, base64url
	Algorithm int    `json:"algorithm"`
	PublicKey string `json:"public_key"` // getPublicKey(), base64url SubjectPublicKeyInfo
	// RPID is the relying party ID the credential was made for (the
	// console's host or a domain above it); Origins the console origins
	// it is for. Empty: the host, and the host at every member's port.
	RPID    string   `json:"rp_id"`
	Origins []string `json:"origins"`
}

// scope checks the relying party ID and origins of a registration made at
// host (defaults: the origins Origins gives for host): the RP ID must be
// host or a domain above it, as browsers require (WebAuthn Level 2,
// section 5.1.3), and every origin under the RP ID
// (fsm.CheckPasskeyOrigins).
func (reg *registration) scope(host string, defaults func() []string) (string, []string, error) {
	rp := strings.ToLower(strings.TrimSpace(reg.RPID))
	if rp == "" {
		rp = host
	}
	if rp != host && !strings.HasSuffix(host, "."+rp) {
		return "", nil, vocab.Errorf(vocab.KindInvalid, "relying party ID %q is neither this console's host %s nor a domain above it", rp, host)
	}
	var origins []string
	for _, o := range reg.Origins {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	if len(origins) == 0 {
		origins = defaults()
	}
	if err := fsm.CheckPasskeyOrigins(rp, origins); err != nil {
		return "", nil, vocab.Errorf(vocab.KindInvalid, "%v", err)
	}
	return rp, origins, nil
}

// register turns a new credential into the passkey request an admin
// signs with keyctl passkey add: the console cannot register it itself.
func (c *Console) register(w http.ResponseWriter, r *http.Request) (any, error) {
	var reg registration
	if err := readJSON(r, &reg); err != nil {
		return nil, err
	}
	spki, err := base64.RawURLEncoding.DecodeString(reg.PublicKey)
	if err != nil || len(spki) == 0 {
		return nil, vocab.Errorf(vocab.KindInvalid, "the browser gave no public key for the passkey (it needs WebAuthn Level 2: getPublicKey)")
	}
	st, err := c.svc.Status(r.Context())
	if err != nil {
		return nil, err
	}
	v, err := c.svc.ConsoleView(r.Context())
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(v.Operators, func(o *fsm.Operator) bool { return o.ID == reg.Operator || o.Name == reg.Operator })
	if i < 0 {
		return nil, vocab.Errorf(vocab.KindNotFound, "no operator has the ID or name %q", reg.Operator)
	}
	rp, origins, err := reg.scope(rpID(r), func() []string { return Origins(st, rpID(r)) })
	if err != nil {
		return nil, err
	}
	pk := &fsm.Passkey{ID: reg.ID, Operator: v.Operators[i].ID, Name: reg.Name, Algorithm: reg.Algorithm, PublicKey: spki,
		RPID: rp, Origins: origins}
	b, err := json.Marshal(pk)
	if err != nil {
		return nil, err
	}
	req := base64.RawURLEncoding.EncodeToString(b)
	return map[string]string{"request": req, "command": "keyctl passkey add " + req}, nil
}

// Origins are the console origins of the members at host: one per
// member's API port, the origins a passkey registered from a console at
// host is good for.
func Origins(st *cluster.Status, host string) []string {
	var out []string
	for _, m := range st.Members {
		_, port, err := net.SplitHostPort(m.APIAddr)
		if err != nil {
			continue
		}
		o := "https://" + net.JoinHostPort(host, port)
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// decision is an approval or denial the operator asks for.
type decision struct {
	Action  string `json:"action"` // once, uses, for, deny
	Machine string `json:"machine"`
	Key     string `json:"key"`
	Uses    int    `json:"uses"`
	Minutes int    `json:"minutes"`
}

// command is the command d asks for, and its summary in words.
func (d *decision) command(now time.Time) (*fsm.Command, string, error) {
	what := "every key it may fetch"
	if d.Key != "" {
		what = "key " + d.Key
	}
	window := time.Duration(d.Minutes) * time.Minute
	switch d.Action {
	case "once":
		return &fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: d.Machine, Key: d.Key, Uses: 1}},
			fmt.Sprintf("approve machine %s once, for %s", d.Machine, what), nil
	case "uses":
		if d.Uses < 1 || d.Uses > fsm.MaxApprovalUses {
			return nil, "", vocab.Errorf(vocab.KindInvalid, "the number of uses must be 1 to %d", fsm.MaxApprovalUses)
		}
		return &fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: d.Machine, Key: d.Key, Uses: d.Uses}},
			fmt.Sprintf("approve machine %s for %d uses of %s", d.Machine, d.Uses, what), nil
	case "for":
		if window <= 0 || window > fsm.MaxApprovalTime {
			return nil, "", vocab.Errorf(vocab.KindInvalid, "the approval's duration must be 1 minute to %v", fsm.MaxApprovalTime)
		}
		return &fsm.Command{Type: fsm.TypeApprove, Approve: &fsm.Approval{Machine: d.Machine, Key: d.Key, Until: now.Add(window).UnixNano()}},
			fmt.Sprintf("approve machine %s for every release of %s during %v", d.Machine, what, window), nil
	case "deny":
		if window <= 0 {
			window = defaultDenial
		}
		if window > fsm.MaxApprovalTime {
			return nil, "", vocab.Errorf(vocab.KindInvalid, "a denial lasts at most %v", fsm.MaxApprovalTime)
		}
		return &fsm.Command{Type: fsm.TypeDeny, Deny: &fsm.Denial{Machine: d.Machine, Key: d.Key, Until: now.Add(window).UnixNano()}},
			fmt.Sprintf("deny machine %s %s for %v", d.Machine, what, window), nil
	}
	return nil, "", vocab.Errorf(vocab.KindInvalid, "unknown decision %q: once, uses, for or deny", d.Action)
}

// prepare makes the command an approval or a denial is, for the
// operator's passkey to sign.
func (c *Console) prepare(w http.ResponseWriter, r *http.Request, op *fsm.Operator) (any, error) {
	var d decision
	if err := readJSON(r, &d); err != nil {
		return nil, err
	}
	cmd, summary, err := d.command(c.now())
	if err != nil {
		return nil, err
	}
	v, err := c.svc.ConsoleView(r.Context())
	if err != nil {
		return nil, err
	}
	rp, allow := relyingParty(v.Passkeys, origin(r), rpID(r), op.ID)
	if len(allow) == 0 {
		return nil, vocab.Errorf(vocab.KindNotFound, "operator %s has no passkey registered for this console's origin %s (keyctl passkey add --origin adds origins)", op.Name, origin(r))
	}
	return newChallenge(r, rp, cmd, summary, allow)
}

// submit relays a passkey-signed approval or denial to the log. The
// console checks only that it is one and the session's operator's: every
// replica verifies the assertion.
func (c *Console) submit(w http.ResponseWriter, r *http.Request, op *fsm.Operator) (any, error) {
	var a assertion
	if err := readJSON(r, &a); err != nil {
		return nil, err
	}
	sg, err := a.signed(op.ID)
	if err != nil {
		return nil, err
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || (cmd.Type != fsm.TypeApprove && cmd.Type != fsm.TypeDeny) {
		return nil, vocab.Errorf(vocab.KindInvalid, "the console submits approvals and denials only")
	}
	res, err := c.svc.Submit(r.Context(), sg)
	if err != nil {
		return nil, err
	}
	done := "approved"
	if cmd.Type == fsm.TypeDeny {
		done = "denied"
	}
	return map[string]any{"index": res.Index, "done": done}, nil
}

// Words says what an error kind means to a person at the console, then
// the node's own message.
func Words(err error) string {
	if err == nil {
		return ""
	}
	var s string
	switch cluster.KindOf(err) {
	case vocab.KindInvalid:
		s = "That request is not valid."
	case vocab.KindNotFound:
		s = "It does not exist (any more)."
	case vocab.KindExists:
		s = "It exists already."
	case vocab.KindDenied:
		s = "You are not allowed to do this, or the key or machine is revoked."
	case vocab.KindUnauthenticated:
		s = "The cluster did not accept the signature: sign again with your passkey."
	case vocab.KindConflict:
		s = "The cluster's state does not allow this now."
	case vocab.KindNoQuorum:
		s = "Too few nodes answered, so nothing happened. Try again in a moment or on another node."
	case vocab.KindUnknownOutcome:
		s = "The cluster did not confirm in time: it may or may not have happened. Reload before trying again."
	case vocab.KindNotInitialized:
		s = "This node is not part of a cluster yet."
	case vocab.KindClockSkew:
		s = "Your request's time is too far from the cluster's: check the clocks."
	case vocab.KindPendingApproval:
		s = "It waits for an operator's approval."
	case vocab.KindWrongKey:
		s = "That ciphertext was not made with this key, version or context."
	case vocab.KindTampered:
		s = "That ciphertext was changed after it was made."
	case vocab.KindTokenExpired:
		s = "That capability token has expired."
	case vocab.KindTokenRevoked:
		s = "That capability token was revoked."
	case vocab.KindTokenWidened:
		s = "That capability token claims more than the token it was restricted from."
	case vocab.KindTokenLacksCapability:
		s = "That capability token does not allow this."
	case vocab.KindTokenUsedUp:
		s = "That capability token has been used as many times as it allows."
	case vocab.KindUnreachable:
		s = "The node could not be reached."
	case vocab.KindApprovalTimeout:
		s = "No operator decided in time."
	case vocab.KindBadReply:
		s = "A node answered with something that does not check out."
	case vocab.KindConfig:
		s = "The configuration is not valid."
	default:
		s = "Something failed on this node."
	}
	if m := err.Error(); m != "" {
		s += " (" + m + ")"
	}
	return s
}

// stamp shows an RFC 3339 time (an audit record's) as when does, or as
// it is if it does not parse.
func stamp(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return rfc3339
	}
	return when(t.UnixNano())
}

func when(ns int64) string {
	if ns == 0 {
		return "—"
	}
	return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05 UTC")
}
