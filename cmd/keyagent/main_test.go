package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/agent"
	"github.com/keyquorum/keyquorum/vocab"
)

func runAgent(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestEnroll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machine.key")
	code, out, errOut := runAgent("enroll", "--key-file", path)
	if code != 0 {
		t.Fatalf("enroll: exit %d, %s", code, errOut)
	}
	m := regexp.MustCompile(`^public-key: (\S+)\nmachine-id: ([0-9a-f]{32})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("enroll printed %q", out)
	}
	pub, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", m[1], err)
	}
	if agent.MachineID(pub) != m[2] {
		t.Errorf("machine id %s is not the public key's", m[2])
	}
	if !strings.Contains(errOut, "keyctl machine add NAME --public-key "+m[1]+" --key KEYNAME") {
		t.Errorf("stderr does not show the keyctl command: %q", errOut)
	}
	// Again: the same key, not a new one.
	if _, again, _ := runAgent("enroll", "--key-file", path); again != out {
		t.Errorf("second enroll printed %q, want %q", again, out)
	}
}

func TestUsageAndFailures(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "machine.key")
	if code, _, errOut := runAgent("enroll", "--key-file", keyFile); code != 0 {
		t.Fatal(errOut)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	badConfig := filepath.Join(dir, "bad.json")
	os.WriteFile(badConfig, []byte(`{"servers":["x"],"sever":"typo"}`), 0o600)
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte(`{}`), 0o600)
	base := filepath.Join(dir, "base.json")
	os.WriteFile(base, []byte(`{"servers":["`+dead+`"],"key_file":"`+keyFile+`"}`), 0o600)

	cases := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no command", nil, vocab.ExitUsage, "no command"},
		{"unknown command", []string{"frob"}, vocab.ExitUsage, "frob"},
		{"unknown flag", []string{"unlock", "--frob"}, vocab.ExitUsage, "frob"},
		{"extra argument", []string{"unlock", "x"}, vocab.ExitUsage, "unexpected argument"},
		{"bad format", []string{"unlock", "--format", "pem"}, vocab.ExitUsage, "raw or jwk"},
		{"bad duration", []string{"unlock", "--wait", "soon"}, vocab.ExitUsage, "wait"},
		{"bad inline config", []string{"unlock", "--config-json", "{"}, vocab.ExitUsage, "config-json"},
		{"misspelt config field", []string{"unlock", "--config", badConfig}, vocab.ExitFailure, "sever"},
		{"missing config file", []string{"unlock", "--config", filepath.Join(dir, "none.json")}, vocab.ExitFailure, "none.json"},
		{"no servers", []string{"unlock", "--config", empty, "--key", "k"}, vocab.ExitFailure, "no servers"},
		{"no machine key", []string{"unlock", "--key", "k", "--server", dead, "--key-file", filepath.Join(dir, "nokey")}, vocab.ExitFailure, "keyagent enroll"},
		{"no key name", []string{"unlock", "--server", dead, "--key-file", keyFile}, vocab.ExitFailure, "no key name"},
		{"nothing answers", []string{"unlock", "--key", "k", "--server", dead, "--key-file", keyFile, "--tcp-only"}, vocab.ExitUnreachable, dead},
		{"inline config over its file", []string{"unlock", "--config-json", `{"config":"` + base + `","key":"k","tcp_only":true}`}, vocab.ExitUnreachable, dead},
		{"inline config, unknown field", []string{"unlock", "--config-json", `{"key":"k","sever":"x"}`}, vocab.ExitUsage, "sever"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runAgent(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q on failure", out)
			}
			if lines := strings.Count(errOut, "\n"); lines != 1 || !strings.HasPrefix(errOut, "keyagent: ") {
				t.Errorf("want one line on stderr, got %q", errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
		})
	}
}

func TestHelpNamesEveryExitCode(t *testing.T) {
	code, out, _ := runAgent("help")
	if code != 0 || !strings.Contains(out, "keyagent unlock") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
	text := strings.Join(strings.Fields(out), " ")
	for _, c := range []string{"0 key printed", "1 other", "2 bad usage", "3 no such key", "4 machine not registered",
		"5 denied", "6 clock", "7 no quorum", "8 no server", "9 approval", "10 a node's answer", "11 unknown outcome"} {
		if !strings.Contains(text, c) {
			t.Errorf("help does not explain exit status %q", c)
		}
	}
	for _, k := range slices.Concat(vocab.Kinds, vocab.LocalKinds) {
		if c := k.ExitCode(); c > 11 {
			t.Errorf("kind %s exits %d, which the help does not explain", k, c)
		}
	}
}
