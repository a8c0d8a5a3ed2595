package shamir

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestRecoveryKitRoundTrip is the cryptography of the recovery kit that
// docs/disaster-recovery.md designs, with the primitives resharing uses
// today: t holders reshare the cluster key to m officers with threshold k
// (an officer's encryption key may be its Ed25519 key's); every node is
// lost; k officers reshare to new nodes, checked against the kit's
// commitments; the new nodes open what was sealed to the old cluster key.
// The cluster secret is never assembled. k-1 officers make another key,
// and deals from a kit the operators did not create fail the check
// against the genuine kit's commitments.
func TestRecoveryKitRoundTrip(t *testing.T) {
	nodes := newNodes(t, 1, 2, 3)
	cluster := runDKG(t, nodes, 2, testContext)
	ct, err := Seal(rand.Reader, cluster.PublicKey(), testInfo, []byte("kept by the kit"))
	if err != nil {
		t.Fatal(err)
	}

	// Five officers, any three of whom rebuild; officer 5's encryption key
	// is its Ed25519 key.
	officers := newNodes(t, 1, 2, 3, 4, 5)
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if officers[4].encPriv, err = EncryptionKeyFromEd25519(edPriv); err != nil {
		t.Fatal(err)
	}
	officers[4].encPub = bytes.Clone(edPriv.Public().(ed25519.PublicKey))
	kitContext := []byte("recovery kit of cluster c1")
	kit := runReshare(t, cluster, nodes[1:], officers, 3, kitContext)
	if !SamePublicKey(cluster, kit) {
		t.Fatal("the kit is not a sharing of the cluster key")
	}

	// Every node is lost. Three officers deal to three new nodes.
	newCluster := newNodes(t, 1, 2, 3)
	rebuilt := runReshare(t, kit, []*node{officers[0], officers[2], officers[4]}, newCluster, 2, []byte("rebuild"))
	if !SamePublicKey(cluster, rebuilt) {
		t.Fatal("the rebuilt cluster has another key")
	}
	got, err := Open(rebuilt, ct, testInfo, partialsFrom(t, newCluster[1:], ct.R, testRelease), testRelease)
	if err != nil || string(got) != "kept by the kit" {
		t.Fatalf("the rebuilt cluster opens %q, %v", got, err)
	}

	// Two officers (k-1) make another key.
	rs, xs := recipientsOf(newNodes(t, 1, 2, 3))
	var two []*Deal
	for _, o := range officers[:2] {
		d, err := NewReshareDeal(rand.Reader, o.share, 2, rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		two = append(two, d)
	}
	if _, p, err := CombineReshare(two, nil, 0); err != nil || SamePublicKey(cluster, p) {
		t.Fatalf("k-1 officers' deals gave the cluster key (err %v)", err)
	}

	// A kit the operators did not create: its officers' deals do not
	// verify against the genuine kit's commitments.
	fakes := newNodes(t, 1, 2, 3, 4, 5)
	runDKG(t, fakes, 3, kitContext)
	d, err := NewReshareDeal(rand.Reader, fakes[0].share, 2, rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReshareDeal(d, kit, 2, xs); err == nil {
		t.Fatal("a deal from a kit the operators did not create verified against the genuine kit")
	}
}
