package main

import (
	"flag"
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
	} {
		want := map[string]string{
			"raft-addr (flag over env)":    "10.0.0.4:4",
			"api-addr (env over file)":     "10.0.0.2:2",
			"data-dir (file over default)": "/from/file",
			"log-level (file)":             "debug",
			"gossip-addr (default)":        "127.0.0.1:8742",
			"request-timeout (file)":       "7s",
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
