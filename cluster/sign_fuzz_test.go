package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/shamir"
)

// The bodies a share holder reads on the node port when it signs (docs/signing.md,
// docs/threshold-rsa.md): the FROST commitments and signature shares, the
// threshold RSA shares and the partials of an assembled key's signature.
// Each fuzz target runs a real 3-node cluster with a key of each kind and
// sends the holder arbitrary bodies at its handler, as a member (the only
// caller the node port lets in) would. Every answer must be a reply or an
// error with a kind, nothing panics, and nothing but a request an
// operator signed gets a share.

// signFuzzCluster is a 3-node cluster with an ed25519-frost key
// "fuzz/frost", an rsa-threshold key "fuzz/rsa" and an ecdsa key
// "fuzz/ecdsa", and the holder the targets ask (not the leader).
func signFuzzCluster(f *testing.F) (*testCluster, *testNode) {
	c := newTestCluster(f, 3)
	c.createFROST("fuzz/frost", nil)
	c.createThresholdRSA("fuzz/rsa", rsaKey(f), nil)
	c.createECDSA("fuzz/ecdsa", 0)
	holder := c.anyRunning(c.leader())
	for _, name := range []string{"fuzz/frost", "fuzz/rsa", "fuzz/ecdsa"} {
		c.waitHasKey(holder, name)
	}
	return c, holder
}

// serveBody posts body to h as a member would and returns the answer: a
// reply (200) or an error that must carry a kind.
func serveBody(t *testing.T, h http.HandlerFunc, body []byte) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	w := httptest.NewRecorder()
	h(w, req)
	if w.Code != http.StatusOK {
		var e Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Kind == "" {
			t.Fatalf("status %d with body %q: want an error with a kind", w.Code, w.Body.String())
		}
	}
	return w
}

// operatorSigned fails t unless sg verifies under the operator's key:
// the fuzzer cannot forge one, so an answered body carries a seed's.
func operatorSigned(t *testing.T, c *testCluster, sg *fsm.Signed, what string) {
	if sg == nil || sg.Signer != c.opID || !ed25519.Verify(c.opKey.Public().(ed25519.PublicKey), fsm.SigningInput(sg.Payload), sg.Signature) {
		t.Fatalf("%s answered a body whose request the operator did not sign", what)
	}
}

// FuzzFROSTCommitBody: /internal/v1/frost-commit. An answer has 1 to
// frostCommitBatch commitments, all the holder's, every one a valid
// commitment pair.
func FuzzFROSTCommitBody(f *testing.F) {
	_, holder := signFuzzCluster(f)
	k := storedKey(f, holder, "fuzz/frost")
	for _, seed := range []frostCommitRequest{{Key: "fuzz/frost", Version: k.Version, Count: 1},
		{Key: "fuzz/frost", Version: k.Version, Count: frostCommitBatch}, {Key: "fuzz/rsa", Version: 1, Count: 2},
		{Key: "fuzz/ecdsa", Version: 1, Count: 1}, {Key: "fuzz/frost", Version: k.Version + 1, Count: 1}} {
		b, _ := json.Marshal(seed)
		f.Add(b)
	}
	f.Add([]byte(`{"key":"fuzz/frost","version":1,"count":-1}`))
	f.Add([]byte(`null`))
	var mine uint32
	for _, sh := range k.Frost().Shares {
		if sh.NodeID == holder.id() {
			mine = sh.Index
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := serveBody(t, holder.n.handleFROSTCommit, body)
		if w.Code != http.StatusOK {
			return
		}
		var rep frostCommitReply
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatalf("answer %q: %v", w.Body.String(), err)
		}
		if rep.Index != mine || len(rep.Commitments) < 1 || len(rep.Commitments) > frostCommitBatch {
			t.Fatalf("answered index %d with %d commitments (holds %d, at most %d)", rep.Index, len(rep.Commitments), mine, frostCommitBatch)
		}
		for _, cm := range rep.Commitments {
			if cm.Index != mine {
				t.Fatalf("a commitment for index %d from holder %d", cm.Index, mine)
			}
			if _, err := shamir.NewFROSTRound(k.Frost().Commits[0], []byte("m"), []shamir.NonceCommitment{cm}); err != nil {
				t.Fatalf("the holder answered a commitment that does not decode: %v", err)
			}
		}
	})
}

// FuzzFROSTSignBody: /internal/v1/frost-sign. An answer is only for a
// request the operator signed, and its share is a valid share of the
// signature of that request's message under the commitments sent: the
// holder never signs another message than the signer's.
func FuzzFROSTSignBody(f *testing.F) {
	c, holder := signFuzzCluster(f)
	other := c.anyRunning(holder)
	c.waitHasKey(other, "fuzz/frost")
	for i := range 3 {
		b, _ := json.Marshal(c.frostHolderRequest(c.signRequest("fuzz/frost", []byte{'m', byte(i)}), "fuzz/frost", holder, other))
		f.Add(b)
	}
	b, _ := json.Marshal(c.frostHolderRequest(c.signRequest("fuzz/ecdsa", []byte("m")), "fuzz/frost", holder, other))
	f.Add(b)
	f.Add([]byte(`{"partial":{"request":null},"commitments":[]}`))
	f.Add([]byte(`{}`))
	k := storedKey(f, holder, "fuzz/frost")
	poly := &shamir.PublicPoly{Commits: k.Frost().Commits}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := serveBody(t, holder.n.handleFROSTSign, body)
		if w.Code != http.StatusOK {
			return
		}
		var req frostSignRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("answered a body that does not parse: %v", err)
		}
		operatorSigned(t, c, req.Partial.Request, "frost-sign")
		var rep frostSignReply
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatalf("answer %q: %v", w.Body.String(), err)
		}
		var cmd fsm.Command
		if err := json.Unmarshal(req.Partial.Request.Payload, &cmd); err != nil || cmd.Release == nil {
			t.Fatalf("answered a request whose payload is not a release: %v", err)
		}
		round, err := shamir.NewFROSTRound(k.Frost().Commits[0], cmd.Release.Message, req.Commitments)
		if err != nil {
			t.Fatalf("answered for commitments that do not make a round: %v", err)
		}
		ps, err := poly.PublicShare(rep.Index)
		if err == nil {
			err = round.VerifyShare(rep.Index, ps, rep.Share)
		}
		if err != nil {
			t.Fatalf("the holder's share is not one of the signed message's signature: %v", err)
		}
	})
}

// FuzzHolderShareBodies: /internal/v1/rsa-share (path 0) and
// /internal/v1/partial (path 1), which read the same body
// (partialRequest). An answer is only for a request the operator signed
// (or, for rsa-share, a gateway node: the seeds carry none), and a
// request goes only where its key type signs: a signing request with the
// rsa-threshold key gets an rsa share, with the ecdsa key a partial
// (assembled on the coordinator), never the other way round.
func FuzzHolderShareBodies(f *testing.F) {
	c, holder := signFuzzCluster(f)
	for _, name := range []string{"fuzz/rsa", "fuzz/ecdsa", "fuzz/frost"} {
		k := storedKey(f, holder, name)
		for _, padding := range []string{"", fsm.PaddingPSS} {
			if padding != "" && name != "fuzz/rsa" {
				continue
			}
			for path := range uint8(2) {
				sg := c.sign(&fsm.Command{Type: fsm.TypeRelease, Release: &fsm.ReleaseRequest{Key: name, Op: fsm.OpSign, Message: []byte("m"), Padding: padding}})
				b, _ := json.Marshal(&partialRequest{Request: sg, Version: k.Version, Epoch: uint64(path)})
				f.Add(path, b)
			}
		}
	}
	f.Add(uint8(0), []byte(`{"read_index":18446744073709551615,"request":{"signer":"x","payload":"","signature":""}}`))
	f.Add(uint8(1), []byte(`{"request":null}`))
	handlers := []struct {
		name string
		h    http.HandlerFunc
		key  string
	}{{"rsa-share", holder.n.handleRSAShare, "fuzz/rsa"}, {"partial", holder.n.handlePartial, "fuzz/ecdsa"}}
	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		h := handlers[int(path)%len(handlers)]
		w := serveBody(t, h.h, body)
		if w.Code != http.StatusOK {
			return
		}
		var req partialRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("%s answered a body that does not parse: %v", h.name, err)
		}
		operatorSigned(t, c, req.Request, h.name)
		var cmd fsm.Command
		if err := json.Unmarshal(req.Request.Payload, &cmd); err != nil || cmd.Release == nil {
			t.Fatalf("%s answered a request whose payload is not a release: %v", h.name, err)
		}
		if cmd.Release.Key != h.key {
			t.Fatalf("%s answered a signing request with key %q", h.name, cmd.Release.Key)
		}
	})
}
