package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// joinTokenFile holds the join token a node made for itself because it
// was started without one (Config.JoinToken); it is removed once the node
// is in a cluster.
const joinTokenFile = "join-token"

// JoinTokenPath is where an unjoined node started without a join token
// keeps the one it made for itself: whoever can read the node's data
// directory can start it.
func JoinTokenPath(dataDir string) string { return filepath.Join(dataDir, joinTokenFile) }

// loadJoinToken returns the node's join token: the configured one, else
// the one in its data directory, made there on first use.
func loadJoinToken(cfg *Config) (string, error) {
	if cfg.JoinToken != "" {
		return cfg.JoinToken, nil
	}
	path := JoinTokenPath(cfg.DataDir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	tok, _, _, err := api.NewJoinToken()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the node's join token: %w", err)
	}
	return tok, nil
}

// checkJoinToken compares a start request's token with the node's in
// constant time (of the hashes, so not even the length leaks).
func (n *Node) checkJoinToken(got string) error {
	want := sha256.Sum256([]byte(n.joinToken))
	have := sha256.Sum256([]byte(got))
	if n.joinToken == "" || subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
		return Errorf(KindUnauthenticated, "the start request does not carry the join token node %q was started with", n.id.NodeID)
	}
	return nil
}

// IdentityOf reads, or on first use creates, the identity of the node
// nodeID whose data directory is dataDir, without starting it ("keyd
// identity"); as NewNode, it refuses a directory of another node.
func IdentityOf(dataDir, nodeID string) (Identity, error) {
	if nodeID == "" {
		return Identity{}, errors.New("node ID is empty")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Identity{}, err
	}
	id, err := loadOrCreateIdentity(dataDir, nodeID)
	if err != nil {
		return Identity{}, err
	}
	return Identity{NodeID: id.NodeID, SignKey: id.SignKey.Public().(ed25519.PublicKey), EncKey: id.EncPub}, nil
}

// JoinTokenService lists the cluster's join tokens. *Node implements it.
type JoinTokenService interface {
	JoinTokens(ctx context.Context, principal string) ([]api.JoinTokenInfo, error)
}

var _ JoinTokenService = (*Node)(nil)

// JoinTokens lists the join tokens not yet expired, spent or not, at a
// linearizable read; only admins may.
func (n *Node) JoinTokens(ctx context.Context, principal string) ([]api.JoinTokenInfo, error) {
	out := []api.JoinTokenInfo{}
	var denied bool
	err := n.consistent(ctx, func(s *fsm.State) {
		if o := s.Operators[principal]; o == nil || !o.Admin {
			denied = true
			return
		}
		for _, t := range s.JoinTokens {
			out = append(out, api.JoinTokenInfo{ID: t.ID, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
				ExpiresAt: t.ExpiresAt, SpentBy: t.SpentBy, SpentAt: t.SpentAt})
		}
	})
	if err != nil {
		return nil, err
	}
	if denied {
		return nil, Errorf(KindDenied, "%s is not an admin operator: only admins see join tokens", principal)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}
