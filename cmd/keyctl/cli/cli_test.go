package cli

import (
	"bytes"
	"strings"
	"testing"
)

func keyctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	code, out, _ := keyctl(t, "help")
	if code != ExitOK || out != Usage {
		t.Fatalf("keyctl help: exit %d, output %q", code, out)
	}
	for group, subs := range (&command{}).handlers() {
		for sub := range subs {
			if !strings.Contains(Usage, "keyctl "+group+" "+sub) {
				t.Errorf("usage does not mention %q %q", group, sub)
			}
		}
	}
}

func TestUsageErrorsExitTwoWithOneLine(t *testing.T) {
	t.Setenv("KEYQUORUM_ADDR", "127.0.0.1:1")
	for _, args := range [][]string{
		{"nonsense"},
		{"key"},
		{"key", "frobnicate"},
		{"key", "get"},           // missing NAME
		{"key", "get", "a", "b"}, // extra argument
		{"key", "create", "x", "--bytes", "0"},
		{"key", "create", "x", "--type", "dsa"},
		{"key", "create", "x", "--type", "tang", "--from-file", "f"},
		{"key", "access", "x"},
		{"key", "import-dir", "d"}, // no --client-cert
		{"machine", "add", "m", "--public-key", "AAAA", "--key", "luks/a"},
		{"machine", "add", "m", "--public-key", "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="},
		{"session", "approve"},
		{"key", "cas", "x", "--old-sha256", "zz", "--from-file", "f"},
		{"rule", "put", "r"},
		{"cluster", "init"},
		{"cluster", "init", "--node", "127.0.0.1:1"}, // no join token
		{"cluster", "join", "127.0.0.1:1"},           // no join token
		{"cluster", "join", "127.0.0.1:1", "--token", "t", "--token-file", "f"}, // both
		{"cluster", "token"},
		{"cluster", "token", "frob"},
	} {
		code, out, errb := keyctl(t, args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitUsage, errb)
		}
		if out != "" || !strings.HasPrefix(errb, "keyctl: ") || strings.Count(errb, "\n") != 2 {
			t.Errorf("%v: stdout %q, stderr %q: want nothing and one error line plus the help hint", args, out, errb)
		}
	}
}

func TestMissingCredentialsNamesTheVariable(t *testing.T) {
	t.Setenv("KEYQUORUM_ADDR", "127.0.0.1:1")
	t.Setenv("KEYQUORUM_CACERT", "")
	code, _, errb := keyctl(t, "key", "list")
	if code == ExitOK || !strings.Contains(errb, "KEYQUORUM_CACERT") {
		t.Fatalf("exit %d, stderr %q: want a failure naming KEYQUORUM_CACERT", code, errb)
	}
}
