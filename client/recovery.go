package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/pki"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// PlanRebuild makes the plan of a rebuild from the recovery kit: the new
// nodes at addrs (started once, unjoined), each vouched for by the
// fingerprint keyd printed on its machine, get share indexes 1 to n; t
// defaults to a majority.
func PlanRebuild(ctx context.Context, clusterID string, addrs, fingerprints []string, holders []uint32, t int) (*api.RebuildPlan, error) {
	if len(addrs) != len(fingerprints) {
		return nil, errors.New("give each new node's fingerprint, as keyd printed it on its machine")
	}
	if len(addrs) < 1 || len(addrs) > fsm.MaxNodes {
		return nil, fmt.Errorf("a rebuild makes 1 to %d nodes, got %d", fsm.MaxNodes, len(addrs))
	}
	if t == 0 {
		t = fsm.DefaultThreshold(len(addrs))
	}
	p := &api.RebuildPlan{ClusterID: clusterID, Holders: slices.Clone(holders), Threshold: t}
	for i, addr := range addrs {
		id, err := FetchIdentity(ctx, addr)
		if err != nil {
			return nil, err
		}
		if err := checkFingerprint(addr, id, fingerprints[i]); err != nil {
			return nil, err
		}
		rec := nodeRecord(id)
		rec.Index = uint32(i + 1)
		p.Nodes = append(p.Nodes, rec)
	}
	return p, nil
}

// SignRebuild signs the rebuild of plan with the officers' deals, as the
// admin of creds, and issues each new node's certificate with the CA key.
func SignRebuild(creds *Credentials, plan *api.RebuildPlan, deals [][]byte) (*api.RebuildOrder, error) {
	if len(creds.CAKey) == 0 || len(creds.GossipKey) == 0 {
		return nil, errors.New("a rebuild needs the CA key and the gossip key (KEYQUORUM_CA_KEY, KEYQUORUM_GOSSIP_KEY)")
	}
	ca, err := pki.LoadCA(creds.CACert, creds.CAKey)
	if err != nil {
		return nil, err
	}
	entry, err := signAs(creds, &fsm.Command{Type: fsm.TypeRebuild, Rebuild: &fsm.Rebuild{
		Holders: plan.Holders, Threshold: plan.Threshold, Nodes: plan.Nodes, Deals: deals}})
	if err != nil {
		return nil, err
	}
	o := &api.RebuildOrder{Entry: entry, CACert: creds.CACert, GossipKey: creds.GossipKey, NodeCerts: map[string][]byte{}}
	for _, n := range plan.Nodes {
		cert, err := ca.Issue(ed25519.PublicKey(n.SignKey), pki.RoleNode, n.ID, pki.NodeHosts(n.APIAddr, n.RaftAddr))
		if err != nil {
			return nil, err
		}
		o.NodeCerts[n.ID] = cert
	}
	return o, nil
}

// WriteOfficerKey makes a recovery officer's encryption key: the private
// key into path (hex, mode 0600, never over an existing file); it returns
// the public key, which cluster init names the officer by.
func WriteOfficerKey(path string) ([]byte, error) {
	priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	defer clear(priv)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(priv)); err != nil {
		f.Close()
		return nil, err
	}
	return pub, f.Close()
}

// ReadOfficerKey reads the private key WriteOfficerKey wrote.
func ReadOfficerKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	priv, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not an officer key (keyctl recovery keygen writes one): %w", path, err)
	}
	if _, err := shamir.EncryptionPublicKey(priv); err != nil {
		clear(priv)
		return nil, fmt.Errorf("%s: not an officer key: %w", path, err)
	}
	return priv, nil
}
