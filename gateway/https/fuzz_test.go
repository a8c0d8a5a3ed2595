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
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
)

// refusingService stands in for a node: it answers every call with a
// refusal, so the fuzz target exercises the gateway's own parsing.
type refusingService struct{ id cluster.Identity }

func (f refusingService) Identity() cluster.Identity          { return f.id }
func (refusingService) Membership() (caCert, nodeCert []byte) { return nil, nil }
func (refusingService) Start(context.Context, *cluster.StartRequest) error {
	return cluster.Errorf(cluster.KindConflict, "refused")
}
func (refusingService) Status(context.Context) (*cluster.Status, error) {
	return nil, cluster.Errorf(cluster.KindNoQuorum, "refused")
}
func (refusingService) Submit(context.Context, *fsm.Signed) (*fsm.Result, error) {
	return nil, cluster.Errorf(cluster.KindDenied, "refused")
}
func (refusingService) Keys(context.Context, string, string, int) ([]*fsm.Key, string, error) {
	return nil, "", nil
}
func (refusingService) Key(context.Context, string, string) (*fsm.Key, error) {
	return nil, cluster.Errorf(cluster.KindNotFound, "refused")
}
func (refusingService) Release(context.Context, *fsm.Signed) (*cluster.SealedRelease, error) {
	return nil, cluster.Errorf(cluster.KindDenied, "refused")
}
func (refusingService) CompareAndSwap(context.Context, *fsm.Signed) (*fsm.Key, error) {
	return nil, cluster.Errorf(cluster.KindConflict, "refused")
}
func (refusingService) Principal(context.Context, []byte) (*fsm.Operator, error) {
	return nil, cluster.Errorf(cluster.KindUnauthenticated, "refused")
}

// FuzzRequestBodies feeds arbitrary bodies to every call that reads one.
// Each answer must be 200 or an error body with a kind; nothing panics.
// newRefusingServer is an API server of an unjoined node with ID id whose
// service refuses everything.
func newRefusingServer(tb testing.TB, id string, log *slog.Logger, opts ...Option) *Server {
	tb.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	svc := refusingService{id: cluster.Identity{NodeID: id}}
	cert, err := cluster.NewServingCert(key, id, svc.Membership)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewServer(svc, cert, log, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func FuzzRequestBodies(f *testing.F) {
	signed, _ := json.Marshal(fsm.Signed{Signer: "op", Payload: []byte(`{"type":"create_key"}`), Signature: make([]byte, 64)})
	for _, seed := range [][]byte{nil, []byte("{}"), []byte("null"), signed, []byte(`{"release":{},"replace":null}`), []byte(`{"payload":"!!"}`)} {
		f.Add(seed)
	}
	s := newRefusingServer(f, "fuzz", slog.New(slog.NewTextHandler(io.Discard, nil)))
	op := &fsm.Operator{ID: "op", Name: "fuzz", Admin: true}
	handlers := map[string]http.HandlerFunc{
		"start":   s.start,
		"command": s.command(fsm.TypeCreateKey),
		"release": s.release,
		"cas":     s.cas,
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, h := range handlers {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req = req.WithContext(context.WithValue(req.Context(), principalKey{}, op))
			w := httptest.NewRecorder()
			h(w, req)
			if w.Code == http.StatusOK {
				continue
			}
			var e client.ErrorReply
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Kind == "" {
				t.Fatalf("%s: status %d with body %q: want an error with a kind", name, w.Code, w.Body.String())
			}
		}
	})
}

// FuzzListQuery feeds arbitrary query strings to the key list: each
// answer is a page or an error body with a kind; a limit out of range is
// refused as invalid, naming the limit.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{"", "limit=2", "after=a&limit=1000", "limit=abc", "limit=0", "limit=-1", "limit=1001", "after=%ff"} {
		f.Add(seed)
	}
	s := newRefusingServer(f, "fuzz", slog.New(slog.NewTextHandler(io.Discard, nil)))
	op := &fsm.Operator{ID: "op", Name: "fuzz", Admin: true}
	list := func(query string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/keys", nil)
		req.URL.RawQuery = query
		req = req.WithContext(context.WithValue(req.Context(), principalKey{}, op))
		w := httptest.NewRecorder()
		s.listKeys(w, req)
		return w
	}
	for _, bad := range []string{"limit=abc", "limit=0", "limit=1001"} {
		var e client.ErrorReply
		if w := list(bad); w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == nil ||
			e.Error.Kind != cluster.KindInvalid || !strings.Contains(e.Error.Message, "limit") {
			f.Errorf("%s: status %d, body %q: want invalid, naming the limit", bad, w.Code, w.Body.String())
		}
	}
	f.Fuzz(func(t *testing.T, query string) {
		w := list(query)
		if w.Code == http.StatusOK {
			var keys []*fsm.Key
			if err := json.Unmarshal(w.Body.Bytes(), &keys); err != nil || keys == nil {
				t.Fatalf("%q: 200 with body %q: want a JSON array", query, w.Body.String())
			}
			return
		}
		var e client.ErrorReply
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Kind == "" {
			t.Fatalf("%q: status %d with body %q: want an error with a kind", query, w.Code, w.Body.String())
		}
	})
}
