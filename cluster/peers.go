package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/keyquorum/keyquorum/fsm"
)

// Who may talk to a node on its node port: current members only. The CA
// signs node certificates for two years, a removed node keeps its
// certificate and whoever steals the CA key can mint one, so a certificate
// of the CA says only that someone once admitted the holder. A peer is a
// member when the replicated state lists a node with the ID its certificate
// names and the certificate's key is that node's signing key. This holds
// for Raft streams (when they open, and open ones are closed as soon as
// the peer's removal applies) and for every node-to-node request but one:
// GET /internal/v1/status answers any node of the CA, because a node that
// was removed while it was down learns it from its old peers' status (to
// erase its shares), and a status holds nothing secret (IDs, the epoch, the
// applied index and the state hash).
//
// A node whose state lists no node at all (a node that is joining, or one
// restarted without a snapshot, before Raft replays its log to it) cannot
// tell members apart, and accepts any node certificate of the CA until its
// state names the members.

// isMember is nodeTLS.member for this node.
func (n *Node) isMember(id string, key ed25519.PublicKey) error {
	var err error
	n.fsm.Read(func(s *fsm.State) {
		if len(s.Nodes) == 0 {
			return
		}
		switch m := s.Nodes[id]; {
		case m == nil:
			err = fmt.Errorf("node %s is not a member of the cluster", id)
		case !bytes.Equal(m.SignKey, key):
			err = fmt.Errorf("the certificate of node %s is not for the key the cluster holds for it", id)
		}
	})
	return err
}

// membersOnly refuses node-to-node requests from a peer that is no longer
// a member, on a connection opened while it was one.
func (n *Node) membersOnly(t *nodeTLS, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == statusPath {
			h.ServeHTTP(w, r)
			return
		}
		if err := t.peerMember(r.TLS); err != nil {
			writeRPC(w, nil, Errorf(KindUnauthenticated, "%v", err))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// dropRemovedPeers closes the Raft streams of peers that stopped being
// members, each time the state changes.
func (c *consensus) dropRemovedPeers(ctx context.Context, run *raftRun) {
	for {
		_, changed := c.rfsm.watch()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		if closed := run.tls.raftConns.closeIf(func(cs *tls.ConnectionState) bool { return run.tls.peerMember(cs) != nil }); closed > 0 {
			c.log.Info("closed raft streams of removed nodes", "count", closed)
		}
	}
}
