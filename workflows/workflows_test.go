package workflows

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestWorkflowsImportNoOtherWorkflow keeps workflows independent: shared
// pieces live on the engine side (plugin/), and where one workflow needs
// another's planning, All hands it in.
func TestWorkflowsImportNoOtherWorkflow(t *testing.T) {
	const prefix = "github.com/kubectl-mesh/kubectl-mesh/workflows/"
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		err := filepath.WalkDir(d.Name(), func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			own := strings.SplitN(filepath.ToSlash(path), "/", 2)[0]
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if other, ok := strings.CutPrefix(p, prefix); ok && strings.SplitN(other, "/", 2)[0] != own {
					t.Errorf("%s imports workflow %s: move what it needs to plugin/, or hand it in from workflows.All", path, other)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d files", checked)
	}
}
