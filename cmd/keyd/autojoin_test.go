package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
)

// TestRetryJoinOverHTTPS: three keyd nodes in this process, each with its
// own API, Raft and gossip ports. node1 is initialized once (keyctl
// cluster init --auto-join); node2 and node3 are started with nothing but
// --retry-join (every node's address), a join token each and the CA
// fingerprint, and join by themselves over the API; the key is made among
// the three, pinned by t members' proofs, and a secret created through
// node1 is released through node3. node2, restarted with the same flags,
// is back in the cluster without asking again: both tokens stay spent by
// the node they admitted and the cluster still has three members.
func TestRetryJoinOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	ports, err := cluster.FreeLoopbackPorts(9)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	flagsOf := func(i int) nodeFlags {
		return nodeFlags{id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), requestTimeout: 3 * time.Second,
			apiAddr: ports[3*i], raftAddr: ports[3*i+1], gossipAddr: ports[3*i+2]}
	}
	var nodes []*runningNode
	t.Cleanup(func() {
		for _, r := range nodes {
			r.shutdown()
		}
	})
	first := flagsOf(0)
	first.joinToken, _, _, _ = api.NewJoinToken()
	r1, err := startNode(first, log)
	if err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, r1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	creds, _, err := client.InitCluster(ctx, first.apiAddr, "admin", 3, client.JoinOptions{Token: first.joinToken,
		Fingerprint: api.Fingerprint(r1.node.Identity().SignKey), AutoJoin: true})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := api.CAFingerprint(creds.CACert)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClient(first.apiAddr, creds)
	if err != nil {
		t.Fatal(err)
	}
	every := []string{ports[0], ports[3], ports[6]}
	joinerFlags := map[int]nodeFlags{}
	for i := 1; i <= 2; i++ {
		f := flagsOf(i)
		if f.joinToken, err = c.CreateJoinToken(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		f.retryJoin, f.joinCAFingerprint = every, fp
		joinerFlags[i] = f
		r, err := startNode(f, log)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, r)
	}
	st := waitFormed(ctx, t, c, 0)
	if _, err := c.Pin(ctx); err != nil {
		t.Fatalf("pinning the key the auto-joined cluster made: %v", err)
	}
	secret := []byte("formed by retry-join")
	if _, err := c.CreateSecret(ctx, "db/auto", secret, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c3, err := client.NewClient(ports[6], c.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c3.Get(ctx, "db/auto"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("release through n3: %q, %v", got, err)
	}

	if err := nodes[1].shutdown(); err != nil {
		t.Fatal(err)
	}
	if nodes[1], err = startNode(joinerFlags[1], log); err != nil {
		t.Fatal(err)
	}
	c2, err := client.NewClient(ports[3], c.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, err := c2.Get(ctx, "db/auto")
		if err == nil && bytes.Equal(got, secret) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("release through the restarted n2: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	after := waitFormed(ctx, t, c, 0)
	if after.Epoch != st.Epoch || len(after.Members) != 3 {
		t.Fatalf("after n2's restart: epoch %d with %d members, want %d with 3", after.Epoch, len(after.Members), st.Epoch)
	}
	tokens, err := c.JoinTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spent := map[string]bool{}
	for _, tok := range tokens {
		spent[tok.SpentBy] = true
	}
	if len(tokens) != 2 || !spent["n2"] || !spent["n3"] {
		t.Fatalf("join tokens after the restart: %+v, want two, spent by n2 and n3", tokens)
	}
}

// waitFormed waits until the cluster has three members and a key past
// epoch after, with no resharing in progress.
func waitFormed(ctx context.Context, t *testing.T, c *client.Client, after uint64) *api.Status {
	t.Helper()
	for {
		st, err := c.Status(ctx)
		if err == nil && len(st.Members) == 3 && st.Epoch > after && st.Resharing == nil {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the cluster did not form: %+v, %v", st, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
