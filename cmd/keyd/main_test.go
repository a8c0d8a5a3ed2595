package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagsEnvAndConfigFile: a flag on the command line wins over its
// KEYQUORUM_* variable, the variable over the config file, and the file
// over the default, as the README says.
func TestFlagsEnvAndConfigFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "keyd.json")
	if err := os.WriteFile(cfg, []byte(`{"data-dir":"/from/file","api-addr":"10.0.0.1:1","log-level":"debug","request-timeout":"7s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYQUORUM_API_ADDR", "10.0.0.2:2")
	t.Setenv("KEYQUORUM_RAFT_ADDR", "10.0.0.3:3")
	fs := flag.NewFlagSet("keyd", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs)
	if err := fs.Parse([]string{"--raft-addr", "10.0.0.4:4"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnvAndFile(fs, cfg); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{
		"raft-addr (flag over env)":    f.raftAddr,
		"api-addr (env over file)":     f.apiAddr,
		"data-dir (file over default)": f.dataDir,
		"log-level (file)":             f.logLevel,
		"gossip-addr (default)":        f.gossipAddr,
		"request-timeout (file)":       f.requestTimeout.String(),
		"heartbeat-timeout (default)":  f.heartbeatTimeout.String(),
	} {
		want := map[string]string{
			"raft-addr (flag over env)":    "10.0.0.4:4",
			"api-addr (env over file)":     "10.0.0.2:2",
			"data-dir (file over default)": "/from/file",
			"log-level (file)":             "debug",
			"gossip-addr (default)":        "127.0.0.1:8742",
			"request-timeout (file)":       "7s",
			"heartbeat-timeout (default)":  "150ms",
		}[name]
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestBadEnvValueNamesTheVariable(t *testing.T) {
	t.Setenv("KEYQUORUM_REQUEST_TIMEOUT", "soon")
	fs := flag.NewFlagSet("keyd", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs)
	if err := applyEnvAndFile(fs, ""); err == nil || !strings.Contains(err.Error(), "KEYQUORUM_REQUEST_TIMEOUT") {
		t.Fatalf("got %v, want an error naming KEYQUORUM_REQUEST_TIMEOUT", err)
	}
}

// TestJoinTokenFromEnvOrConfig: --join-token comes from
// KEYQUORUM_JOIN_TOKEN or the config file, like every flag.
func TestJoinTokenFromEnvOrConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "keyd.json")
	if err := os.WriteFile(cfg, []byte(`{"join-token":"from-file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "from-env"} {
		if env != "" {
			t.Setenv("KEYQUORUM_JOIN_TOKEN", env)
		}
		fs := flag.NewFlagSet("keyd", flag.ContinueOnError)
		var f nodeFlags
		f.register(fs)
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := applyEnvAndFile(fs, cfg); err != nil {
			t.Fatal(err)
		}
		want := "from-file"
		if env != "" {
			want = env
		}
		if f.joinToken != want {
			t.Errorf("join token %q, want %q", f.joinToken, want)
		}
	}
}

// TestIdentityPrintsTheFingerprint: keyd identity makes the identity once
// and prints the same ID and fingerprint every time, before the node runs.
func TestIdentityPrintsTheFingerprint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	var first, second strings.Builder
	if err := runIdentity([]string{"--data-dir", dir, "--id", "n1"}, &first); err != nil {
		t.Fatal(err)
	}
	if err := runIdentity([]string{"--data-dir", dir, "--id", "n1"}, &second); err != nil {
		t.Fatal(err)
	}
	out := first.String()
	if out != second.String() || !strings.HasPrefix(out, "node n1\nfingerprint ") || len(strings.TrimSpace(strings.TrimPrefix(out, "node n1\nfingerprint "))) != 64 {
		t.Fatalf("keyd identity printed %q, then %q", out, second.String())
	}
	if err := runIdentity([]string{"--data-dir", dir, "--id", "other"}, io.Discard); err == nil {
		t.Fatal("keyd identity took another node's data directory")
	}
}

// TestTLVRSADecryptFlag: --tlv-rsa-decrypt takes unpadded (the default) or
// padded, from a flag or KEYQUORUM_TLV_RSA_DECRYPT, and a bad value is an
// error that says what is allowed.
func TestTLVRSADecryptFlag(t *testing.T) {
	parse := func(args ...string) (gatewayFlags, error) {
		fs := flag.NewFlagSet("keyd", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var g gatewayFlags
		g.register(fs)
		if err := fs.Parse(args); err != nil {
			return g, err
		}
		return g, applyEnvAndFile(fs, "")
	}
	if g, err := parse(); err != nil || g.tlvRSADecrypt != "unpadded" {
		t.Errorf("default: %q, %v", g.tlvRSADecrypt, err)
	}
	if g, err := parse("--tlv-rsa-decrypt", "padded"); err != nil || g.tlvRSADecrypt != "padded" {
		t.Errorf("flag: %q, %v", g.tlvRSADecrypt, err)
	}
	if _, err := parse("--tlv-rsa-decrypt", "raw"); err == nil || !strings.Contains(err.Error(), "unpadded") {
		t.Errorf("a bad value: %v, want an error naming the values", err)
	}
	t.Setenv("KEYQUORUM_TLV_RSA_DECRYPT", "padded")
	if g, err := parse(); err != nil || g.tlvRSADecrypt != "padded" {
		t.Errorf("env: %q, %v", g.tlvRSADecrypt, err)
	}
}

// TestDevDirCutOffBeforeFormed: a --dir with nodes but no record of a
// formed cluster (a first run stopped while it formed) is refused with
// what to do, not half resumed; an empty or new one is formed.
func TestDevDirCutOffBeforeFormed(t *testing.T) {
	dir := t.TempDir()
	if m, err := readDevFile(dir); err != nil || m != nil {
		t.Fatalf("empty dir: %v, %v; want nothing to resume", m, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "dev1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := readDevFile(dir); err == nil || !strings.Contains(err.Error(), "stopped before it was formed") {
		t.Fatalf("dir with dev1 and no %s: %v", devFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, devFile), []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readDevFile(dir); err == nil || !strings.Contains(err.Error(), "not a dev cluster's record") {
		t.Fatalf("empty %s: %v", devFile, err)
	}
}

// TestJoinTokenFile: --join-token-file gives the token (trimmed); a
// missing file is no token, an empty one an error; --join-token wins.
func TestJoinTokenFile(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	file := filepath.Join(dir, "keyquorum-0")
	os.WriteFile(file, []byte("tok-123\n"), 0o600)
	f := nodeFlags{joinTokenFile: file}
	if err := readJoinTokenFile(&f, log); err != nil || f.joinToken != "tok-123" {
		t.Errorf("token %q, %v: want tok-123", f.joinToken, err)
	}
	f = nodeFlags{joinTokenFile: filepath.Join(dir, "missing")}
	if err := readJoinTokenFile(&f, log); err != nil || f.joinToken != "" {
		t.Errorf("missing file: token %q, %v: want none and no error", f.joinToken, err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if err := readJoinTokenFile(&nodeFlags{joinTokenFile: empty}, log); err == nil {
		t.Error("an empty token file was accepted")
	}
	f = nodeFlags{joinTokenFile: file, joinToken: "given"}
	if err := readJoinTokenFile(&f, log); err != nil || f.joinToken != "given" {
		t.Errorf("--join-token given: token %q, %v", f.joinToken, err)
	}
}

// TestLogFormat: --log-format json makes one JSON object a line; an
// unknown format is refused.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "node", "n1")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "hello" || line["node"] != "n1" || line["level"] != "INFO" {
		t.Errorf("json line %q: %v", buf.String(), err)
	}
	if _, err := newLogger(&buf, "info", "xml"); err == nil {
		t.Error("log format xml was accepted")
	}
}

// TestDevNodesRunARelaxedHeartbeat: keyd dev's nodes run a 500 ms Raft
// heartbeat timeout, as the README says, not keyd's LAN default.
func TestDevNodesRunARelaxedHeartbeat(t *testing.T) {
	f := devNode{ID: "dev1"}.flags(t.TempDir(), "")
	if f.heartbeatTimeout.String() != "500ms" {
		t.Errorf("a dev node's heartbeat timeout is %v, want the README's 500ms", f.heartbeatTimeout)
	}
}
