package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/agent"
	"github.com/keyquorum/keyquorum/shamir"
	"github.com/keyquorum/keyquorum/vocab"
)

func runAgent(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// A cluster public key as keyctl cluster pin prints it, and the same in
// base64 as the config holds it.
var (
	pinHex = strings.Repeat("5a", 32)
	pinB64 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
)

func TestEnroll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "machine.key")
	config := filepath.Join(dir, "etc", "agent.json")
	code, out, errOut := runAgent("enroll", "--key-file", path, "--config", config, "--cluster-key", pinHex, "--cluster-id", "c1")
	if code != 0 {
		t.Fatalf("enroll: exit %d, %s", code, errOut)
	}
	c, err := agent.LoadConfig(config)
	if err != nil || c.ClusterID != "c1" || base64.StdEncoding.EncodeToString(c.ClusterPublicKey) != pinB64 {
		t.Fatalf("enroll did not pin the cluster in the config: %+v, %v", c, err)
	}
	if !strings.Contains(errOut, "pinned cluster c1, public key "+pinHex+", in "+config) {
		t.Errorf("stderr does not report the pin: %q", errOut)
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
	// Again, with the config's pin: the same key, not a new one.
	if _, again, errOut := runAgent("enroll", "--key-file", path, "--config", config); again != out {
		t.Errorf("second enroll printed %q, want %q; stderr %q", again, out, errOut)
	}
}

// enroll without a pin anywhere, or with half of one, or with another
// cluster's: refused, and nothing is made.
func TestEnrollRefusals(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "machine.key")
	config := filepath.Join(dir, "agent.json")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no pin", nil, vocab.ExitUsage, "--cluster-key HEX --cluster-id ID (keyctl cluster pin prints them)"},
		{"key without id", []string{"--cluster-key", pinHex}, vocab.ExitUsage, "go together"},
		{"id without key", []string{"--cluster-id", "c1"}, vocab.ExitUsage, "go together"},
		{"bad key", []string{"--cluster-key", "abcd", "--cluster-id", "c1"}, vocab.ExitUsage, "64 digits"},
		{"confirm without a server", []string{"--confirm"}, vocab.ExitUsage, "--server"},
		{"confirm without operator credentials", []string{"--confirm", "--server", "127.0.0.1:1", "--ca", config,
			"--operator-cert", "", "--operator-key", ""}, vocab.ExitUsage, "--operator-cert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runAgent(append([]string{"enroll", "--key-file", keyFile, "--config", config}, tc.args...)...)
			if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
			for _, f := range []string{keyFile, config} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s was made", f)
				}
			}
		})
	}

	// A config that pins another cluster is not overwritten.
	os.WriteFile(config, []byte(`{"cluster_id":"c0","cluster_public_key":"`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"}`), 0o600)
	code, out, errOut := runAgent("enroll", "--key-file", keyFile, "--config", config, "--cluster-key", pinHex, "--cluster-id", "c1")
	if code != vocab.ExitFailure || out != "" || !strings.Contains(errOut, "pins another cluster") {
		t.Errorf("enroll over another pin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Error("enroll over another pin made the machine key")
	}
}

// unlock without a pinned key is refused before any connection, naming
// the flag and the command that prints the key.
func TestUnlockWithoutPinMakesNoConnection(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "machine.key")
	if _, _, err := agent.EnsureMachineKey(keyFile); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	config := filepath.Join(dir, "agent.json")
	os.WriteFile(config, []byte(`{"servers":["`+l.Addr().String()+`"],"key_file":"`+keyFile+`","tcp_only":true}`), 0o600)
	code, out, errOut := runAgent("unlock", "--config", config, "--key", "disk1")
	if code != vocab.KindConfig.ExitCode() || out != "" {
		t.Errorf("unlock without a pin: exit %d, stdout %q; want exit %d and nothing", code, out, vocab.KindConfig.ExitCode())
	}
	for _, want := range []string{"no pinned cluster public key", "keyagent enroll --cluster-key", "keyctl cluster pin"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not contain %q", errOut, want)
		}
	}
	l.Close()
	<-done // every connection accepted has been counted
	if n := len(accepted); n != 0 {
		t.Errorf("unlock without a pin connected %d times", n)
	}
}

// A node that answers with a polynomial whose constant term is not the
// pin: exit bad_reply, nothing on stdout.
func TestUnlockRefusesAnotherClusterKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "machine.key")
	if _, _, err := agent.EnsureMachineKey(keyFile); err != nil {
		t.Fatal(err)
	}
	var commits [][]byte
	for range 2 {
		_, pub, err := shamir.GenerateEncryptionKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, pub)
	}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(vocab.UnlockReply{ClusterID: "c1", Key: "disk1", Version: 1, Epoch: 1, Threshold: 2,
			Poly: commits, R: commits[1], Sealed: []byte("sealed")})
	}))
	defer ts.Close()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644)
	addr := strings.TrimPrefix(ts.URL, "https://")
	code, out, errOut := runAgent("unlock", "--server", addr, "--ca", ca, "--key-file", keyFile, "--tcp-only",
		"--key", "disk1", "--cluster-public-key", pinHex, "--cluster-id", "c1", "--wait", "0s")
	if code != vocab.ExitBadReply || out != "" || !strings.Contains(errOut, "pinned cluster public key") {
		t.Errorf("unlock answered with another cluster key: exit %d, stdout %q, stderr %q; want exit %d and nothing on stdout",
			code, out, errOut, vocab.ExitBadReply)
	}
}

func TestUsageAndFailures(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "machine.key")
	if _, _, err := agent.EnsureMachineKey(keyFile); err != nil {
		t.Fatal(err)
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
	os.WriteFile(base, []byte(`{"servers":["`+dead+`"],"key_file":"`+keyFile+`","cluster_public_key":"`+pinB64+`"}`), 0o600)

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
		{"no pin", []string{"unlock", "--key", "k", "--server", dead, "--key-file", keyFile}, vocab.ExitFailure, "keyctl cluster pin"},
		{"bad pin", []string{"unlock", "--key", "k", "--server", dead, "--cluster-public-key", "abc"}, vocab.ExitUsage, "cluster-public-key"},
		{"no machine key", []string{"unlock", "--key", "k", "--server", dead, "--key-file", filepath.Join(dir, "nokey"), "--cluster-public-key", pinHex}, vocab.ExitFailure, "keyagent enroll"},
		{"no key name", []string{"unlock", "--server", dead, "--key-file", keyFile, "--cluster-public-key", pinB64}, vocab.ExitFailure, "no key name"},
		{"nothing answers", []string{"unlock", "--key", "k", "--server", dead, "--key-file", keyFile, "--tcp-only", "--cluster-public-key", pinHex}, vocab.ExitUnreachable, dead},
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
