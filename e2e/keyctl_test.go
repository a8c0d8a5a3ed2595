package e2e

import (
	"github.com/keyquorum/keyquorum/vocab"

	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestKeyctlBadInput(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	c.mustKeyctl(1, "key", "create", "taken", "--bytes", "16")
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "no-such-secret")

	cases := []struct {
		name     string
		env      []string // default: node 1's
		args     []string
		code     int    // 0: any non-zero status
		contains string // in stderr
	}{
		{name: "unknown key get", args: []string{"key", "get", "nosuch"}, code: vocab.ExitNotFound, contains: "not found"},
		{name: "unknown key show", args: []string{"key", "show", "nosuch"}, code: vocab.ExitNotFound, contains: "not found"},
		{name: "unknown key revoke", args: []string{"key", "revoke", "nosuch"}, code: vocab.ExitNotFound, contains: "not found"},
		{name: "name taken", args: []string{"key", "create", "taken", "--bytes", "16"}, code: 1, contains: "exists"},
		{name: "unreadable from-file", args: []string{"key", "create", "fromfile", "--from-file", missing}, contains: missing},
		{name: "from-file is a directory", args: []string{"key", "create", "fromdir", "--from-file", tmp}, contains: tmp},
		{name: "wrong type", args: []string{"key", "create", "typed", "--type", "dsa"}, code: 2, contains: "dsa"},
		{name: "no name", args: []string{"key", "create"}, code: 2},
		{name: "extra argument", args: []string{"key", "get", "a", "b"}, code: 2},
		{name: "bad flag value", args: []string{"key", "create", "x", "--bytes", "lots"}, code: 2},
		{name: "unknown flag", args: []string{"key", "list", "--frobnicate"}, code: 2},
		{name: "no subcommand", args: []string{"key"}, code: 2},
		{name: "unknown subcommand", args: []string{"key", "frobnicate"}, code: 2},
		{name: "bad old-sha256", args: []string{"key", "cas", "taken", "--old-sha256", "zz", "--from-file", missing}, code: 2},
		{name: "node does not answer", args: []string{"key", "get", "taken", "--addr", closedPort(t)}, code: vocab.ExitUnreachable, contains: "cannot reach node at 127.0.0.1:"},
		{name: "no CA certificate", env: withVar(c.nodeEnv(1), "KEYQUORUM_CACERT", ""), args: []string{"key", "list"}, contains: "KEYQUORUM_CACERT"},
		{name: "no address", env: withVar(c.nodeEnv(1), "KEYQUORUM_ADDR", ""), args: []string{"key", "list"}, contains: "KEYQUORUM_ADDR"},
	}
	node1 := c.nodeEnv(1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = node1
			}
			r := keyctl(t, env, tc.args...)
			t.Log(r)
			checkOneLineError(t, r)
			if tc.code != 0 && r.code != tc.code {
				t.Errorf("exit %d, want %d: %v", r.code, tc.code, r)
			}
			if !strings.Contains(r.stderr, tc.contains) {
				t.Errorf("stderr does not contain %q: %v", tc.contains, r)
			}
		})
	}

	// None of the failed creates made a key; the taken one is intact.
	list := string(c.mustKeyctl(2, "key", "list").stdout)
	for _, name := range []string{"fromfile", "fromdir", "typed", "x"} {
		if regexp.MustCompile(`(?m)^` + name + `\s`).MatchString(list) {
			t.Errorf("a failed key create made key %q:\n%s", name, list)
		}
	}
	if r := c.mustKeyctl(2, "key", "get", "taken"); len(r.stdout) != 16 {
		t.Errorf("key taken: %d bytes after a second create of the same name, want 16", len(r.stdout))
	}
}

func TestCompareAndSwapCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	dir := t.TempDir()
	oldSecret := []byte("old secret\x00\nwith a NUL and a newline")
	newSecret := []byte("the new secret\n")
	oldFile, newFile, otherFile := filepath.Join(dir, "old"), filepath.Join(dir, "new"), filepath.Join(dir, "other")
	for f, b := range map[string][]byte{oldFile: oldSecret, newFile: newSecret, otherFile: []byte("never stored")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKeyctl(1, "key", "create", "cas", "--from-file", oldFile)
	// keyctl releases in share mode; an honest cluster opens it, so
	// keyctl reports no release made again with proofs
	// (client.TestShareModeDowngradeIsReported).
	inShareMode := func(r result) {
		t.Helper()
		if strings.Contains(r.stderr, "again with proofs") {
			t.Errorf("an honest cluster's release fell back to proof mode: %v", r)
		}
	}
	get := c.mustKeyctl(2, "key", "get", "cas")
	if !bytes.Equal(get.stdout, oldSecret) {
		t.Fatalf("key get after create --from-file: got %q, want %q", get.stdout, oldSecret)
	}
	inShareMode(get)
	sum := sha256.Sum256(oldSecret)
	oldHash := hex.EncodeToString(sum[:])

	inShareMode(c.mustKeyctl(2, "key", "cas", "cas", "--old-sha256", oldHash, "--from-file", newFile))
	for i := 1; i <= 3; i++ {
		if got := c.mustKeyctl(i, "key", "get", "cas").stdout; !bytes.Equal(got, newSecret) {
			t.Fatalf("node %d after the swap: got %q, want %q", i, got, newSecret)
		}
	}
	if v := shownVersion(t, c.mustKeyctl(3, "key", "show", "cas")); v != 2 {
		t.Errorf("key show after the swap: version %d, want 2", v)
	}

	// A stale hash (the old secret's) and an unrelated one both lose.
	other := sha256.Sum256([]byte("something else"))
	for _, h := range []string{oldHash, hex.EncodeToString(other[:])} {
		r := c.keyctl(3, "key", "cas", "cas", "--old-sha256", h, "--from-file", otherFile)
		checkOneLineError(t, r)
		if r.code != 1 || !strings.Contains(r.stderr, "conflict") {
			t.Errorf("cas with a wrong hash: want exit 1 and \"conflict\", got %v", r)
		}
	}
	for i := 1; i <= 3; i++ {
		if got := c.mustKeyctl(i, "key", "get", "cas").stdout; !bytes.Equal(got, newSecret) {
			t.Errorf("node %d after the lost swaps: got %q, want %q", i, got, newSecret)
		}
	}
	if v := shownVersion(t, c.mustKeyctl(1, "key", "show", "cas")); v != 2 {
		t.Errorf("key show after the lost swaps: version %d, want 2", v)
	}
}

// usageCommands are the "GROUP SUB" commands of cli.Usage, read from its
// source: e2e does not import cmd (imports point down, docs/architecture.md).
func usageCommands(t *testing.T) (usage string, cmds []string) {
	t.Helper()
	path := filepath.Join(root, "cmd", "keyctl", "cli", "cli.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "Usage" || len(vs.Values) != 1 {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
			usage, err = strconv.Unquote(lit.Value)
		}
		return false
	})
	if usage == "" || err != nil {
		t.Fatalf("no Usage constant in %s (%v)", path, err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+keyctl ([a-z]+) ([a-z-]+)\b`).FindAllStringSubmatch(usage, -1) {
		cmds = append(cmds, m[1]+" "+m[2])
	}
	return usage, cmds
}

func TestKeyctlHelp(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	usage, cmds := usageCommands(t)
	for _, want := range []string{"cluster status", "key get", "key cas"} {
		if !strings.Contains(strings.Join(cmds, "\n"), want) {
			t.Fatalf("read commands %q from cli.Usage, which lacks %q: the parsing is off", cmds, want)
		}
	}
	env := baseEnv()

	r := keyctl(t, env, "help")
	if r.code != 0 {
		t.Fatalf("keyctl help: %v", r)
	}
	if string(r.stdout) != usage {
		t.Errorf("keyctl help printed something other than cli.Usage:\n%s", r.stdout)
	}
	for _, cmd := range cmds {
		if !regexp.MustCompile(`(?m)^\s+keyctl ` + cmd + `(\s|$)`).Match(r.stdout) {
			t.Errorf("keyctl help does not list %q", cmd)
		}
		// Every command the help lists is one keyctl knows: -h reaches
		// its own flags, which answer with the help and status 0.
		args := append(strings.Fields(cmd), "-h")
		if h := keyctl(t, env, args...); h.code != 0 || !bytes.Equal(h.stdout, r.stdout) {
			t.Errorf("keyctl help lists %q, but: %v", cmd, h)
		}
	}

	for _, args := range [][]string{{"frobnicate"}, {"frobnicate", "now"}, {"key", "frobnicate"}} {
		u := keyctl(t, env, args...)
		checkOneLineError(t, u)
		if u.code != 2 || !strings.Contains(u.stderr, "frobnicate") {
			t.Errorf("unknown command: want exit 2 naming it, got %v", u)
		}
	}
}
