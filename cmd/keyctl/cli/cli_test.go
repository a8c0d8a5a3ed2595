package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/vocab"
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

// TestExitCodesAreKeyagents: an error of each kind exits with the one
// table's code, the one keyagent exits with for the same kind, and says
// the kind on one line, with what wrapped the error (where it happened).
func TestExitCodesAreKeyagents(t *testing.T) {
	want := map[vocab.Kind]int{
		vocab.KindNotFound: 3, vocab.KindUnauthenticated: 4, vocab.KindDenied: 5, vocab.KindClockSkew: 6,
		vocab.KindNoQuorum: 7, vocab.KindUnknownOutcome: 11,
		vocab.KindTokenExpired: 5, vocab.KindTokenRevoked: 5, vocab.KindTokenWidened: 5, vocab.KindTokenLacksCapability: 5, vocab.KindTokenUsedUp: 5,
		vocab.KindWrongKey: 1, vocab.KindTampered: 1,
	}
	for _, k := range vocab.Kinds {
		var out, errb bytes.Buffer
		code := report(fmt.Errorf("wrapped: %w", vocab.Errorf(k, "message of %s", k)), &out, &errb)
		w, ok := want[k]
		if !ok {
			w = ExitError
			if k == vocab.KindPendingApproval {
				w = vocab.ExitApprovalTimeout
			}
		}
		if code != w || code != k.ExitCode() {
			t.Errorf("%s: exit %d, want %d", k, code, w)
		}
		wantLine := "keyctl: " + strings.ReplaceAll(string(k), "_", " ") + ": wrapped: message of " + string(k) + "\n"
		if errb.String() != wantLine || out.Len() != 0 {
			t.Errorf("%s: stderr %q, stdout %q; want stderr %q", k, errb.String(), out.String(), wantLine)
		}
	}
	var errb bytes.Buffer
	two := errors.Join(fmt.Errorf("a: %w", vocab.Errorf(vocab.KindExists, "exists")), errors.New("b: failed"))
	if code := report(two, io.Discard, &errb); code != vocab.KindExists.ExitCode() || errb.String() != "keyctl: exists: a: exists; b: failed\n" {
		t.Errorf("two errors joined: exit %d, stderr %q: want them on one line", code, errb.String())
	}
	if code := report(errors.New("plain"), io.Discard, io.Discard); code != ExitError {
		t.Errorf("an error without a kind: exit %d, want %d", code, ExitError)
	}
}
