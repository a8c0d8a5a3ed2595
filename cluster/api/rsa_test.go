package api

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	tssrsa "github.com/cloudflare/circl/tss/rsa"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

func testRSA(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaPriv = k
	})
	return rsaPriv
}

// dealt is a key dealt 2-of-3 to three holders, with their identity keys.
type dealt struct {
	key     *fsm.Key
	members []MemberStatus
	idents  []ed25519.PrivateKey
}

func deal(t testing.TB, priv *rsa.PrivateKey) *dealt {
	d := &dealt{}
	for i := range 3 {
		pub, sk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d.idents = append(d.idents, sk)
		d.members = append(d.members, MemberStatus{ID: fmt.Sprintf("node%d", i+1), Index: uint32(i + 7), Holder: true, SignKey: pub})
	}
	public, rk, err := DealRSA(rand.Reader, "kq-test", "tls/a", priv, 2, d.members)
	if err != nil {
		t.Fatal(err)
	}
	d.key = &fsm.Key{Name: "tls/a", Type: fsm.KeyTypeRSAThreshold, KeyDetail: &fsm.KeyDetail{Public: public, RSA: rk}}
	return d
}

func (d *dealt) open(t testing.TB, i int) *tssrsa.KeyShare {
	enc, err := shamir.EncryptionKeyFromEd25519(d.idents[i])
	if err != nil {
		t.Fatal(err)
	}
	ks, err := OpenRSAShare(enc, "kq-test", d.key, &d.key.RSA().Shares[i])
	if err != nil {
		t.Fatalf("holder %d: %v", i+1, err)
	}
	return ks
}

// TestDealRSASealsEachShareToItsHolder: each holder opens its own share,
// and only its own, and any two shares sign; a share opened under another
// key name, public key or index is refused.
func TestDealRSASealsEachShareToItsHolder(t *testing.T) {
	priv := testRSA(t)
	d := deal(t, priv)
	digest := sha256.Sum256([]byte("dealt"))
	in, err := tssrsa.PKCS1v15Padder{}.Pad(&priv.PublicKey, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	var shares []tssrsa.SignShare
	for i := range 3 {
		if sh := d.key.RSA().Shares[i]; sh.NodeID != d.members[i].ID || sh.Index != uint32(i+1) {
			t.Fatalf("share %d is for %s index %d", i, sh.NodeID, sh.Index)
		}
		s, err := d.open(t, i).Sign(rand.Reader, &priv.PublicKey, in, false)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
		sig, err := tssrsa.CombineSignShares(&priv.PublicKey, 3, 2, []tssrsa.SignShare{shares[pair[0]], shares[pair[1]]}, in)
		if err != nil || rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest[:], sig) != nil {
			t.Fatalf("holders %v: %v", pair, err)
		}
	}
	enc, _ := shamir.EncryptionKeyFromEd25519(d.idents[0])
	if _, err := OpenRSAShare(enc, "kq-test", d.key, &d.key.RSA().Shares[1]); err == nil {
		t.Error("holder 1 opened holder 2's share")
	}
	renamed := *d.key
	renamed.Name = "tls/b"
	if _, err := OpenRSAShare(enc, "kq-test", &renamed, &d.key.RSA().Shares[0]); err == nil {
		t.Error("a share opened under another key's name")
	}
	other := *d.key
	od := other.Detail()
	od.RSA = &fsm.RSAThresholdKey{Threshold: 3, Shares: d.key.RSA().Shares}
	other.SetDetail(od)
	if _, err := OpenRSAShare(enc, "kq-test", &other, &d.key.RSA().Shares[0]); err == nil {
		t.Error("a share opened for a state that lists another threshold")
	}
}

// reportRates adds the wall-clock rate of b.N operations and the rate per
// second of CPU time the process used (the per-core figure, which does not
// depend on what else the machine runs), given the CPU time at the start.
func reportRates(b *testing.B, unit string, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	if used := cpuTime() - cpu0; used > 0 && cpu0 > 0 {
		b.ReportMetric(float64(b.N)/used.Seconds(), unit+"/cpu-s")
	}
}

// The RSA-2048 benchmarks, on one core (go test -cpu 1): the bare
// crypto/rsa signature, which is also what an assembled key costs once a
// node holds it; one holder's share (open its sealed share, x^(2Δs_i)
// with circl's blinding); and the whole cryptographic cost of one 2-of-3
// threshold signature (two holders' shares and the combination, checked
// with e). The cluster's network and checks come on top: keybench
// measures them through the TLV gateway.

func BenchmarkRSA2048Bare(b *testing.B) {
	priv := testRSA(b)
	digest := sha256.Sum256([]byte("bench"))
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := priv.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "sig", cpu0)
}

func BenchmarkRSA2048ThresholdShare(b *testing.B) {
	priv := testRSA(b)
	d := deal(b, priv)
	digest := sha256.Sum256([]byte("bench"))
	in, _ := tssrsa.PKCS1v15Padder{}.Pad(&priv.PublicKey, crypto.SHA256, digest[:])
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := d.open(b, 0).Sign(rand.Reader, &priv.PublicKey, in, false); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "share", cpu0)
}

func BenchmarkRSA2048Threshold2of3(b *testing.B) {
	priv := testRSA(b)
	d := deal(b, priv)
	digest := sha256.Sum256([]byte("bench"))
	cpu0 := cpuTime()
	for b.Loop() {
		in, _ := tssrsa.PKCS1v15Padder{}.Pad(&priv.PublicKey, crypto.SHA256, digest[:])
		var ss []tssrsa.SignShare
		for i := range 2 {
			s, err := d.open(b, i).Sign(rand.Reader, &priv.PublicKey, in, false)
			if err != nil {
				b.Fatal(err)
			}
			ss = append(ss, s)
		}
		if _, err := tssrsa.CombineSignShares(&priv.PublicKey, 3, 2, ss, in); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, "sig", cpu0)
}
