package https

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"filippo.io/edwards25519"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// TestTransitOperationsCounted: the transit operations this node serves
// by itself (encrypt, datakey, verify, hash, random) are counted and
// timed in keyquorum_operations_total and _seconds by op, key type,
// gateway and result: a success as ok, a refusal by its error kind.
func TestTransitOperationsCounted(t *testing.T) {
	pub := edwards25519.NewGeneratorPoint().Bytes()
	keys := map[string]*fsm.Key{"enc/a": {ID: "id:00", Name: "enc/a", Type: fsm.KeyTypeTransit, Version: 1, State: fsm.KeyActive,
		KeyDetail: &fsm.KeyDetail{Transit: &fsm.TransitKey{Cipher: "aes256-gcm96", Versions: []fsm.TransitVersion{{Version: 1,
			Sharing: &fsm.FROSTKey{Threshold: 1, Epoch: 1, Commits: [][]byte{pub}}}}}}}}
	_, key, _ := ed25519.GenerateKey(nil)
	svc := signingKeys{refusingService{id: cluster.Identity{NodeID: "n1"}}, keys}
	cert, err := cluster.NewServingCert(key, "n1", svc.Membership)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	s, err := NewServer(svc, cert, slog.New(slog.NewTextHandler(io.Discard, nil)), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	op := &fsm.Operator{ID: "op", Name: "t", Admin: true}
	call := func(h http.HandlerFunc, path map[string]string, body any) int {
		b, _ := json.Marshal(body)
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
		for k, v := range path {
			req.SetPathValue(k, v)
		}
		ctx := metrics.WithGateway(context.WithValue(req.Context(), principalKey{}, op), Gateway)
		w := httptest.NewRecorder()
		h(w, req.WithContext(ctx))
		return w.Code
	}
	enc := api.TransitEncryptRequest{Plaintext: []byte("hello")}
	call(s.transitEncrypt, map[string]string{"name": "enc/a"}, enc)
	call(s.transitEncrypt, map[string]string{"name": "enc/a"}, enc)
	call(s.transitEncrypt, map[string]string{"name": "enc/none"}, enc)
	call(s.transitEncrypt, map[string]string{"name": "enc/a"}, api.TransitEncryptRequest{Plaintext: []byte("x"), Context: []byte("not derived")})
	call(s.transitDataKey, map[string]string{"name": "enc/a", "kind": "wrapped"}, api.TransitEncryptRequest{})
	call(s.transitVerify, map[string]string{"name": "enc/a"}, api.TransitVerifyRequest{Input: []byte("x"), Signature: "kq:v1:AA=="})
	call(s.transitHash, map[string]string{"algorithm": "sha2-256"}, api.TransitHashRequest{Input: []byte("x")})
	call(s.transitRandom, map[string]string{"bytes": "0"}, nil)
	for _, c := range []struct {
		op, keyType, result string
		want                float64
	}{
		{metrics.OpEncrypt, fsm.KeyTypeTransit, metrics.ResultOK, 2},
		{metrics.OpEncrypt, metrics.NoKeyType, string(cluster.KindNotFound), 1},
		{metrics.OpEncrypt, fsm.KeyTypeTransit, string(cluster.KindInvalid), 1},
		{metrics.OpDataKey, fsm.KeyTypeTransit, metrics.ResultOK, 1},
		{metrics.OpVerify, fsm.KeyTypeTransit, string(cluster.KindInvalid), 1}, // not a signing key
		{metrics.OpHash, metrics.NoKeyType, metrics.ResultOK, 1},
		{metrics.OpRandom, metrics.NoKeyType, string(cluster.KindInvalid), 1},
	} {
		labels := []string{c.op, c.keyType, Gateway, c.result}
		if got := testutil.ToFloat64(m.Operations.WithLabelValues(labels...)); got != c.want {
			t.Errorf("operations%v = %v, want %v", labels, got, c.want)
		}
	}
	// Each label set counted is timed too: one histogram series each.
	if got := testutil.CollectAndCount(m.OperationSeconds); got != 7 {
		t.Errorf("%d operation histograms, want 7", got)
	}
}
