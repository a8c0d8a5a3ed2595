package cluster

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"filippo.io/edwards25519"

	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/token"
)

// A transit key's wrapped export (transit.go, docs/transit.md, "Export
// and wrapped import"), on real raft on disk: each holder checks the
// request itself and seals its share of the version to the caller, who
// checks every share against the version's commitments and combines.

// exportCall is one export request through a node and what opens it.
type exportCall struct {
	sg    *fsm.Signed
	eph   *ecdh.PrivateKey
	reply *api.TransitDecryptReply
	err   error
}

// exportRequest is a signed export request for version of key ref, by
// signer (key priv), with its ephemeral key.
func (c *testCluster) exportRequest(signer string, priv ed25519.PrivateKey, ref string, version uint64, exclude ...uint32) (*fsm.Signed, *ecdh.PrivateKey) {
	c.t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	return signWith(c.t, signer, priv, &fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: ref, Op: fsm.OpExport,
		Ephemeral: eph.PublicKey().Bytes(), Version: version, Exclude: exclude}}), eph
}

func (c *testCluster) exportThrough(tn *testNode, ref string, version uint64, exclude ...uint32) *exportCall {
	c.t.Helper()
	call := &exportCall{}
	call.sg, call.eph = c.exportRequest(c.opID, c.opKey, ref, version, exclude...)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call.reply, call.err = tn.n.TransitExport(ctx, call.sg)
	return call
}

func (c *testCluster) openExport(call *exportCall, name string, version uint64) ([]byte, error) {
	c.t.Helper()
	if call.err != nil {
		c.t.Fatalf("exporting: %v", call.err)
	}
	return api.OpenTransitExport(call.reply, c.clusterID, c.transitMeta(name), version, call.sg.Payload, call.eph)
}

// createExportable creates an exportable transit key whose first version
// is secret (nil: drawn), as the client does.
func (c *testCluster) createExportable(name string, secret []byte, exportable bool) {
	c.t.Helper()
	st := c.transitHolders()
	var sharing *fsm.FROSTKey
	var err error
	if secret != nil {
		sharing, err = api.DealTransitSharing(rand.Reader, secret, name, st.ClusterID, st.Epoch, st.Threshold, holdersOf(st))
	} else {
		sharing, err = api.NewTransitSharing(rand.Reader, name, st.ClusterID, st.Epoch, st.Threshold, holdersOf(st))
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.createTransitKey(&fsm.CreateKey{Name: name, Type: fsm.KeyTypeTransit, Transit: &fsm.TransitKey{Cipher: shamir.CipherAES256GCM,
		Exportable: exportable, Versions: []fsm.TransitVersion{{Sharing: sharing, Imported: secret != nil}}}})
}

// TestTransitExportRoundTrip: an imported scalar, exported through every
// node, wrapped to an RSA wrapping key and unwrapped with its private
// half, is the scalar imported; what the exported scalar encrypts
// decrypts through the cluster, and what the cluster's public key
// encrypted opens with it. A rotated version exports its own scalar; a
// version the key does not have, or below min_decryption_version, is
// refused. Each export is counted (op export) and audited by every holder.
func TestTransitExportRoundTrip(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.createExportable("exp/a", secret, true)
	wrapping, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		got, err := c.openExport(c.exportThrough(tn, "exp/a", 1), "exp/a", 1)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("through %s: %x, %v; want the imported scalar", tn.id(), got, err)
		}
		wrapped, err := api.WrapTransitKey(rand.Reader, &wrapping.PublicKey, got)
		clear(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := api.UnwrapTransitKey(wrapping, wrapped)
		if err != nil || !bytes.Equal(back, secret) {
			t.Fatalf("through %s: unwrapped %x, %v; want the imported scalar", tn.id(), back, err)
		}
	}

	// Counted and audited as the other transit operations: op export on
	// each coordinator, holder answers on the others, and every holder's
	// decision in its audit log.
	for _, tn := range c.nodes {
		if counted(tn, opExport, fsm.KeyTypeTransit) < 1 {
			t.Errorf("%s counted no export", tn.id())
		}
		records, _ := auditLog(t, tn)
		holder := false
		for _, r := range records {
			holder = holder || (r.Role == "holder" && r.Op == fsm.OpExport && r.Key == "exp/a" && r.Outcome == "allowed")
		}
		if !holder {
			t.Errorf("%s's audit log has no holder decision for the export", tn.id())
		}
	}

	// What the exported scalar encrypts decrypts through the cluster.
	meta := c.transitMeta("exp/a")
	s, _ := edwards25519.NewScalar().SetCanonicalBytes(secret)
	whole := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	bind := api.TransitBinding(meta.ID, 1, nil)
	E, proof, sealed, err := shamir.TransitSeal(rand.Reader, whole, shamir.CipherAES256GCM, bind, bind, []byte("from outside"))
	if err != nil {
		t.Fatal(err)
	}
	ct := (&api.TransitCiphertext{Version: 1, E: E, Proof: proof, Sealed: sealed}).String()
	res, err := c.open(c.decryptThrough(c.nodes[2], "exp/a", []string{ct}, make([][]byte, 1)), "exp/a")
	if err != nil || string(res[0].Plaintext) != "from outside" {
		t.Fatalf("decrypting what the exported scalar encrypted: %+v, %v", res, err)
	}

	// A rotated version: its own scalar, which opens what the cluster's
	// public key of version 2 encrypted.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeRotateKey, RotateKey: &fsm.RotateKey{Name: "exp/a", Sharing: c.transitDeal("exp/a")}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		return storedKey(t, c.leader(), "exp/a").Version == 2, "the leader has not applied the rotation"
	})
	v2, err := c.openExport(c.exportThrough(c.nodes[1], "exp/a", 2), "exp/a", 2)
	if err != nil || bytes.Equal(v2, secret) {
		t.Fatalf("exporting version 2: %v (the same scalar as version 1: %v)", err, bytes.Equal(v2, secret))
	}
	theirs, _ := api.ParseTransitCiphertext(c.encrypt("exp/a", []byte("to version 2"), nil))
	K, err := shamir.TransitSharedPoint(v2, theirs.E)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := shamir.TransitOpen(K, theirs.E, c.transitMeta("exp/a").Transit().Version(2).Sharing.Commits[0], shamir.CipherAES256GCM,
		api.TransitBinding(meta.ID, 2, nil), api.TransitBinding(meta.ID, 2, nil), theirs.Sealed)
	if err != nil || string(pt) != "to version 2" {
		t.Fatalf("opening with the exported version 2: %q, %v", pt, err)
	}
	if call := c.exportThrough(c.nodes[0], "exp/a", 3); KindOf(call.err) != KindNotFound {
		t.Errorf("exporting a version the key does not have: %v; want not_found", call.err)
	}
	// Below min_decryption_version, a version is refused as to decrypt.
	if _, err := c.submit(&fsm.Command{Type: fsm.TypeConfigureKey, ConfigureKey: &fsm.ConfigureKey{Name: "exp/a", MinDecryptionVersion: 2}}); err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		c.waitFor(settleTimeout, func() (bool, string) {
			return storedKey(t, tn, "exp/a").Transit().MinDecryptionVersion == 2, tn.id() + " has not applied min_decryption_version"
		})
	}
	if call := c.exportThrough(c.nodes[2], "exp/a", 1); KindOf(call.err) != KindDenied {
		t.Errorf("exporting a version below min_decryption_version: %v; want denied", call.err)
	}
}

// TestTransitExportRefusedByEveryHolder: a key created non-exportable,
// and an exportable key asked by an operator without a rule for export,
// are refused by every node as coordinator and by every holder that a
// lying coordinator asks directly, on every holder path: no share leaves.
func TestTransitExportRefusedByEveryHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.createExportable("exp/no", nil, false)
	c.createExportable("exp/yes", nil, true)
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	bob := fsm.PrincipalID(opPub)
	for _, cmd := range []*fsm.Command{
		{Type: fsm.TypeAddOperator, AddOperator: &fsm.Operator{ID: bob, Name: "bob", PublicKey: opPub}},
		{Type: fsm.TypePutRule, PutRule: &fsm.Rule{ID: "bob-decrypt", Principal: bob, Key: "exp/*", Ops: []string{fsm.OpRead, fsm.OpDecrypt, fsm.OpDerive}}},
	} {
		if _, err := c.submit(cmd); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor(settleTimeout, func() (bool, string) {
		for _, tn := range c.nodes {
			ok := false
			tn.n.fsm.Read(func(s *fsm.State) { ok = s.Rules["bob-decrypt"] != nil })
			if !ok {
				return false, tn.id() + " has not applied bob's rule"
			}
		}
		return true, ""
	})
	var epoch uint64
	c.leader().n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
	cases := []struct {
		what   string
		signer string
		priv   ed25519.PrivateKey
		key    string
	}{
		{"a non-exportable key", c.opID, c.opKey, "exp/no"},
		{"without a rule for export", bob, opKey, "exp/yes"},
	}
	for _, tc := range cases {
		for _, tn := range c.nodes {
			sg, _ := c.exportRequest(tc.signer, tc.priv, tc.key, 1)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			_, err := tn.n.TransitExport(ctx, sg)
			if KindOf(err) != KindDenied {
				t.Errorf("%s through %s: %v; want denied", tc.what, tn.id(), err)
			}
			// A lying coordinator asks the holder directly, on the transit
			// path and on the release paths.
			sg, _ = c.exportRequest(tc.signer, tc.priv, tc.key, 1)
			if p, err := tn.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Epoch: epoch}); KindOf(err) != KindDenied || p != nil {
				t.Errorf("%s, asked of holder %s directly: %v; want denied", tc.what, tn.id(), err)
			}
			sg, _ = c.exportRequest(tc.signer, tc.priv, tc.key, 1)
			if p, err := tn.n.answerSealedPartial(ctx, &partialRequest{Request: sg, Epoch: epoch, Version: 1}); err == nil || p != nil {
				t.Errorf("%s, asked of holder %s for a sealed partial: answered", tc.what, tn.id())
			}
			cancel()
		}
	}
	// The exportable key with the rule exports: the refusals above were
	// the key's and the rule's.
	if _, err := c.openExport(c.exportThrough(c.nodes[0], "exp/yes", 1), "exp/yes", 1); err != nil {
		t.Fatalf("the exportable key: %v", err)
	}
}

// TestTransitExportLyingHolder: a holder that seals a share off the
// version's commitments is named alone by the caller, and the export
// asked again without it completes with the right scalar. What a lying
// coordinator changes is refused the same way; with fewer than t shares
// nothing is combined.
func TestTransitExportLyingHolder(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.createExportable("exp/a", secret, true)
	liar := c.nodes[1]
	liar.n.transitExportHook = func(share []byte) []byte {
		other, _ := shamir.RandomSecret(rand.Reader)
		return other
	}
	// Coordinated by the liar, whose own answer is always among t.
	_, err = c.openExport(c.exportThrough(liar, "exp/a", 1), "exp/a", 1)
	var bad api.BadAnswers
	if !errors.As(err, &bad) || bad[c.shareIndex(liar)] == "" || len(bad) != 1 {
		t.Fatalf("a lying holder's share: %v; want it named alone", err)
	}
	got, err := c.openExport(c.exportThrough(liar, "exp/a", 1, c.shareIndex(liar)), "exp/a", 1)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("without the liar: %x, %v; want the scalar", got, err)
	}
	liar.n.transitExportHook = nil

	for name, lie := range map[string]func(call *exportCall){
		"a changed answer": func(call *exportCall) {
			p := &call.reply.Partials[0]
			p.Sealed = bytes.Clone(p.Sealed)
			p.Sealed[0] ^= 1
		},
		"another request's answers": func(call *exportCall) {
			call.reply = c.exportThrough(c.nodes[0], "exp/a", 1).reply
		},
		"a duplicated answer":   func(call *exportCall) { call.reply.Partials[1] = call.reply.Partials[0] },
		"an answer moved index": func(call *exportCall) { call.reply.Partials[0].Index += 7 },
	} {
		call := c.exportThrough(c.nodes[0], "exp/a", 1)
		lie(call)
		got, err := c.openExport(call, "exp/a", 1)
		if !errors.As(err, &bad) || got != nil {
			t.Errorf("%s: %v; want the answers refused", name, err)
		}
	}
	call := c.exportThrough(c.nodes[0], "exp/a", 1)
	call.reply.Partials = call.reply.Partials[:1]
	if got, err := c.openExport(call, "exp/a", 1); KindOf(err) != KindNoQuorum || got != nil {
		t.Fatalf("fewer than t shares: %v; want no_quorum", err)
	}
}

// TestTransitExportTokenFlag: a capability token exports only with the
// import flag (Keyvault's import covers import and export), checked by
// every holder; decrypt or derive does not reach an export.
func TestTransitExportTokenFlag(t *testing.T) {
	t.Parallel()
	if TokenFlag(fsm.OpExport) != token.FlagImport {
		t.Fatalf("the flag of an export is %q, want %q", TokenFlag(fsm.OpExport), token.FlagImport)
	}
	c := newTestCluster(t, 3)
	secret, err := shamir.RandomSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.createExportable("exp/a", secret, true)
	imp := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"exp/a"}, Flags: []string{token.FlagImport}})
	dec := mintToken(t, c.opID, c.opKey, token.Scope{Keys: []string{"exp/a"}, Flags: []string{token.FlagDecrypt, token.FlagDerive}})
	for _, tn := range c.nodes {
		sg, eph := c.tokenTransit(imp, &fsm.ReleaseRequest{Key: "exp/a", Op: fsm.OpExport, Version: 1})
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		rep, err := tn.n.TransitExport(ctx, sg)
		if err != nil {
			cancel()
			t.Fatalf("%s: export with an import token: %v", tn.id(), err)
		}
		got, err := api.OpenTransitExport(rep, c.clusterID, c.transitMeta("exp/a"), 1, sg.Payload, eph)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%s: export with an import token: %v", tn.id(), err)
		}
		sg, _ = c.tokenTransit(dec, &fsm.ReleaseRequest{Key: "exp/a", Op: fsm.OpExport, Version: 1})
		if _, err := tn.n.TransitExport(ctx, sg); KindOf(err) != KindTokenLacksCapability {
			t.Errorf("%s: export with a decrypt token: %v (kind %s); want %s", tn.id(), err, KindOf(err), KindTokenLacksCapability)
		}
		sg, _ = c.tokenTransit(dec, &fsm.ReleaseRequest{Key: "exp/a", Op: fsm.OpExport, Version: 1})
		var epoch uint64
		tn.n.fsm.Read(func(s *fsm.State) { epoch = s.Epoch })
		if p, err := tn.n.answerTransitDecrypt(ctx, &partialRequest{Request: sg, Epoch: epoch}); KindOf(err) != KindTokenLacksCapability || p != nil {
			t.Errorf("%s: a decrypt token's export asked of the holder directly: %v; want %s", tn.id(), err, KindTokenLacksCapability)
		}
		cancel()
	}
}
