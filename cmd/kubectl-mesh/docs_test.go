package main

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
	"github.com/kubectl-mesh/kubectl-mesh/workflows"
)

// TestDocsUpToDate: docs/ holds one page per command, exactly as generated
// from the commands; run `make docs` after changing a command.
func TestDocsUpToDate(t *testing.T) {
	root, _ := cmd.NewRoot(genericiooptions.NewTestIOStreamsDiscard(), workflows.All)
	dir := t.TempDir()
	if err := cmd.WriteDocs(root, dir); err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	have, _ := filepath.Glob("../../docs/kubectl_mesh*.md") // beside them: hand-written pages (architecture.md)
	if len(want) != len(have) {
		t.Fatalf("docs/ has %d pages, the commands make %d: run make docs", len(have), len(want))
	}
	for _, p := range want {
		fresh, _ := os.ReadFile(p)
		committed, err := os.ReadFile(filepath.Join("../../docs", filepath.Base(p)))
		if err != nil || string(fresh) != string(committed) {
			t.Fatalf("docs/%s is out of date: run make docs", filepath.Base(p))
		}
	}
	for _, page := range []string{"kubectl_mesh.md", "kubectl_mesh_install.md", "kubectl_mesh_inject.md", "kubectl_mesh_completion_install.md"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Fatalf("no page %s", page)
		}
	}
}
