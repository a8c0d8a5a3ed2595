package cluster

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNodeToNodeErrorsAnswerTheirKindsStatus: a node-to-node error answers
// the HTTP status of its kind from the one table (vocab), and the caller
// takes the kind from the body.
func TestNodeToNodeErrorsAnswerTheirKindsStatus(t *testing.T) {
	t.Parallel()
	kinds := append([]Kind{kindNotLeader}, Kinds...)
	for _, k := range kinds {
		rec := httptest.NewRecorder()
		writeRPC(rec, nil, Errorf(k, "refused as %s", k))
		if rec.Code != k.HTTPStatus() {
			t.Errorf("%s: status %d, want %d", k, rec.Code, k.HTTPStatus())
		}
		var e *Error
		if err := readReply("peer", rec.Code, rec.Body.Bytes(), nil); !errors.As(err, &e) || e.Kind != k || e.Message != "refused as "+string(k) {
			t.Errorf("%s: the caller read %v", k, err)
		}
	}
	// An error without a kind is internal, and says so on the wire.
	rec := httptest.NewRecorder()
	writeRPC(rec, nil, errors.New("disk on fire"))
	if rec.Code != http.StatusInternalServerError || KindOf(readReply("peer", rec.Code, rec.Body.Bytes(), nil)) != KindInternal {
		t.Errorf("an error without a kind: status %d", rec.Code)
	}
	// A reply decodes into out.
	rec = httptest.NewRecorder()
	writeRPC(rec, readIndexReply{Index: 7}, nil)
	var got readIndexReply
	if err := readReply("peer", rec.Code, rec.Body.Bytes(), &got); err != nil || got.Index != 7 {
		t.Errorf("a reply: %+v, %v", got, err)
	}
}
