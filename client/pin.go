package client

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/confirm"
	"github.com/keyquorum/keyquorum/fsm"
)

// The pin and the confirmed view of the cluster.
//
// A node's status is one node's word. The client trusts it for nothing it
// seals to: secrets are sealed to the pinned cluster key, and a Tang key's
// shares to holders that t members confirm. Each member is asked at its
// own API address and must present its certificate of the cluster CA
// naming its node ID, with the identity key the others list for it; the
// members must agree on the epoch, the threshold, the cluster key and
// every holder's index and key. A node that lies alone, or t-1 that lie
// together, cannot make t members of the cluster CA agree, unless they
// list only themselves as the holders, with a threshold they can reach
// (one node, t=1). So every holder of the view is also challenged with a
// fresh nonce and must prove it holds its share (cluster/api
// possession.go): t proofs at distinct indexes against one polynomial
// whose constant term is the pinned key could only be made by t holders
// of that key, or by someone who knows its secret. Pinning for the first
// time, with no key to hold the view to, the proofs still bind the view
// to one key whose t shares its holders hold.

// pinned is the pinned cluster ID and key, or an error that says how to
// pin.
func (c *Client) pinned() (string, []byte, error) {
	if len(c.creds.ClusterKey) == 0 || c.creds.ClusterID == "" {
		return "", nil, &Error{Kind: api.KindInvalid, Message: fmt.Sprintf(
			"no pinned cluster key (%s, %s): run keyctl cluster pin, or source the env.sh keyctl cluster init wrote once the key exists", EnvClusterID, EnvClusterKey)}
	}
	return c.creds.ClusterID, c.creds.ClusterKey, nil
}

// ParseClusterKey reads a cluster public key given as hex or as base64.
func ParseClusterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("want a 32-byte cluster public key in hex (64 digits) or base64")
}

// pinLines are the export lines of the pin, or nothing without one.
func (c *Credentials) pinLines() string {
	if len(c.ClusterKey) == 0 {
		return ""
	}
	return fmt.Sprintf("export %s=%s\nexport %s=%s\n", EnvClusterID, c.ClusterID, EnvClusterKey, hex.EncodeToString(c.ClusterKey))
}

// PinLines are the export lines of the pin (KEYQUORUM_CLUSTER_ID and
// KEYQUORUM_CLUSTER_KEY), empty without one.
func (c *Credentials) PinLines() string { return c.pinLines() }

// SavePin writes the pin into the env.sh at path: it replaces the pin's
// export lines there, or adds them. A file that does not exist is created
// with the pin alone.
func (c *Credentials) SavePin(path string) error {
	if len(c.ClusterKey) == 0 {
		return errors.New("no pin to save")
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(old), "\n") {
		if line == "" || strings.HasPrefix(line, "export "+EnvClusterID+"=") || strings.HasPrefix(line, "export "+EnvClusterKey+"=") {
			continue
		}
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteString("\n")
		}
	}
	out.WriteString(c.pinLines())
	return os.WriteFile(path, []byte(out.String()), 0o644)
}

// Confirmed is the cluster as t members, each at its own API address and
// authenticated by its certificate, agree it is.
type Confirmed struct {
	ClusterID string
	Epoch     uint64
	Threshold int
	PublicKey []byte
	// Holders are the share holders of the epoch, by node ID.
	Holders []api.MemberStatus
	// Confirmers are the members that agreed, by node ID.
	Confirmers []string
}

// Confirm asks every member the answering node lists for its status, at
// the member's own API address, and challenges every holder of the view
// for a proof that it holds its share (see the top of this file). It
// returns the view at least t members agree on, t of whose holders prove
// shares of one polynomial whose constant term is the view's cluster key.
// With pin set, that key must be pin. A member that disagrees or fails
// its proof is named in the error when fewer than t confirm.
func (c *Client) Confirm(ctx context.Context, pin []byte) (*Confirmed, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.PublicKey) == 0 {
		return nil, &Error{Kind: api.KindConflict, Message: "the cluster key does not exist yet: wait for the first key epoch"}
	}
	if len(pin) > 0 && subtle.ConstantTimeCompare(st.PublicKey, pin) != 1 {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf(
			"node %s reports cluster public key %x, not the pinned %x: refusing to seal to it", st.Node, st.PublicKey, pin)}
	}
	if st.Resharing != nil {
		return nil, &Error{Kind: api.KindConflict, Message: "the cluster is resharing its key: try again when the round is done"}
	}
	want := confirm.ViewOf(st)
	if err := want.Sane(); err != nil {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf("node %s reports %v: refusing to seal to it", st.Node, err)}
	}
	nonce := make([]byte, api.PossessionNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	res := confirm.Ask(ctx, memberAsker{c}, st.Members, want, nonce)
	if len(res.Agree) < want.Threshold {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf(
			"only %d of the %d members needed confirm node %s's view of the cluster (epoch %d, threshold %d, %d holders): refusing to seal to it; %s",
			len(res.Agree), want.Threshold, st.Node, want.Epoch, want.Threshold, len(want.Holders), strings.Join(res.Disagree, "; "))}
	}
	if res.Proven < want.Threshold {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf(
			"only %d of the %d holders needed prove they hold a share of cluster key %x in node %s's view (epoch %d, threshold %d, %d holders): refusing to seal to it; %s",
			res.Proven, want.Threshold, want.PublicKey, st.Node, want.Epoch, want.Threshold, len(want.Holders), strings.Join(res.Disagree, "; "))}
	}
	return &Confirmed{ClusterID: want.ClusterID, Epoch: want.Epoch, Threshold: want.Threshold, PublicKey: want.PublicKey,
		Holders: want.Holders, Confirmers: res.Agree}, nil
}

// memberAsker makes Confirm's calls to the members (confirm.Asker).
type memberAsker struct{ c *Client }

func (a memberAsker) Status(ctx context.Context, m api.MemberStatus, signKey []byte) (*api.Status, error) {
	return a.c.memberStatus(ctx, m, signKey)
}

func (a memberAsker) Possession(ctx context.Context, m api.MemberStatus, signKey, nonce []byte) (*api.Possession, error) {
	return a.c.memberPossession(ctx, m, signKey, nonce)
}

// memberStatus asks member m for its status at its own API address.
func (c *Client) memberStatus(ctx context.Context, m api.MemberStatus, signKey []byte) (*api.Status, error) {
	var st api.Status
	if err := c.memberGet(ctx, m, signKey, "/v1/cluster/status", &st); err != nil {
		return nil, err
	}
	if st.Node != m.ID {
		return nil, fmt.Errorf("answers as node %q", st.Node)
	}
	return &st, nil
}

// memberPossession challenges holder m, at its own API address, with
// nonce.
func (c *Client) memberPossession(ctx context.Context, m api.MemberStatus, signKey, nonce []byte) (*api.Possession, error) {
	var p api.Possession
	if err := c.memberCall(ctx, m, signKey, http.MethodPost, api.PossessionPath, &api.PossessionRequest{Nonce: nonce}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// memberGet gets path from member m at its own API address. The member
// must present a certificate of the cluster CA that names its node ID
// and, if signKey is set, carries that key.
func (c *Client) memberGet(ctx context.Context, m api.MemberStatus, signKey []byte, path string, out any) error {
	return c.memberCall(ctx, m, signKey, http.MethodGet, path, nil, out)
}

// memberCall is memberGet with any method and a body.
func (c *Client) memberCall(ctx context.Context, m api.MemberStatus, signKey []byte, method, path string, body, out any) error {
	base, err := baseURL(m.APIAddr)
	if err != nil {
		return err
	}
	if m.ID == "" {
		// confirm.VerifyNode takes an empty ID for any node.
		return errors.New("listed with no node ID")
	}
	cfg := c.tlsConfig.Clone()
	cfg.VerifyConnection = confirm.VerifyNode(m.ID, signKey, nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	return doJSON(ctx, hc, method, base+path, body, out)
}

// ConfirmKeyState returns once t members, each at its own API address and
// authenticated by its certificate, show key name in state at their own
// linearizable read. A revoke or destroy that the node the client talks to
// acknowledged is then known to hold on a quorum, not only on that node's
// word. Otherwise the error is unknown_outcome and names who disagrees.
func (c *Client) ConfirmKeyState(ctx context.Context, name, state string) error {
	cf, err := c.Confirm(ctx, c.creds.ClusterKey)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		agree    int
		disagree []string
		wg       sync.WaitGroup
	)
	for _, m := range cf.Holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var k fsm.Key
			err := c.memberGet(ctx, m, m.SignKey, "/v1/keys/"+name, &k)
			if err == nil && k.State != state {
				err = fmt.Errorf("shows it %s", k.State)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				disagree = append(disagree, fmt.Sprintf("%s: %v", m.ID, err))
				return
			}
			agree++
		}()
	}
	wg.Wait()
	if agree < cf.Threshold {
		sort.Strings(disagree)
		return &Error{Kind: api.KindUnknownOutcome, Message: fmt.Sprintf(
			"the node acknowledged key %q %s, but only %d of the %d members needed show it so: %s",
			name, state, agree, cf.Threshold, strings.Join(disagree, "; "))}
	}
	return nil
}

// Pin confirms the cluster key with t members (Confirm) and pins it in the
// client's credentials, in memory (SavePin writes it). With a pin already
// set, the confirmed key must be it.
func (c *Client) Pin(ctx context.Context) (*Confirmed, error) {
	cf, err := c.Confirm(ctx, c.creds.ClusterKey)
	if err != nil {
		return nil, err
	}
	if c.creds.ClusterID != "" && c.creds.ClusterID != cf.ClusterID {
		return nil, &Error{Kind: api.KindConflict, Message: fmt.Sprintf("the cluster is %q, not the pinned %q", cf.ClusterID, c.creds.ClusterID)}
	}
	c.creds.ClusterID, c.creds.ClusterKey = cf.ClusterID, slices.Clone(cf.PublicKey)
	return cf, nil
}

// pinFirstKey pins the cluster key once it exists, if nothing is pinned
// yet: the end of InitCluster (one initial node) and of the JoinNode that
// completes the first key.
func (c *Client) pinFirstKey(ctx context.Context) error {
	if len(c.creds.ClusterKey) > 0 {
		return nil
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.PublicKey) == 0 {
		return err
	}
	_, err = c.Pin(ctx)
	return err
}

// Credentials are the credentials the client uses, with the pin Pin set.
func (c *Client) Credentials() *Credentials { return c.creds }
