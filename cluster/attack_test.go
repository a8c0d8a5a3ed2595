package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Attacks by one compromised node (issue 9): the attacker runs its own code
// with what its node holds (its share, its certificate, a coordinator's
// place in the protocol) and asks honest holders directly, as the
// node-to-node protocol lets it. Each test is an attack that must fail.

// holderRequest is what a coordinator sends a holder for a release of
// name signed by the admin, at readIndex, with the key's version and
// epoch as the leader has them.
func (c *testCluster) holderRequest(name string, readIndex uint64) *partialRequest {
	c.t.Helper()
	tn := c.leader()
	k := storedKey(c.t, tn, name)
	var epoch uint64
	tn.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	return &partialRequest{ReadIndex: readIndex, Request: c.releaseRequest(name), Version: k.Version, Epoch: epoch}
}

// waitHasKey waits until node tn has applied the creation of key name.
func (c *testCluster) waitHasKey(tn *testNode, name string) {
	c.t.Helper()
	c.waitFor(settleTimeout, func() (bool, string) {
		found := false
		tn.n.fsm.Read(func(s *fsm.State) { found = s.Keys[name] != nil })
		return found, tn.id() + " has not applied the creation of " + name
	})
}

// TestLyingCoordinatorGetsNoPartialFromALaggingHolder (hole 8): holders
// waited only for the read index the coordinator sent. A compromised node
// coordinates a release after an acknowledged revoke with read index 0, to
// a holder that has not applied the revoke yet: with its own partial that
// made t=2 and the key was released after its revoke. The holder now makes
// its own read, so it answers only once it has applied the revoke, and
// then refuses.
func TestLyingCoordinatorGetsNoPartialFromALaggingHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("lagging", randomBytes(t, 32))
	leader := c.leader()
	victim := c.anyRunning(leader)
	c.waitHasKey(victim, "lagging")
	req := c.holderRequest("lagging", 0)

	c.wantLaggingHolderRefuses(leader, victim, "lagging", req, "for a key revoked before the request")
	req.Request = c.releaseRequest("lagging")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerSealedPartial(ctx, req); KindOf(err) != KindDenied {
		t.Fatalf("holder that applied the revoke: %v (kind %s), want %s", err, KindOf(err), KindDenied)
	}
}

// TestOnlyTheLeaderVouchesForAHoldersRead: a coordinator that is the
// leader sends its own read with its request, and a holder takes it in
// place of the read it would have asked that same node for. A compromised
// follower that coordinates sends a read of its own making (index 0) as
// the leader's, to a holder that has not applied a revoke: the holder
// ignores it, makes its own read, and gives no partial.
func TestOnlyTheLeaderVouchesForAHoldersRead(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("vouched", randomBytes(t, 32))
	leader := c.leader()
	victim := c.anyRunning(leader)
	liar := c.anyRunning(leader, victim)
	c.waitHasKey(victim, "vouched")
	req := c.holderRequest("vouched", 0)
	req.LeaderRead, req.from = &leaderRead{Index: 0}, liar.id()

	c.wantLaggingHolderRefuses(leader, victim, "vouched", req, "on a follower's word that its read was the leader's")
}

// TestTheLeadersReadStandsForTheHolders: a release the leader coordinates
// costs one read index, the leader's own, which the holders take from its
// request (partialRequest.LeaderRead) instead of each asking it for
// another; a release through a follower costs the follower's and the
// other holder's.
func TestTheLeadersReadStandsForTheHolders(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("vouched", randomBytes(t, 32))
	leader := c.leader()
	for _, tn := range c.running() {
		c.waitHasKey(tn, "vouched")
	}
	const releases = 10
	before := leader.n.cons.readIndexes.Load()
	for range releases {
		c.mustRelease(leader, "vouched")
	}
	if got := leader.n.cons.readIndexes.Load() - before; got >= 2*releases {
		t.Errorf("%d releases through the leader took %d read indexes: the holders made their own", releases, got)
	}
}

// TestRequestAnsweredBeforeRestartIsRefusedAfter (hole 12): the nonces a
// holder has seen live in memory, so after a restart a captured request
// was answered again within the freshness window. A holder now refuses
// requests issued before it started.
func TestRequestAnsweredBeforeRestartIsRefusedAfter(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("captured", secret)
	victim := c.nodes[1]
	c.waitHasKey(victim, "captured")
	req := c.holderRequest("captured", 0)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := victim.n.answerSealedPartial(ctx, req); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	c.stop(victim)
	c.restart(victim)
	c.waitSettled(0, victim)
	if p, err := victim.n.answerSealedPartial(ctx, req); err == nil {
		t.Fatalf("after a restart the holder answered share %d to a request it had answered before", p.Index)
	} else if KindOf(err) != KindUnauthenticated {
		t.Errorf("replay after restart: %v (kind %s), want %s", err, KindOf(err), KindUnauthenticated)
	}
	// A request signed after the restart is answered.
	if got := c.mustRelease(victim, "captured"); !bytes.Equal(got, secret) {
		t.Fatalf("release after restart returned other bytes")
	}
}

// nodePortStatus asks the node port at target for its status, presenting
// cert.
func nodePortStatus(target string, cert tls.Certificate) (*nodeStatus, error) {
	hc := &http.Client{Timeout: opTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, NextProtos: []string{alpnRPC}},
		ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + target + "/internal/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var ns nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&ns); err != nil {
		return nil, err
	}
	return &ns, nil
}

// nodePortPartial asks the node port at target for a partial, presenting
// cert, over both node-to-node protocols (the node call protocol and
// HTTP/2), and returns the answer if either answered 200. Otherwise the
// error is the status and body of the refusal, which must be the same on
// both, or says that they differ.
func nodePortPartial(target string, cert tls.Certificate) (string, error) {
	status, body, err := nodePortCall(target, cert, http.MethodPost, "/internal/v1/partial", []byte("{}"))
	if err != nil {
		return "", err
	}
	if status == http.StatusOK {
		return string(body), nil
	}
	hc := &http.Client{Timeout: opTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, NextProtos: []string{alpnRPC}},
		ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("https://"+target+"/internal/v1/partial", "application/json", strings.NewReader("{}"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	h2body, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK:
		return string(h2body), nil
	case resp.StatusCode != status || !bytes.Equal(h2body, body):
		return "", fmt.Errorf("HTTP/2 and the node call protocol refused differently (statuses %d and %d)", resp.StatusCode, status)
	}
	return "", fmt.Errorf("status %s: %s", resp.Status, h2body)
}

// raftStreamServed opens a Raft stream to target with cert and tells
// whether the node kept it open for Raft rather than refusing it.
func raftStreamServed(t *testing.T, target string, cert tls.Certificate) bool {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: opTimeout}, "tcp", target, &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{alpnRaft}})
	if err != nil {
		return false
	}
	defer conn.Close()
	// TLS 1.3: the server checks the client's certificate after the
	// client's handshake ends; its alert arrives on the first read.
	conn.SetDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	return err == nil || errors.As(err, &ne) && ne.Timeout()
}

// TestNodePortRefusesNonMembers (hole 2): the node port took any node
// certificate of the CA. A thief of the CA key mints one for its own key,
// or for a member's ID with its own key: neither is a peer, on the RPC
// protocol or on Raft.
func TestNodePortRefusesNonMembers(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	target := c.nodes[1].cfg.RaftAddr
	mint := func(id string) tls.Certificate {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := c.ca.Issue(pub, RoleNode, id, []string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	member := c.nodes[0].n.cons.current().tls.cert
	if _, err := nodePortStatus(target, member); err != nil {
		t.Fatalf("a member's own certificate was refused: %v", err)
	}
	if !raftStreamServed(t, target, member) {
		t.Fatalf("a member's Raft stream was refused")
	}
	for name, cert := range map[string]tls.Certificate{
		"a new node ID":       mint("intruder"),
		"a member's ID":       mint(c.nodes[0].id()),
		"the target's own ID": mint(c.nodes[1].id()),
	} {
		if p, err := nodePortPartial(target, cert); err == nil {
			t.Errorf("a partial was asked with a CA-minted certificate for %s: answered %s", name, p)
		} else if !strings.Contains(err.Error(), "not a member") && !strings.Contains(err.Error(), "not for the key") {
			t.Errorf("a partial asked with a CA-minted certificate for %s: %v, want a refusal for not being a member", name, err)
		}
		if raftStreamServed(t, target, cert) {
			t.Errorf("a Raft stream with a CA-minted certificate for %s was kept", name)
		}
	}
}

// TestNodeKeepsTheClusterKeyItChecksSnapshotsAgainst: a restarted node's
// state is empty until Raft restores a snapshot, so the key it checks that
// snapshot against must be on its disk: every member writes the cluster
// key into membership.json once its state has it, and a restarted node
// pins it before Raft starts.
func TestNodeKeepsTheClusterKeyItChecksSnapshotsAgainst(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	want := c.status(c.nodes[0]).PublicKey
	for _, tn := range c.nodes {
		c.waitFor(settleTimeout, func() (bool, string) {
			var m membership
			if err := readJSON(filepath.Join(tn.cfg.DataDir, membershipFile), &m); err != nil {
				return false, err.Error()
			}
			return bytes.Equal(m.ClusterKey, want), tn.id() + "'s membership.json does not hold the cluster key"
		})
	}
	victim := c.nodes[2]
	c.stop(victim)
	c.restart(victim)
	if pinned := victim.n.runtime().m.ClusterKey; !bytes.Equal(pinned, want) {
		t.Fatalf("the restarted node runs with cluster key %x, want %x", pinned, want)
	}
}

// TestStolenNodeCredentialsOverTheNetwork: the thief of one member's data
// directory (t-1 = 1 of 3) takes its identity key and node certificate to
// the network, as that member, while the cluster runs. The node port lets
// it in (it is a member), and it asks a live holder for partials: as a
// gateway of its own for a key no operator opened to any gateway, and as
// if it were an operator. Both are refused, and with its own share the
// two partials it would need are never in its hands.
func TestStolenNodeCredentialsOverTheNetwork(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("luks/stolen", randomBytes(t, 32))
	victim := c.nodes[0]
	target := c.nodes[1]
	c.waitHasKey(target, "luks/stolen")
	dir := copyDir(t, victim.cfg.DataDir)

	var id identity
	if err := readJSON(filepath.Join(dir, identityFile), &id); err != nil {
		t.Fatal(err)
	}
	var m membership
	if err := readJSON(filepath.Join(dir, membershipFile), &m); err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseCertPEM(m.NodeCert)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: id.SignKey, Leaf: leaf}
	if _, err := nodePortStatus(target.cfg.RaftAddr, cert); err != nil {
		t.Fatalf("the stolen member credentials do not even reach the node port: %v", err)
	}

	k := storedKey(t, target, "luks/stolen")
	var epoch uint64
	target.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	ask := func(rel *fsm.ReleaseRequest) (int, string) {
		sg, err := fsm.Sign(id.NodeID, id.SignKey, &fsm.Command{Type: fsm.TypeRelease, Release: rel,
			Nonce: randomBytes(t, 16), IssuedAt: time.Now().UnixNano()})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(&partialRequest{Request: sg, Version: k.Version, Epoch: epoch})
		return nodePortPost(t, target.cfg.RaftAddr, cert, "/internal/v1/partial", body)
	}
	for name, rel := range map[string]*fsm.ReleaseRequest{
		"as its own kxd gateway": {Key: "luks/stolen", Op: fsm.OpGet, Gateway: fsm.GatewayKxd},
		"as an operator":         {Key: "luks/stolen", Op: fsm.OpGet, Ephemeral: randomBytes(t, 32)},
	} {
		status, body := ask(rel)
		if status == http.StatusOK {
			t.Errorf("%s: the holder answered a partial: %s", name, body)
		}
		if !strings.Contains(body, "not served by the kxd gateway") && !strings.Contains(body, "unknown operator") {
			t.Errorf("%s: status %d, %s; want a refusal naming the gateway access or the unknown operator", name, status, body)
		}
	}
}

// nodePortPost posts body to path on the node port at target, presenting
// cert, over HTTP/2, and returns the status and the body of the answer. A
// refusal must be the same over the node call protocol, where body is
// posted again (an answered request is not: its nonce is spent).
func nodePortPost(t *testing.T, target string, cert tls.Certificate, path string, body []byte) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: opTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, NextProtos: []string{alpnRPC}},
		ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("https://"+target+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting to %s%s: %v", target, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, string(b)
	}
	status, callBody, err := nodePortCall(target, cert, http.MethodPost, path, body)
	if err != nil {
		t.Fatalf("calling %s%s: %v", target, path, err)
	}
	if status != resp.StatusCode {
		t.Errorf("%s%s answered %d over HTTP/2 (%s) but %d over the node call protocol (%s)", target, path, resp.StatusCode, b, status, callBody)
	}
	return resp.StatusCode, string(b)
}

// TestHolderComputingAheadOfItsReadAnswersWhatItsReadAllows: a holder
// computes its sealed partial while its own read is in flight, on the
// state it has applied. Here that state is stale (the key is active in
// it), and a revoke was acknowledged before the request: once the holder
// has applied its read, it refuses, and the partial it computed never
// leaves it.
func TestHolderComputingAheadOfItsReadAnswersWhatItsReadAllows(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createSecret("ahead", randomBytes(t, 32))
	leader := c.leader()
	victim := c.anyRunning(leader)
	c.waitHasKey(victim, "ahead")
	req := c.holderRequest("ahead", 0)

	resume := c.holdApplies(victim) // the victim acknowledges entries but applies none
	c.revoke(leader, "ahead")
	done := victim.answerSealedLater(req)
	// The victim's read is answered by the leader (past the revoke) while
	// the victim, holding its applies, can only have computed on the state
	// before it.
	c.waitFor(settleTimeout, func() (bool, string) {
		victim.n.holderReads.mu.Lock()
		defer victim.n.holderReads.mu.Unlock()
		return !victim.n.holderReads.running && len(victim.n.holderReads.waiting) == 0, "the victim's read is still in flight"
	})
	resume()
	wantHolderDenied(t, <-done, "for a key revoked before the request")
}

// TestNodeKeepsTheFoundingEntryItReplaysAgainst: a member restarted
// without a Raft snapshot applies its log again from index 1, as the
// leader sends it; a lying leader could send a history from a founding
// entry of its own (fsm.TestPinnedFoundingRefusesForgedLog). So every
// member writes the hash of the founding entry it applied into
// membership.json once a checkpoint of its state is certified, and a
// restarted node pins it before Raft starts, then applies the real log
// again to the same state.
func TestNodeKeepsTheFoundingEntryItReplaysAgainst(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	want := c.nodes[0].n.fsm.Founding()
	if len(want) == 0 {
		t.Fatal("the founding node has no founding entry hash")
	}
	for _, tn := range c.nodes {
		c.waitFor(settleTimeout, func() (bool, string) {
			var m membership
			if err := readJSON(filepath.Join(tn.cfg.DataDir, membershipFile), &m); err != nil {
				return false, err.Error()
			}
			return bytes.Equal(m.Founding, want), tn.id() + "'s membership.json does not hold the founding entry's hash"
		})
	}
	victim := c.nodes[2]
	c.stop(victim)
	c.restart(victim)
	if pinned := victim.n.runtime().m.Founding; !bytes.Equal(pinned, want) {
		t.Fatalf("the restarted node runs with founding hash %x, want %x", pinned, want)
	}
	c.createSecret("luks/after-restart", randomBytes(t, 32))
	c.waitHasKey(victim, "luks/after-restart")
	if got := victim.n.fsm.Founding(); !bytes.Equal(got, want) {
		t.Fatalf("the restarted node applied founding entry %x again, want %x", got, want)
	}
}

// wantLaggingHolderRefuses revokes key through leader while victim
// acknowledges entries but applies none, and asserts that victim then
// gives no sealed partial for req (what: the attack, for the failure).
func (c *testCluster) wantLaggingHolderRefuses(leader, victim *testNode, key string, req *partialRequest, what string) {
	c.t.Helper()
	resume := c.holdApplies(victim)
	defer resume()
	c.revoke(leader, key)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if p, err := victim.n.answerSealedPartial(ctx, req); err == nil {
		c.t.Fatalf("a lagging holder answered share %d %s", p.Index, what)
	}
}

// heldAnswer is what a holder answered a sealed partial request.
type heldAnswer struct {
	p   *SealedPartial
	err error
}

// answerSealedLater asks tn for its sealed partial for req in the
// background; the answer comes on the channel.
func (tn *testNode) answerSealedLater(req *partialRequest) <-chan heldAnswer {
	done := make(chan heldAnswer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		p, err := tn.n.answerSealedPartial(ctx, req)
		done <- heldAnswer{p, err}
	}()
	return done
}

// wantHolderDenied asserts that a holder refused, as denied (what: the
// request's fault, for the failure).
func wantHolderDenied(t *testing.T, a heldAnswer, what string) {
	t.Helper()
	if a.err == nil {
		t.Fatalf("the holder answered share %d %s", a.p.Index, what)
	}
	if KindOf(a.err) != KindDenied {
		t.Fatalf("holder: %v (kind %s), want %s", a.err, KindOf(a.err), KindDenied)
	}
}
