package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// TestFROSTDealChecks: the state machine's checker of FROST deals, with
// real deals. A holder's resharing of its own share passes; one that
// reshares another secret (to change the key), names another dealer, or
// deals at another threshold is refused. The combined commitments keep
// the public key, and the members' new shares make signatures that
// crypto/ed25519 accepts; fewer deals than the key's threshold combine
// nothing.
func TestFROSTDealChecks(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	scalar, err := shamir.Ed25519Scalar(priv)
	if err != nil {
		t.Fatal(err)
	}
	poly, shares, err := shamir.DealKey(rand.Reader, scalar, 2, []uint32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	key := &fsm.FROSTKey{Threshold: 2, Commits: poly.Commits}
	r := &fsm.Reshare{Round: 9, Threshold: 3}
	encPriv := map[uint32][]byte{}
	for _, i := range []uint32{1, 2, 4, 5} {
		priv, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		encPriv[i] = priv
		r.Members = append(r.Members, fsm.Member{NodeID: "n", Index: i, EncKey: pub})
	}
	dctx := frostDealContext("cid", r.Round, "sig/a")
	deal := func(sh *shamir.Share, threshold int) []byte {
		d, err := shamir.NewReshareDeal(rand.Reader, sh, threshold, recipients(r), dctx)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(d)
		return b
	}
	var ck dealChecker
	d1, d2 := deal(shares[0], 3), deal(shares[1], 3)
	if err := ck.CheckFROSTDeal(r, key, 1, d1); err != nil {
		t.Fatalf("a holder's resharing of its share: %v", err)
	}
	if err := ck.CheckFROSTDeal(r, key, 2, d1); err == nil {
		t.Error("a deal naming dealer 1 was accepted from dealer 2")
	}
	other, _ := shamir.Ed25519Scalar(ed25519.NewKeyFromSeed(make([]byte, 32)))
	_, forged, _ := shamir.DealKey(rand.Reader, other, 2, []uint32{1, 2, 3})
	if err := ck.CheckFROSTDeal(r, key, 1, deal(forged[0], 3)); err == nil {
		t.Error("a deal of another secret than the dealer's share was accepted")
	}
	if err := ck.CheckFROSTDeal(r, key, 1, deal(shares[0], 2)); err == nil {
		t.Error("a deal at another threshold than the round's was accepted")
	}
	if _, err := ck.CombineFROST(r, key, [][]byte{d1}); err == nil {
		t.Error("one deal of a 2-of-3 key combined")
	}
	commits, err := ck.CombineFROST(r, key, [][]byte{d1, d2})
	if err != nil || len(commits) != 3 || string(commits[0]) != string(pub) {
		t.Fatalf("combined commitments %d, %v: want 3 with the public key first", len(commits), err)
	}
	rd := &fsm.Reshare{Round: r.Round, Threshold: 3, Members: r.Members, Deals: []fsm.Deal{
		{Dealer: 1, Frost: []fsm.FROSTDeal{{Key: "sig/a", Deal: d1}}},
		{Dealer: 2, Frost: []fsm.FROSTDeal{{Key: "sig/a", Deal: d2}}},
	}, Frost: []fsm.FROSTRound{{Key: "sig/a", Public: pub, Commits: commits}}}
	var fresh []*shamir.Share
	for _, m := range r.Members {
		es := &epochShare{}
		if err := combineFROST("cid", rd, &m, encPriv[m.Index], es); err != nil {
			t.Fatalf("member %d: %v", m.Index, err)
		}
		for _, sh := range es.Frost {
			fresh = append(fresh, sh)
		}
	}
	if len(fresh) != 4 || !signsWith(t, pub, fresh[:3]) {
		t.Fatalf("%d new shares; 3 of them must sign under the same public key", len(fresh))
	}
	if signsWith(t, pub, fresh[:2]) {
		t.Fatal("2 new shares of a 3-of-4 key sign")
	}
	// A sub-share that does not open: the member's complaint holds.
	bad, _ := decodeDeal(d2)
	for i := range bad.Shares {
		if bad.Shares[i].Index == 4 {
			bad.Shares[i].Ciphertext[shamir.PointSize+1] ^= 0x80
		}
	}
	c, err := shamir.NewDealComplaint(rand.Reader, bad, 4, encPriv[4], dctx)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := json.Marshal(c)
	badRaw, _ := json.Marshal(bad)
	if err := ck.CheckFROSTComplaint("cid", r, &r.Members[2], 2, "sig/a", badRaw, proof); err != nil {
		t.Errorf("a complaint against a sub-share that does not open was refused: %v", err)
	}
	good, _ := shamir.NewDealComplaint(rand.Reader, mustDecodeDeal(t, d2), 4, encPriv[4], dctx)
	goodProof, _ := json.Marshal(good)
	if err := ck.CheckFROSTComplaint("cid", r, &r.Members[2], 2, "sig/a", d2, goodProof); err == nil {
		t.Error("a complaint against a good sub-share was upheld")
	}
	if err := ck.CheckFROSTComplaint("cid", r, &r.Members[2], 2, "sig/b", badRaw, proof); err == nil {
		t.Error("a complaint proved under another key's context was upheld")
	}
}

func mustDecodeDeal(t *testing.T, b []byte) *shamir.Deal {
	t.Helper()
	d, err := decodeDeal(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
