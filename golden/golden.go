// Package golden compares what a test produces with a golden file, the
// bytes of a format that users or other programs depend on, kept under the
// package's testdata/golden. Run a package's tests with -update to
// rewrite its golden files with what they produce; otherwise any change
// fails the test, which names the first difference and the command that
// accepts it. Tests import it; nothing else does.
package golden

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

var update = flag.Bool("update", false, "rewrite testdata/golden/* (and other expectations) with what the tests produce")

// Update tells whether the tests run with -update: they rewrite their
// expectations instead of comparing.
func Update() bool { return *update }

// Check compares got with testdata/golden/name, or rewrites the file with
// -update.
func Check(t testing.TB, name string, got []byte) {
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
		t.Fatalf("%v\nwrite it with: %s", err, UpdateCommand(t))
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed, and it is a format users or other programs depend on: %s\nIf the change is intended (and old readers cope with it), rewrite it with: %s",
			path, FirstDifference(want, got), UpdateCommand(t))
	}
}

// UpdateCommand is the command that rewrites t's expectations: go test
// on t's package (the working directory, relative to the module root)
// with a -run pattern for t alone, and -update.
func UpdateCommand(t testing.TB) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return "go test " + packageDir() + " -run '" + strings.Join(parts, "/") + "' -update"
}

// packageDir is the working directory (the package a test runs in) as a
// path from the module root, "./fsm" say, or "." when it cannot tell.
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil || rel == "." {
				return "."
			}
			return "./" + filepath.ToSlash(rel)
		}
		if filepath.Dir(dir) == dir {
			return "."
		}
	}
}

// FirstDifference shows where want and got first differ: the byte, the
// line, and the bytes around it in each.
func FirstDifference(want, got []byte) string {
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
