package fsm_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// update rewrites the golden files and the histories' expectations with
// what the tests produce: go test ./fsm -run TestX -update.
var update = flag.Bool("update", false, "rewrite testdata/golden/* and the expectations of testdata/histories/*.txt")

// golden compares got with testdata/golden/name, or rewrites the file
// with -update. The bytes are a format other nodes or users depend on:
// the test fails on any change and says how to accept one.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v\nwrite it with: %s", err, updateCommand(t, "./fsm"))
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed, and it is a format other nodes or users depend on: %s\nIf the change is intended (and old readers cope with it), rewrite it with: %s",
			path, firstDifference(want, got), updateCommand(t, "./fsm"))
	}
}

// updateCommand is the command that rewrites t's golden files.
func updateCommand(t *testing.T, pkg string) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return "go test " + pkg + " -run '" + strings.Join(parts, "/") + "' -update"
}

// firstDifference shows where want and got first differ: the line, and
// the bytes around it in each.
func firstDifference(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	line := bytes.Count(want[:i], []byte("\n")) + 1
	window := func(b []byte) string {
		lo, hi := min(max(i-60, 0), len(b)), min(i+60, len(b))
		return strconv.Quote(string(b[lo:hi]))
	}
	return fmt.Sprintf("byte %d (line %d):\n  want: %s\n  got:  %s", i, line, window(want), window(got))
}
