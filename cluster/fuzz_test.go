package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
)

// FuzzCheckDeal feeds arbitrary deal bytes, as a dealer's log entry
// carries them, to the checks every replica runs in Apply: they must
// refuse, never panic, and accept only what also combines.
func FuzzCheckDeal(f *testing.F) {
	f.Add([]byte(`{"Dealer":1,"Commits":[],"Shares":[]}`))
	f.Add([]byte(`{"Dealer":1,"Commits":["AAAA"],"Shares":[{"Index":1,"Ciphertext":"AA=="}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"Unknown":1}`))
	round := &fsm.Reshare{Round: 7, Fresh: true, Threshold: 1, Needed: 1,
		Members: []fsm.Member{{NodeID: "n1", Index: 1, EncKey: make([]byte, 32)}}, Dealers: []uint32{1}}
	f.Fuzz(func(t *testing.T, deal []byte) {
		var c dealChecker
		if err := c.CheckDeal(round, nil, 1, deal); err != nil {
			return
		}
		r := *round
		r.Deals = []fsm.Deal{{Dealer: 1, Deal: deal}}
		if _, err := c.CombinePublic(&r); err != nil {
			b, _ := json.Marshal(deal)
			t.Fatalf("a deal passed the checks but does not combine: %s: %v", b, err)
		}
	})
}

// FuzzRSAShareAnswer feeds arbitrary bytes as a holder's threshold RSA
// share, the way a coordinator receives them, to the parse and the
// combination with two honest shares of a 3-of-4 deal: they must refuse or
// combine, never panic, and a result always verifies with the public key.
func FuzzRSAShareAnswer(f *testing.F) {
	priv := rsaKey(f)
	keyShares, err := tssrsa.Deal(rand.Reader, 4, 3, priv, false)
	if err != nil {
		f.Fatal(err)
	}
	_, in := pkcs1Input(f, &priv.PublicKey, "fuzz")
	var honest []namedShare
	for i, ks := range keyShares[:3] {
		s, err := ks.Sign(rand.Reader, &priv.PublicKey, in, false)
		if err != nil {
			f.Fatal(err)
		}
		if i == 2 {
			b, _ := s.MarshalBinary()
			f.Add(b)
			continue
		}
		honest = append(honest, namedShare{node: fmt.Sprintf("n%d", i+1), share: s})
	}
	f.Add([]byte{0, 4, 0, 3, 0, 3, 0, 1, 0})
	f.Add([]byte{0, 4, 0, 3, 0, 3, 0, 2, 0, 1})
	f.Add([]byte{0, 4, 0, 3, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseRSAShare(b, "n3", 3, 4, 3)
		if err != nil {
			return
		}
		out, _, err := combineRSA(&priv.PublicKey, 4, 3, append(slices.Clone(honest), namedShare{node: "n3", share: s}), in)
		if err != nil {
			return
		}
		if new(big.Int).Exp(new(big.Int).SetBytes(out), big.NewInt(int64(priv.E)), priv.N).Cmp(new(big.Int).SetBytes(in)) != 0 {
			t.Fatalf("combined a result that does not verify from share %x", b)
		}
	})
}

// FuzzVerifyBackup feeds arbitrary bytes, as a backup file holds them, to
// the checks keyd snapshot restore runs: they must refuse, never panic.
// Nothing without a valid certificate or history under the pin passes.
func FuzzVerifyBackup(f *testing.F) {
	f.Add([]byte(`{"format":"keyquorum-backup/1","sha256":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","snapshot":""}`))
	f.Add([]byte(`{"format":"keyquorum-backup/1","snapshot":"eyJ2ZXJzaW9uIjoxLCJlbnRyaWVzIjpbXX0="}`))
	f.Add([]byte(`null`))
	pin := make([]byte, 32)
	pin[0] = 1
	f.Fuzz(func(t *testing.T, data []byte) {
		if info, _, err := VerifyBackup(data, pin); err == nil {
			t.Fatalf("a backup verified under a key nobody holds: %+v", info)
		}
	})
}

// FuzzAutoJoinRequest: a join request (POST /v1/bootstrap/join) of any
// bytes is decoded and its signatures checked without a panic, and none
// passes for a key that did not sign it.
func FuzzAutoJoinRequest(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(nil)
	n := &fsm.Node{ID: "n2", RaftAddr: "a:1", APIAddr: "a:2", GossipAddr: "a:3", SignKey: pub, EncKey: make([]byte, 32)}
	msg := fsm.AutoJoinMessage("0123456789abcdef", n)
	good, _ := json.Marshal(&fsm.AutoJoin{Node: n, Token: "0123456789abcdef", TokenSig: ed25519.Sign(key, msg), NodeSig: ed25519.Sign(key, msg)})
	f.Add(good)
	f.Add([]byte(`{"node":null}`))
	other, _, _ := ed25519.GenerateKey(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req fsm.AutoJoin
		if json.Unmarshal(b, &req) != nil {
			return
		}
		if fsm.CheckAutoJoin(other, &req) == nil {
			t.Fatal("a request passed for a token key that signed nothing")
		}
	})
}

// FuzzAutoJoinReply: a member's answer of any bytes is decoded and checked
// without a panic, and none passes for a CA fingerprint nothing matches.
func FuzzAutoJoinReply(f *testing.F) {
	ca, _ := NewCA("fuzz")
	pub, _, _ := ed25519.GenerateKey(nil)
	join, _ := ca.NewJoinCA()
	cert, _ := join.IssueChain(pub, RoleNode, "n2", nil)
	good, _ := json.Marshal(&api.AutoJoinReply{ClusterID: "fuzz", CACert: ca.CertPEM, NodeCert: cert, GossipKey: make([]byte, 32)})
	f.Add(good)
	fp, _ := api.CAFingerprint(ca.CertPEM)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r api.AutoJoinReply
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if checkAdmitted(&r, strings.Repeat("0", 64), "n2", pub) == nil {
			t.Fatal("an answer passed for a fingerprint no CA has")
		}
		checkAdmitted(&r, fp, "n2", pub)
	})
}
