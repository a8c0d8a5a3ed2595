package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

// TestClientNamesASmallOrderPartial: a lying holder (its share, its
// certificate and the code) answers a release with s*R + T, T of order 8,
// and a DLEQ proof it ground until the challenge is a multiple of 8, so
// the proof verifies. The client checks the values' subgroup once, on
// their combination (shamir.Verifier.VerifyProof): it must refuse the
// release and name that holder, and only it, unless the holder's Lagrange
// coefficient kills T in the combination, when it opens the right secret.
// The first holder's or the second's partial is the lying one; with
// shares 1 and 2 both are refused, with 1 and 3 the third's, with 2 and
// 3 both.
func TestClientNamesASmallOrderPartial(t *testing.T) {
	c := newTestCluster(t, 3)
	secret := randomBytes(t, 32)
	c.createSecret("torsion", secret)
	refused := 0
	for _, at := range []int{0, 1} {
		sg := c.releaseRequest("torsion")
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sr, err := c.nodes[0].n.Release(ctx, sg)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if at >= len(sr.Partials) {
			t.Fatalf("%d partials relayed", len(sr.Partials))
		}
		var cmd fsm.Command
		if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
			t.Fatal(err)
		}
		rctx := fsm.ReleaseContext(sr.ClusterID, "torsion", sr.Version, sr.Epoch, sg.Payload)

		lying := *sr
		lying.Partials = append([]SealedPartial(nil), sr.Partials...)
		victim := &lying.Partials[at]
		var share *shamir.Share
		for _, tn := range c.nodes {
			if tn.n.id.NodeID == victim.Node {
				share = tn.n.shares.current(sr.Epoch)
			}
		}
		if share == nil {
			t.Fatalf("no share of node %s", victim.Node)
		}
		plain, _ := json.Marshal(groundSmallOrderPartial(t, share, sr.R, rctx))
		ct, err := shamir.SealX25519(rand.Reader, cmd.Release.Ephemeral, fsm.PartialSealInfo(rctx, victim.Index), plain)
		if err != nil {
			t.Fatal(err)
		}
		victim.R, victim.Sealed = ct.R, ct.Sealed
		got, err := c.openRelease(sg, &lying)
		if err == nil {
			if !bytes.Equal(got, secret) {
				t.Fatalf("the client opened a release with share %d's small-order component to another secret", victim.Index)
			}
			t.Logf("share %d's small-order component vanished in the combination: the right secret", victim.Index)
			continue
		}
		refused++
		want := "partial of share " + itoa(victim.Index) + " (node \"" + victim.Node + "\")"
		if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "rejected 1 of") {
			t.Errorf("the client's error %q does not name %s alone", msg, want)
		}
	}
	if refused == 0 {
		t.Fatal("no lying holder was named")
	}
}

// groundSmallOrderPartial is shamir.ComputePartial's partial with the
// value s*R + T, T of order 8, and nonces tried until the challenge c is a
// multiple of 8: then c*T is the identity and the verifier's recomputed
// commitments are the prover's (the challenge as in shamir's dleqChallenge).
func groundSmallOrderPartial(t *testing.T, sh *shamir.Share, R, context []byte) *shamir.Partial {
	t.Helper()
	T, err := new(edwards25519.Point).SetBytes(mustDecodeHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if err != nil {
		t.Fatal(err)
	}
	Rp, err := new(edwards25519.Point).SetBytes(R)
	if err != nil {
		t.Fatal(err)
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sh.Value)
	if err != nil {
		t.Fatal(err)
	}
	V := new(edwards25519.Point).ScalarMult(s, Rp)
	V.Add(V, T)
	S := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	for range 256 {
		var seed [64]byte
		rand.Read(seed[:])
		w, _ := edwards25519.NewScalar().SetUniformBytes(seed[:])
		A1 := new(edwards25519.Point).ScalarBaseMult(w).Bytes()
		A2 := new(edwards25519.Point).ScalarMult(w, Rp).Bytes()
		h := sha512.New()
		for _, b := range [][]byte{[]byte(vocab.LabelDLEQ), edwards25519.NewGeneratorPoint().Bytes(), R, S, V.Bytes(), A1, A2} {
			h.Write(b)
		}
		var buf [12]byte
		binary.BigEndian.PutUint32(buf[:4], sh.Index)
		binary.BigEndian.PutUint64(buf[4:], uint64(len(context)))
		h.Write(buf[:])
		h.Write(context)
		c, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
		if c.Bytes()[0]&7 != 0 {
			continue
		}
		z := edwards25519.NewScalar().Multiply(c, s)
		z.Subtract(w, z)
		p := &shamir.Partial{Index: sh.Index, Value: V.Bytes(), Challenge: c.Bytes(), Response: z.Bytes()}
		return p
	}
	t.Fatal("no challenge a multiple of 8 in 256 tries")
	return nil
}

func mustDecodeHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
