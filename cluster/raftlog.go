package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// raftLogger is the hclog logger Raft and its transport log to, passed
// through to the node's slog logger: Raft's lines get the node's handler
// (text or JSON, keyd --log-format) and attributes. hclog writes each
// line as JSON to an hclogToSlog, which logs it again.
func raftLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, JSONFormat: true, Output: hclogToSlog{log}})
}

type hclogToSlog struct{ log *slog.Logger }

// Write takes one line of hclog's JSON format.
func (h hclogToSlog) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err != nil {
		h.log.Warn(strings.TrimSpace(string(p)), "module", "raft")
		return len(p), nil
	}
	level := slog.LevelInfo
	switch line["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := line["@message"].(string)
	attrs := []any{"module", line["@module"]}
	keys := make([]string, 0, len(line))
	for k := range line {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k, line[k])
	}
	h.log.Log(context.Background(), level, msg, attrs...)
	return len(p), nil
}
