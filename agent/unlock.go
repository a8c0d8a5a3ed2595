package agent

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// Backoff of the waits between rounds.
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 30 * time.Second
)

// DefaultHold is how long the agent asks a node to hold an unlock that
// waits for an operator (the node bounds it by cluster.MaxUnlockHold): the
// node answers as soon as the approval or denial applies, so the agent
// continues then rather than at its next retry.
const DefaultHold = 25 * time.Second

// Agent fetches keys from a cluster for one machine. Set the exported
// fields, if at all, before the first Unlock; an Agent may then be used by
// one goroutine at a time.
type Agent struct {
	// Log receives progress and warnings, one line each; nil discards
	// them. It never receives key material.
	Log io.Writer
	// Verbose also logs every attempt at every node.
	Verbose bool
	// Resolver looks up SRV records; nil is net.DefaultResolver.
	Resolver Resolver
	// BackoffInitial and BackoffMax shape the waits between rounds
	// (DefaultBackoffInitial doubling to DefaultBackoffMax when zero).
	BackoffInitial, BackoffMax time.Duration
	// QUICHeadStart is how long QUIC runs alone before TCP starts beside
	// it (DefaultQUICHeadStart when zero).
	QUICHeadStart time.Duration
	// Hold is how long a node is asked to hold an unlock pending approval
	// until an operator decides (DefaultHold when zero; negative: never).
	// The first request is not held, so that the agent can say at once
	// what an operator must run. After the first pending answer, and
	// after one the node held, the next round starts after at most
	// BackoffInitial and a second, whatever the backoff reached.
	Hold time.Duration
	// Now is the clock that dates requests; nil is time.Now.
	Now func() time.Time

	cfg   Config
	key   ed25519.PrivateKey
	id    string
	roots *x509.CertPool
}

// New makes an agent for a machine key and a config (defaults filled in
// with WithDefaults, checked with Validate).
func New(cfg Config, key ed25519.PrivateKey) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, &Error{Kind: vocab.KindConfig, Message: err.Error()}
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errorf(vocab.KindConfig, "machine key is %d bytes, want an Ed25519 private key", len(key))
	}
	a := &Agent{cfg: cfg, key: key, id: MachineID(key.Public().(ed25519.PublicKey))}
	if cfg.CA != "" {
		var err error
		if a.roots, err = loadRoots(cfg.CA); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// loadRoots reads the CA certificate of Config.CA: a PEM file's path, or
// the PEM itself.
func loadRoots(ca string) (*x509.CertPool, error) {
	pemCA := []byte(ca)
	if !strings.Contains(ca, "-----BEGIN") {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, errorf(vocab.KindConfig, "reading the CA certificate: %v", err)
		}
		pemCA = b
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCA) {
		return nil, errorf(vocab.KindConfig, "CA certificate %s: no PEM certificate in it", abbreviate(ca))
	}
	return roots, nil
}

// MachineID is the ID of the agent's machine key.
func (a *Agent) MachineID() string { return a.id }

// Unlock fetches key name and returns its bytes. It tries the servers in
// random order, one bounded attempt each; a round that ends pending
// approval is repeated with backoff until the config's Wait, and a round
// in which no node could answer is repeated until RetryFor. While it may
// wait for an approval it asks the node to hold the request until an
// operator decides (Hold), so it continues as soon as the decision
// applies. The error is an *Error whose Kind says why (see ExitCode).
func (a *Agent) Unlock(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, errorf(vocab.KindConfig, "no key name: give --key NAME or \"key\" in the config")
	}
	start := a.now()
	waitUntil := start.Add(time.Duration(*a.cfg.Wait))
	retryUntil := start.Add(time.Duration(a.cfg.RetryFor))
	backoff := backoffInitial(a)
	maxBackoff := a.BackoffMax
	if maxBackoff <= 0 {
		maxBackoff = DefaultBackoffMax
	}
	announced := false
	for {
		// The first round is answered at once, so that the agent can say
		// what an operator must run; from then on a node holds it.
		hold := a.hold()
		if !announced {
			hold = 0
		}
		if left := waitUntil.Sub(a.now()); left < hold {
			hold = max(left, 0)
		}
		if hold < time.Second {
			hold = 0 // the node holds whole seconds
		}
		key, err := a.round(ctx, name, hold)
		if err == nil {
			if announced {
				a.logf("approved")
			}
			return key, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		pending := KindOf(err) == vocab.KindPendingApproval
		var until time.Time
		switch {
		case pending:
			until = waitUntil
		case retryable(KindOf(err)):
			until = retryUntil
		default:
			return nil, err
		}
		left := until.Sub(a.now())
		if left <= 0 {
			if pending {
				return nil, errorf(vocab.KindApprovalTimeout, "no operator approved machine %s for key %q within %v (keyctl session approve %s)",
					a.id, name, time.Duration(*a.cfg.Wait), a.id)
			}
			return nil, err
		}
		sleep := min(backoff, left)
		var e *Error
		if pending && (!announced && a.hold() > 0 || errors.As(err, &e) && e.held) {
			// The first pending answer, or one the node held until its
			// hold ended: ask again soon, to be held. (Not at once: a node
			// that lies about holding must not make the agent spin.)
			sleep = min(sleep, backoffInitial(a), time.Second)
		}
		if pending && !announced {
			announced = true
			a.logf("waiting for approval: run `keyctl session approve %s`", a.id)
		}
		if !pending {
			a.logf("%v; trying again in %v", err, sleep.Round(time.Millisecond))
		} else if a.Verbose {
			a.logf("still pending approval; asking again in %v", sleep.Round(time.Millisecond))
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func backoffInitial(a *Agent) time.Duration {
	if a.BackoffInitial <= 0 {
		return DefaultBackoffInitial
	}
	return a.BackoffInitial
}

func (a *Agent) hold() time.Duration {
	switch {
	case a.Hold < 0:
		return 0
	case a.Hold == 0:
		return DefaultHold
	}
	return a.Hold
}

// round asks the servers one after the other until one releases the key
// or says the release waits for approval, asking that one to hold the
// request for hold. Otherwise it returns the most telling error (see
// rank).
func (a *Agent) round(ctx context.Context, name string, hold time.Duration) ([]byte, error) {
	servers, err := a.servers(ctx)
	if err != nil {
		return nil, err
	}
	var best *Error
	var unreachable []string
	var lies []*Error
	// A reply that failed verification is always reported (a node or the
	// path to it lies), once: as a warning, unless it is the final error.
	defer func() {
		for _, e := range lies {
			if e != best {
				a.logf("warning: %v", e)
			}
		}
	}()
	for _, s := range servers {
		if ctx.Err() != nil {
			break
		}
		key, err := a.attempt(ctx, s, name, hold)
		if err == nil {
			best = nil
			return key, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Kind: vocab.KindInternal, Server: s, Message: err.Error()}
		}
		if e.Kind == vocab.KindPendingApproval {
			return nil, e
		}
		switch {
		case e.Kind == vocab.KindBadReply:
			lies = append(lies, e)
		case a.Verbose:
			a.logf("%v", e)
		}
		if e.Kind == vocab.KindUnreachable {
			unreachable = append(unreachable, e.Error())
		}
		if best == nil || rank(e.Kind) > rank(best.Kind) {
			best = e
		}
	}
	if best == nil {
		if err := ctx.Err(); err != nil {
			return nil, errorf(vocab.KindUnreachable, "stopped before any server answered: %v", err)
		}
		return nil, errorf(vocab.KindUnreachable, "no servers to try")
	}
	if best.Kind == vocab.KindUnreachable {
		return nil, errorf(vocab.KindUnreachable, "no server answered: %s", strings.Join(unreachable, "; "))
	}
	return nil, best
}

// attempt makes one signed request to one server and combines its answer.
// hold, if positive, asks the server to hold a pending request that long
// for an operator's decision; the attempt's bound grows by it.
func (a *Agent) attempt(ctx context.Context, server, name string, hold time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeoutPerNode()+hold)
	defer cancel()
	ephPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	cmd := &fsm.Command{
		Type:     fsm.TypeRelease,
		Nonce:    nonce,
		IssuedAt: a.now().UnixNano(),
		Release:  &fsm.ReleaseRequest{Key: name, Op: fsm.OpGet, Ephemeral: ephPriv.PublicKey().Bytes()},
	}
	signed, err := fsm.Sign(a.id, a.key, cmd)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	rep, err := a.post(ctx, server, UnlockPath, body, hold)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v", a.timeoutPerNode()+hold)
		}
		return nil, &Error{Kind: vocab.KindUnreachable, Server: server, Message: err.Error()}
	}
	if a.Verbose {
		a.logf("%s: HTTP %d over %s", server, rep.status, rep.proto)
	}
	if rep.status != http.StatusOK {
		e := serverErrorAt(server, UnlockPath, rep)
		e.held = rep.held && e.Kind == vocab.KindPendingApproval
		return nil, e
	}
	var ur vocab.UnlockReply
	if err := json.Unmarshal(rep.body, &ur); err != nil {
		return nil, &Error{Kind: vocab.KindBadReply, Server: server, Message: fmt.Sprintf("the answer is not an unlock reply: %v", err)}
	}
	key, rejected, err := a.combine(&ur, name, signed.Payload, ephPriv)
	for _, r := range rejected {
		a.logf("warning: %s: %v", server, r)
	}
	if err != nil {
		return nil, &Error{Kind: vocab.KindBadReply, Server: server, Message: err.Error()}
	}
	return key, nil
}

// serverErrorAt converts a node's error answer to a call of path.
func serverErrorAt(server, path string, rep *reply) *Error {
	var er vocab.ErrorReply
	if err := json.Unmarshal(rep.body, &er); err != nil || er.Error == nil || er.Error.Kind == "" {
		return &Error{Kind: vocab.KindInternal, Server: server,
			Message: fmt.Sprintf("HTTP %d without an error body (does the node serve %s?)", rep.status, path)}
	}
	msg := er.Error.Message
	if msg == "" {
		msg = string(er.Error.Kind)
	}
	kind := serverKind(er.Error.Kind)
	return &Error{Kind: kind, Server: server, Message: fmt.Sprintf("%s: %s", strings.ReplaceAll(string(er.Error.Kind), "_", " "), oneLine(msg))}
}

// combine checks a node's answer and opens the key: the answer must be for
// this key and the pinned cluster key (and cluster ID, if pinned); every partial must open with
// the ephemeral key and carry a valid proof for the holder's public share;
// t of them open the ciphertext. Partials that fail are returned as
// rejected, whether or not enough others passed.
func (a *Agent) combine(ur *vocab.UnlockReply, name string, payload []byte, ephPriv *ecdh.PrivateKey) (key []byte, rejected []error, err error) {
	if ur.Key != name {
		return nil, nil, fmt.Errorf("the answer is for key %q, not %q", ur.Key, name)
	}
	if a.cfg.ClusterID != "" && ur.ClusterID != a.cfg.ClusterID {
		return nil, nil, fmt.Errorf("the answer is from cluster %q, not the configured %q", ur.ClusterID, a.cfg.ClusterID)
	}
	poly := &shamir.PublicPoly{Commits: ur.Poly}
	if err := poly.Validate(); err != nil {
		return nil, nil, fmt.Errorf("public polynomial: %w", err)
	}
	t := poly.Threshold()
	if ur.Threshold != t {
		return nil, nil, fmt.Errorf("threshold %d does not match the polynomial's %d", ur.Threshold, t)
	}
	// The pin is required (Validate); an agent without one accepts no
	// answer.
	if pin := a.cfg.ClusterPublicKey; len(pin) != ClusterKeySize || subtle.ConstantTimeCompare(poly.Commits[0], pin) != 1 {
		return nil, nil, errors.New("the public polynomial is not for the pinned cluster public key: its constant term is another key")
	}
	rctx := fsm.ReleaseContext(ur.ClusterID, name, ur.Version, ur.Epoch, payload)
	v, err := shamir.NewVerifier(poly, ur.R, rctx)
	if err != nil {
		return nil, nil, fmt.Errorf("the key's ciphertext: %w", err)
	}
	var good []*shamir.VerifiedPartial
	seen := map[uint32]bool{}
	for _, sp := range ur.Partials {
		if len(good) == t {
			break
		}
		p, err := openPartial(&sp, ephPriv, rctx)
		if err == nil && seen[p.Index] {
			err = fmt.Errorf("a second partial from share holder %d", p.Index)
		}
		var vp *shamir.VerifiedPartial
		if err == nil {
			vp, err = v.Verify(p)
		}
		if err != nil {
			rejected = append(rejected, fmt.Errorf("rejected partial: %w", err))
			continue
		}
		seen[p.Index] = true
		good = append(good, vp)
	}
	if len(good) < t {
		return nil, rejected, fmt.Errorf("%d of %d partials verified, %d needed%s", len(good), len(ur.Partials), t, reasons(rejected))
	}
	key, err = v.Open(&shamir.Ciphertext{R: ur.R, Sealed: ur.Sealed}, fsm.SealInfo(ur.ClusterID, name), good)
	if err != nil {
		return nil, rejected, fmt.Errorf("opening the key with verified partials: %w", err)
	}
	return key, rejected, nil
}

// openPartial opens one holder's sealed partial.
func openPartial(sp *vocab.SealedPartial, ephPriv *ecdh.PrivateKey, rctx []byte) (*shamir.Partial, error) {
	if sp.Index == 0 {
		return nil, errors.New("partial with share index 0")
	}
	pt, err := shamir.OpenX25519(ephPriv, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(rctx, sp.Index))
	if err != nil {
		return nil, fmt.Errorf("partial from share holder %d does not open with the request's ephemeral key: %w", sp.Index, err)
	}
	defer clear(pt)
	var p shamir.Partial
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("partial from share holder %d is not a partial: %v", sp.Index, err)
	}
	if p.Index != sp.Index {
		return nil, fmt.Errorf("partial sealed for share holder %d says it is from %d", sp.Index, p.Index)
	}
	return &p, nil
}

func reasons(errs []error) string {
	if len(errs) == 0 {
		return ""
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = oneLine(e.Error())
	}
	return ": " + strings.Join(parts, "; ")
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) timeoutPerNode() time.Duration { return time.Duration(a.cfg.TimeoutPerNode) }

func (a *Agent) quicHeadStart() time.Duration {
	if a.QUICHeadStart > 0 {
		return a.QUICHeadStart
	}
	return DefaultQUICHeadStart
}

func (a *Agent) logf(format string, args ...any) {
	if a.Log != nil {
		fmt.Fprintf(a.Log, "keyagent: %s\n", oneLine(fmt.Sprintf(format, args...)))
	}
}

// oneLine joins the lines of a message, so that every report stays on
// one line of stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
