package shamir

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStayPure enforces docs/architecture.md: shamir imports nothing of the
// project but package vocab (which imports nothing of the project), and
// its non-test code does no I/O of its own.
func TestImportsStayPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"os", "net", "net/http", "os/exec", "io/ioutil", "syscall", "log", "crypto/rand", "math/rand", "math/rand/v2", "unsafe"}
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/keyquorum/keyquorum") && path != "github.com/keyquorum/keyquorum/vocab" {
				t.Errorf("%s imports project package %s", name, path)
			}
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			for _, bad := range forbidden {
				if path == bad {
					t.Errorf("%s imports %s; the package must stay pure", name, path)
				}
			}
		}
	}
}
