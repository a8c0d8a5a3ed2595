// Package keyquorum_test keeps the architecture of docs/architecture.md:
// imports point down the list of layers and never up, fsm and shamir
// import nothing of the project but the vocabulary (vocab), which imports
// nothing of the project at all, a gateway never imports another, the
// client links no node, no grab-bag packages, and every package
// has a doc comment.
package keyquorum_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/keyquorum/keyquorum"

// layers, top to bottom: a package may import only packages of its own
// layer or of layers below it.
// golden is test tooling (tests of every layer import it; no other code
// does), so it sits at the bottom.
var layers = []string{"cmd", "e2e", "jepsen", "gateway", "client", "agent", "cluster", "rpc", "token", "fsm", "shamir", "vocab", "golden"}

// isolated packages import nothing of the project but themselves and the
// packages listed with them: fsm and shamir only the vocabulary, and the
// vocabulary and the golden-file tooling nothing.
var isolated = map[string][]string{"fsm": {"vocab"}, "shamir": {"vocab"}, "vocab": nil, "golden": nil}

type pkg struct {
	dir      string
	imports  []string // of the project, without the module path
	external []string // the other imports
	hasDoc   bool
}

func loadPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	pkgs := map[string]*pkg{}
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
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		p := pkgs[dir]
		if p == nil {
			p = &pkg{dir: dir}
			pkgs[dir] = p
		}
		if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package "+f.Name.Name) || f.Name.Name == "main" && f.Doc != nil {
			p.hasDoc = true
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module+"/") {
				p.imports = append(p.imports, strings.TrimPrefix(path, module+"/"))
			} else {
				p.external = append(p.external, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func layerOf(dir string) int {
	top := strings.Split(filepath.ToSlash(dir), "/")[0]
	return slices.Index(layers, top)
}

func TestImportsPointDown(t *testing.T) {
	pkgs := loadPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("found only %d packages: is the test running at the module root?", len(pkgs))
	}
	for dir, p := range pkgs {
		from := layerOf(dir)
		if from < 0 {
			t.Errorf("package %s is in no layer of docs/architecture.md", dir)
			continue
		}
		for _, imp := range p.imports {
			to := layerOf(imp)
			if to < from {
				t.Errorf("%s imports %s: imports must point down %v", dir, imp, layers)
			}
			top := strings.Split(filepath.ToSlash(dir), "/")[0]
			if allowed, ok := isolated[top]; ok {
				if to := strings.Split(imp, "/")[0]; to != top && !slices.Contains(allowed, to) {
					t.Errorf("%s imports %s: %s may import nothing of the project but %v", dir, imp, top, allowed)
				}
			}
		}
	}
}

func TestNoGrabBagPackages(t *testing.T) {
	for dir := range loadPackages(t) {
		switch filepath.Base(dir) {
		case "util", "utils", "common", "helpers", "misc", "models":
			t.Errorf("package %s: name packages after what they are", dir)
		}
	}
}

func TestEveryPackageHasDocComment(t *testing.T) {
	for dir, p := range loadPackages(t) {
		if !p.hasDoc {
			t.Errorf("package %s has no doc comment", dir)
		}
	}
}

// TestGatewaysAreIndependent: a package under gateway/ never imports
// another package under gateway/. What two protocols share lives below
// them (client, cluster); cmd/keyd puts them together.
func TestGatewaysAreIndependent(t *testing.T) {
	for dir, p := range loadPackages(t) {
		dir = filepath.ToSlash(dir)
		if !strings.HasPrefix(dir, "gateway/") {
			continue
		}
		for _, imp := range p.imports {
			if strings.HasPrefix(imp, "gateway/") && imp != dir {
				t.Errorf("%s imports %s: a gateway never imports another gateway", dir, imp)
			}
		}
	}
}

// TestClientLinksNoNode: the client packages (and so keyctl) link neither
// the node (package cluster) nor Raft, memberlist or bolt, directly or
// through another package of the project.
func TestClientLinksNoNode(t *testing.T) {
	pkgs := loadPackages(t)
	node := []string{"github.com/hashicorp/raft", "github.com/hashicorp/memberlist", "go.etcd.io/bbolt", "github.com/boltdb/bolt"}
	for dir := range pkgs {
		if top := strings.Split(filepath.ToSlash(dir), "/")[0]; top != "client" && filepath.ToSlash(dir) != "cmd/keyctl" {
			continue
		}
		seen := map[string]bool{}
		var walk func(d string, via []string)
		walk = func(d string, via []string) {
			if seen[d] {
				return
			}
			seen[d] = true
			if d == "cluster" {
				t.Errorf("%s links package cluster (via %s)", dir, strings.Join(via, " -> "))
				return
			}
			p := pkgs[filepath.FromSlash(d)]
			if p == nil {
				return
			}
			for _, ext := range p.external {
				for _, n := range node {
					if strings.HasPrefix(ext, n) {
						t.Errorf("%s links %s (via %s)", dir, ext, strings.Join(append(via, d), " -> "))
					}
				}
			}
			for _, imp := range p.imports {
				walk(imp, append(slices.Clone(via), d))
			}
		}
		walk(filepath.ToSlash(dir), nil)
	}
}
