package keyquorum_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README and the pages of docs/ back their claims with named tests
// (`cluster.TestCoordinatorNeverHoldsTheReleasedSecret`, or unqualified
// `TestForgedSnapshotAddsAdmin`). These tests keep the names true: a
// renamed or deleted test cannot leave a claim standing without its test.

// citation is a test name as the documents write it, with an optional
// package qualifier: the last element of the package's directory
// ("cluster", "tlv", "agent").
var citation = regexp.MustCompile(`\b(?:([a-z][a-z0-9_]*)\.)?((?:Test|Fuzz)[A-Z0-9_][A-Za-z0-9_]*)`)

// citingDocuments are the documents whose test names are checked; the
// first two must cite at least minCitations each.
func citingDocuments(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md", filepath.Join("docs", "threat-model.md")}
	for _, d := range docs {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

const minCitations = 10

// testFuncs maps each test and fuzz function of the module to the
// directories (slash-separated) that declare it.
func testFuncs(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil {
				continue
			}
			name := fn.Name.Name
			if (strings.HasPrefix(name, "Test") || strings.HasPrefix(name, "Fuzz")) && !slices.Contains(out[name], dir) {
				out[name] = append(out[name], dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// backed reports whether the test a citation names exists: anywhere for
// an unqualified name, in a package whose directory ends with the
// qualifier otherwise.
func backed(funcs map[string][]string, qualifier, name string) bool {
	return slices.ContainsFunc(funcs[name], func(dir string) bool {
		return qualifier == "" || dir == qualifier || strings.HasSuffix(dir, "/"+qualifier)
	})
}

// TestCitedTestsExist: every test the README and docs/ name exists, in
// the package the name is qualified with.
func TestCitedTestsExist(t *testing.T) {
	funcs := testFuncs(t)
	if len(funcs) < 100 {
		t.Fatalf("found only %d test functions: is the test running at the module root?", len(funcs))
	}
	for i, doc := range citingDocuments(t) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		cites := 0
		for n, line := range strings.Split(string(b), "\n") {
			for _, m := range citation.FindAllStringSubmatch(line, -1) {
				cites++
				if !backed(funcs, m[1], m[2]) {
					where := "anywhere in the tree"
					if m[1] != "" {
						where = "in a package " + m[1]
					}
					t.Errorf("%s:%d cites %s, which is not a test function %s", doc, n+1, m[0], where)
				}
			}
		}
		if i < 2 && cites < minCitations {
			t.Errorf("%s cites %d tests, fewer than %d: did the citation pattern stop matching?", doc, cites, minCitations)
		}
	}
}

// TestEveryClaimRowNamesATest: each row of the README's custody table
// ("Who can see key material") and of its list of what one node can
// still do names a test, or says plainly that none shows it.
func TestEveryClaimRowNamesATest(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, heading := range []string{"## Who can see key material", "## What one node can still do"} {
		rows := tableRows(string(b), heading)
		if len(rows) < 5 {
			t.Errorf("README section %q has %d table rows, want the table of claims", heading, len(rows))
		}
		for _, row := range rows {
			if !citation.MatchString(row) && !strings.Contains(row, "not tested") {
				t.Errorf("README section %q: a row names no test and does not say \"not tested\": %s", heading, row)
			}
		}
	}
}

// tableRows returns the body rows of the first Markdown table in the
// section that starts with heading (header and separator rows left out).
func tableRows(doc, heading string) []string {
	_, section, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		return nil
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var table []string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "|") {
			table = append(table, line)
		} else if len(table) > 0 {
			break
		}
	}
	if len(table) < 2 {
		return nil
	}
	return table[2:]
}
