package https

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/keyquorum/keyquorum/vocab"
)

// TestErrorBodyGolden pins the REST answer to an error of every kind a
// node sends, and to an error of no kind: the status, the content type and
// the body ({"error":{"kind":K,"message":M}}), which the Go SDK, keyctl
// and keyagent decode into the kind they exit with.
func TestErrorBodyGolden(t *testing.T) {
	var out bytes.Buffer
	answer := func(err error) {
		rec := httptest.NewRecorder()
		(&Server{log: slog.New(slog.DiscardHandler), node: "n1"}).writeError(rec, err)
		fmt.Fprintf(&out, "%d %s\n%s\n", rec.Code, rec.Header().Get("Content-Type"), bytes.TrimSuffix(rec.Body.Bytes(), []byte("\n")))
	}
	for _, k := range vocab.Kinds {
		answer(vocab.Errorf(k, "what was wrong with the %s request", k))
	}
	answer(errors.New("an error of no kind")) // answered as internal, naming the node whose log has it
	golden.Check(t, "errors.txt", out.Bytes())
}
