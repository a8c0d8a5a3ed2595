package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// X25519 exchange by quorum (op exchange, an x25519 key, docs/transit.md
// "Exchange"), on real raft on disk.

// RFC 7748's known answers: section 6.1's Alice and Bob, section 5.2's
// vectors (the second one's u is on the twist).
var (
	rfcAlicePriv  = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
	rfcAlicePub   = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
	rfcBobPub     = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
	rfcShared     = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
	rfcVector1K   = "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"
	rfcVector1U   = "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"
	rfcVector1Out = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
	rfcVector2U   = "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"
	lowOrderU     = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
)

func unhexC(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importX25519 creates the x25519 key name from the X25519 private key
// priv (hex), as client.ImportX25519 does.
func (c *testCluster) importX25519(name, priv string) {
	c.t.Helper()
	s, err := api.X25519PrivateScalar(unhexC(c.t, priv))
	if err != nil {
		c.t.Fatal(err)
	}
	st := c.transitHolders()
	sharing, err := api.DealTransitSharing(rand.Reader, s, name, st.ClusterID, st.Epoch, st.Threshold, holdersOf(st))
	if err != nil {
		c.t.Fatal(err)
	}
	c.createTransitKey(&fsm.CreateKey{Name: name, Type: fsm.KeyTypeX25519,
		Transit: &fsm.TransitKey{Versions: []fsm.TransitVersion{{Sharing: sharing, Imported: true}}}})
}

type exchangeCall struct {
	sg    *fsm.Signed
	eph   *ecdh.PrivateKey
	items []fsm.TransitPoint
	reply *api.TransitDecryptReply
	err   error
}

// exchangeThrough asks tn to exchange with key ref for the peers' u (hex).
func (c *testCluster) exchangeThrough(tn *testNode, ref string, us []string, exclude ...uint32) *exchangeCall {
	c.t.Helper()
	call := &exchangeCall{}
	for _, u := range us {
		call.items = append(call.items, fsm.TransitPoint{Version: 1, Point: unhexC(c.t, u)})
	}
	var err error
	if call.eph, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		c.t.Fatal(err)
	}
	call.sg = c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: ref, Op: fsm.OpExchange,
		Ephemeral: call.eph.PublicKey().Bytes(), Points: call.items, Exclude: exclude}})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call.reply, call.err = tn.n.TransitExchange(ctx, call.sg)
	return call
}

func (c *testCluster) openExchange(call *exchangeCall, name string) ([]api.TransitResult, error) {
	c.t.Helper()
	if call.err != nil {
		c.t.Fatalf("exchanging: %v", call.err)
	}
	return api.OpenTransitExchange(call.reply, c.clusterID, c.transitMeta(name), call.items, call.sg.Payload, call.eph)
}

// TestTransitExchangeKnownAnswers: keys imported from RFC 7748's private
// keys show the RFC's public key and give its shared secrets through
// every node of a 3-node cluster (section 6.1, and section 5.2's first
// vector); a twist u (section 5.2's second vector's) and a low-order u
// fail alone while the good items give their secrets. An x25519 key
// neither decrypts nor derives, and a transit key does not exchange.
func TestTransitExchangeKnownAnswers(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.importX25519("dh/alice", rfcAlicePriv)
	c.importX25519("dh/v1", rfcVector1K)
	if pub, err := api.X25519PublicKey(c.transitMeta("dh/alice"), 1); err != nil || hex.EncodeToString(pub) != rfcAlicePub {
		t.Fatalf("the imported key's X25519 public key: %x, %v; want %s", pub, err, rfcAlicePub)
	}
	for _, tn := range c.nodes {
		res, err := c.openExchange(c.exchangeThrough(tn, "dh/alice", []string{rfcBobPub, rfcVector2U, lowOrderU, rfcBobPub}), "dh/alice")
		if err != nil {
			t.Fatalf("through %s: %v", tn.id(), err)
		}
		for _, i := range []int{0, 3} {
			if res[i].Error != nil || hex.EncodeToString(res[i].Plaintext) != rfcShared {
				t.Errorf("through %s: item %d: %x, %v; want RFC 7748's shared secret %s", tn.id(), i, res[i].Plaintext, res[i].Error, rfcShared)
			}
		}
		for _, i := range []int{1, 2} {
			if res[i].Error == nil || res[i].Error.Kind != KindInvalid || res[i].Plaintext != nil {
				t.Errorf("through %s: item %d (a twist or low-order u): %+v; want invalid", tn.id(), i, res[i])
			}
		}
		res, err = c.openExchange(c.exchangeThrough(tn, c.transitMeta("dh/v1").ID, []string{rfcVector1U}), "dh/v1")
		if err != nil || res[0].Error != nil || hex.EncodeToString(res[0].Plaintext) != rfcVector1Out {
			t.Errorf("through %s: RFC 7748 5.2 vector 1: %+v, %v; want %s", tn.id(), res, err, rfcVector1Out)
		}
	}
	// The node counts the exchanges it coordinates under op exchange, by
	// key type.
	if got := testutil.ToFloat64(c.nodes[1].n.Metrics().Operations.WithLabelValues(opExchange, fsm.KeyTypeX25519, metrics.NoGateway, metrics.ResultOK)); got != 2 {
		t.Errorf("node 1 counted %v exchanges, want 2", got)
	}
	// One sharing, one operation: an x25519 key neither decrypts nor
	// derives, a transit key does not exchange.
	c.createTransit("enc/a", shamir.CipherAES256GCM, false)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pts := []fsm.TransitPoint{{Version: 1, Point: c.transitMeta("dh/alice").Transit().Latest().Sharing.Commits[0]}}
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for what, rel := range map[string]*fsm.ReleaseRequest{
		"a decryption with an x25519 key": {Key: "dh/alice", Op: fsm.OpDecrypt, Points: pts},
		"a derivation with an x25519 key": {Key: "dh/alice", Op: fsm.OpDerive, Derive: []fsm.TransitDerivation{{Version: 1, Context: []byte("c")}}},
		"an exchange with a transit key":  {Key: "enc/a", Op: fsm.OpExchange, Points: []fsm.TransitPoint{{Version: 1, Point: unhexC(t, rfcBobPub)}}},
	} {
		rel.Ephemeral = eph.PublicKey().Bytes()
		sg := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: rel})
		var err error
		switch rel.Op {
		case fsm.OpDecrypt:
			_, err = c.nodes[0].n.TransitDecrypt(ctx, sg)
		case fsm.OpDerive:
			_, err = c.nodes[0].n.TransitDerive(ctx, sg)
		default:
			_, err = c.nodes[0].n.TransitExchange(ctx, sg)
		}
		if KindOf(err) != KindInvalid {
			t.Errorf("%s: %v; want invalid", what, err)
		}
	}
}

// TestTransitExchangeRefusedByEveryHolder: each holder maps the peer's u
// itself and refuses a twist or low-order u in its own answer, whatever
// the caller and the coordinator checked, while it answers a good u; the
// request relayed to the Tang exchange's holder path gets nothing.
func TestTransitExchangeRefusedByEveryHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.importX25519("dh/alice", rfcAlicePriv)
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	items := []fsm.TransitPoint{{Version: 1, Point: unhexC(t, rfcVector2U)}, {Version: 1, Point: unhexC(t, lowOrderU)},
		{Version: 1, Point: make([]byte, 32)}, {Version: 1, Point: unhexC(t, rfcBobPub)}}
	sg := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: "dh/alice", Op: fsm.OpExchange,
		Ephemeral: eph.PublicKey().Bytes(), Points: items}})
	var epoch uint64
	c.leader().n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	for _, tn := range c.nodes {
		c.waitHasKey(tn, "dh/alice")
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sp, err := tn.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Version: storedKey(t, c.leader(), "dh/alice").Version, Epoch: epoch})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tn.id(), err)
		}
		base := api.TransitDecryptContext(c.clusterID, "dh/alice", epoch, sg.Payload, -1)
		pt, err := shamir.OpenX25519(eph, &shamir.Ciphertext{R: sp.R, Sealed: sp.Sealed}, fsm.PartialSealInfo(base, sp.Index))
		if err != nil {
			t.Fatal(err)
		}
		var answers []api.TransitItemPartial
		if err := json.Unmarshal(pt, &answers); err != nil || len(answers) != len(items) {
			t.Fatalf("%s: %d answers, %v", tn.id(), len(answers), err)
		}
		for i := range 3 {
			if answers[i].Partial != nil || answers[i].Error == nil || answers[i].Error.Kind != KindInvalid {
				t.Errorf("%s: item %d (a twist or low-order u): %+v; want refused", tn.id(), i, answers[i])
			}
		}
		if answers[3].Partial == nil {
			t.Errorf("%s: no partial for Bob's public key: %+v", tn.id(), answers[3].Error)
		}
		// A coordinator that relays the request to the Tang exchange's
		// holder path gets nothing: the key has no Tang share.
		ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
		p, err := tn.n.answerExchange(ctx, &partialRequest{Request: sg, Version: storedKey(t, c.leader(), "dh/alice").Version, Epoch: epoch})
		cancel()
		if err == nil || p != nil {
			t.Errorf("%s: the request on the Tang holder path: %+v, %v; want refused", tn.id(), p, err)
		}
	}
}

// TestTransitExchangeLyingHolder: a holder whose partials are wrong is
// named (its proof fails: nothing authenticates a shared secret), and
// without it the exchange gives the RFC's secret.
func TestTransitExchangeLyingHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.importX25519("dh/alice", rfcAlicePriv)
	liar := c.nodes[1]
	liar.n.transitHook = func(answers []api.TransitItemPartial) {
		for _, a := range answers {
			if a.Partial != nil {
				a.Partial.Value = bytes.Clone(c.transitMeta("dh/alice").Transit().Latest().Sharing.Commits[0])
			}
		}
	}
	_, err := c.openExchange(c.exchangeThrough(liar, "dh/alice", []string{rfcBobPub}), "dh/alice")
	var bad api.BadAnswers
	if !errors.As(err, &bad) || bad[c.shareIndex(liar)] == "" || len(bad) != 1 {
		t.Fatalf("a lying holder's partial: %v; want it named alone", err)
	}
	res, err := c.openExchange(c.exchangeThrough(liar, "dh/alice", []string{rfcBobPub}, c.shareIndex(liar)), "dh/alice")
	if err != nil || hex.EncodeToString(res[0].Plaintext) != rfcShared {
		t.Fatalf("without the liar: %+v, %v", res, err)
	}
}

// TestTransitExchangeLyingCoordinator: what a coordinator relays in place
// of the holders' answers to this request (the answers to an exchange
// with another key, or for another peer, relabelled; a changed answer)
// is refused, never combined into a secret.
func TestTransitExchangeLyingCoordinator(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.importX25519("dh/alice", rfcAlicePriv)
	c.importX25519("dh/v1", rfcVector1K)
	for name, lie := range map[string]func(call *exchangeCall){
		"another key's answers": func(call *exchangeCall) {
			other := c.exchangeThrough(c.nodes[0], "dh/v1", []string{rfcBobPub}).reply
			other.Key = "dh/alice"
			call.reply = other
		},
		"another peer's answers": func(call *exchangeCall) {
			call.reply = c.exchangeThrough(c.nodes[0], "dh/alice", []string{rfcVector1U}).reply
		},
		"a changed answer": func(call *exchangeCall) {
			p := &call.reply.Partials[0]
			p.Sealed = bytes.Clone(p.Sealed)
			p.Sealed[0] ^= 1
		},
	} {
		call := c.exchangeThrough(c.nodes[0], "dh/alice", []string{rfcBobPub})
		lie(call)
		res, err := c.openExchange(call, "dh/alice")
		var bad api.BadAnswers
		if !errors.As(err, &bad) || res != nil {
			t.Errorf("%s: %v, %+v; want the answers refused", name, err, res)
		}
	}
}

// TestTransitExchangeTokenFlag: a token with flag exchange exchanges
// through every node; one with decrypt and derive does not, and an
// exchange token neither derives nor reaches another key.
func TestTransitExchangeTokenFlag(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.importX25519("dh/alice", rfcAlicePriv)
	c.importX25519("dh/v1", rfcVector1K)
	c.createTransit("dh/enc", shamir.CipherAES256GCM, false)
	exchange := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"dh/alice"}, Flags: []string{token.FlagExchange}})
	other := mintToken(t, c.opID, c.opKey, token.Scope{Prefixes: []string{"dh/"}, Flags: []string{token.FlagDecrypt, token.FlagDerive}})
	ask := func(tn *testNode, tok []byte, name string) ([]byte, error) {
		items := []fsm.TransitPoint{{Version: 1, Point: unhexC(t, rfcBobPub)}}
		sg, eph := c.tokenTransit(tok, &fsm.ReleaseRequest{Key: name, Op: fsm.OpExchange, Points: items})
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		rep, err := tn.n.TransitExchange(ctx, sg)
		if err != nil {
			return nil, err
		}
		res, err := api.OpenTransitExchange(rep, c.clusterID, c.transitMeta(name), items, sg.Payload, eph)
		if err != nil {
			t.Fatalf("%s: the exchange does not check out: %v", tn.id(), err)
		}
		if res[0].Error != nil {
			return nil, res[0].Error
		}
		return res[0].Plaintext, nil
	}
	for _, tn := range c.nodes {
		if got, err := ask(tn, exchange, "dh/alice"); err != nil || hex.EncodeToString(got) != rfcShared {
			t.Fatalf("%s: an exchange token: %x, %v", tn.id(), got, err)
		}
		if _, err := ask(tn, other, "dh/alice"); KindOf(err) != KindTokenLacksCapability {
			t.Errorf("%s: a decrypt and derive token exchanging: %v, want %s", tn.id(), err, KindTokenLacksCapability)
		}
		if _, err := ask(tn, exchange, "dh/v1"); KindOf(err) != KindTokenLacksCapability {
			t.Errorf("%s: an exchange token for another key: %v, want %s", tn.id(), err, KindTokenLacksCapability)
		}
	}
	onEnc := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"dh/enc"}, Flags: []string{token.FlagExchange}})
	if _, err := c.deriveWithToken(c.nodes[0], onEnc, "dh/enc", []byte("c")); KindOf(err) != KindTokenLacksCapability {
		t.Errorf("an exchange token deriving: %v, want %s", err, KindTokenLacksCapability)
	}
}
