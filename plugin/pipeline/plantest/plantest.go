// Package plantest helps workflow tests compare plans with golden files.
package plantest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Render turns a plan into stable text: title, notes, phases with their
// objects as YAML, checks, and the report.
func Render(p *pipeline.Plan) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "title: %s\n", p.Title)
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, ph := range p.Phases {
		fmt.Fprintf(&b, "phase: %s (verify steps: %d)\n", ph.Name, len(ph.Verify))
		for _, c := range ph.Changes {
			y, _ := yaml.Marshal(c.Object.Object)
			fmt.Fprintf(&b, "  %s partial=%v\n%s", c.Op, c.Partial, indent(string(y)))
		}
	}
	for _, c := range p.Checks {
		fmt.Fprintf(&b, "check: %s [%s] %s\n", c.Severity, c.ID, c.Message)
		for _, o := range c.Objects {
			fmt.Fprintf(&b, "  - %s\n", o)
		}
	}
	if p.Report != nil {
		p.Report(&b)
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

// Golden compares got with the file at path; UPDATE_GOLDEN=1 rewrites it.
func Golden(t *testing.T, path, got string) {
	t.Helper()
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
