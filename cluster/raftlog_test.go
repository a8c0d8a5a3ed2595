package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestRaftLogsThroughTheNodesLogger: Raft's hclog lines come out of the
// node's slog handler, with their level, message and fields.
func TestRaftLogsThroughTheNodesLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", "n1")
	h := raftLogger(log)
	h.Warn("failed to contact", "server-id", "node2")
	h.Info("not shown: below hclog's warn level")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("one JSON line expected: %v\n%s", err, buf.String())
	}
	for k, want := range map[string]string{"level": "WARN", "msg": "failed to contact", "module": "raft", "server-id": "node2", "node": "n1"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %q (line %s)", k, line[k], want, buf.String())
		}
	}
}
