package pipeline

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ObjectDiff is the difference the server reports for one change.
type ObjectDiff struct {
	Change Change
	Ref    string
	// Before is the live object (nil if absent); After what the server
	// returned for the dry run (nil for a delete).
	Before, After *unstructured.Unstructured
	// Pending is set when the object could not be dry-run because an earlier
	// phase creates its namespace or CRD.
	Pending string
	// phase is the index of the plan phase the change belongs to.
	phase int
}

// Changed reports whether applying the change alters the cluster.
func (d *ObjectDiff) Changed() bool {
	if d.Pending != "" {
		return true
	}
	b, a := d.texts(false)
	return b != a
}

// Action is what happens to the object: create, update, delete or unchanged.
func (d *ObjectDiff) Action() string {
	switch {
	case !d.Changed():
		return "unchanged"
	case d.Before == nil:
		return "create"
	case d.After == nil:
		return "delete"
	}
	return "update"
}

// texts renders both sides as YAML after stripping server bookkeeping and
// (unless showSecrets) masking Secret values.
func (d *ObjectDiff) texts(showSecrets bool) (string, string) {
	b, a := comparable(d.Before), comparable(d.After)
	if !showSecrets {
		maskSecrets(b, a)
	}
	return toYAML(b), toYAML(a)
}

// comparable strips fields that change on every write and say nothing about
// the desired state.
func comparable(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u == nil {
		return nil
	}
	c := u.DeepCopy()
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	if anns := c.GetAnnotations(); anns != nil {
		delete(anns, "deployment.kubernetes.io/revision")
		if len(anns) == 0 {
			unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
		} else {
			c.SetAnnotations(anns)
		}
	}
	return c
}

func toYAML(u *unstructured.Unstructured) string {
	if u == nil {
		return ""
	}
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		return fmt.Sprintf("# cannot render: %v\n", err)
	}
	return string(b)
}

// DiffPrinter writes diffs in-process, or through KUBECTL_EXTERNAL_DIFF
// exactly as kubectl diff does (two directories, live and merged).
type DiffPrinter struct {
	Out         io.Writer
	Color       bool
	ShowSecrets bool
	External    string
	// lines counts, per object ref, the lines the printed diff adds and
	// removes (for the change table of a long plan).
	lines map[string][2]int
}

// Print writes every changed object's diff.
func (p *DiffPrinter) Print(diffs []*ObjectDiff) error {
	if p.External != "" {
		return p.external(diffs)
	}
	for _, d := range diffs {
		if !d.Changed() {
			continue
		}
		if d.Pending != "" {
			fmt.Fprintf(p.Out, "%s %s (create, not yet server-validated: %s)\n", p.paint("+", green), d.Ref, d.Pending)
			b, a := d.texts(p.ShowSecrets)
			p.unified(d.Ref, b, a)
			continue
		}
		b, a := d.texts(p.ShowSecrets)
		p.unified(d.Ref, b, a)
	}
	return nil
}

const (
	red   = "\x1b[31m"
	green = "\x1b[32m"
	cyan  = "\x1b[36m"
	reset = "\x1b[0m"
)

func (p *DiffPrinter) paint(s, color string) string {
	if !p.Color {
		return s
	}
	return color + s + reset
}

func (p *DiffPrinter) unified(ref, before, after string) {
	text, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        lines(before),
		B:        lines(after),
		FromFile: "live/" + ref,
		ToFile:   "planned/" + ref,
		Context:  3,
	})
	if p.lines == nil {
		p.lines = map[string][2]int{}
	}
	n := p.lines[ref]
	defer func() { p.lines[ref] = n }()
	for _, line := range strings.SplitAfter(text, "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "+++"), strings.HasPrefix(line, "---"):
			fmt.Fprint(p.Out, p.paint(strings.TrimSuffix(line, "\n"), cyan)+"\n")
		case strings.HasPrefix(line, "+"):
			n[0]++
			fmt.Fprint(p.Out, p.paint(strings.TrimSuffix(line, "\n"), green)+"\n")
		case strings.HasPrefix(line, "-"):
			n[1]++
			fmt.Fprint(p.Out, p.paint(strings.TrimSuffix(line, "\n"), red)+"\n")
		default:
			fmt.Fprint(p.Out, line)
		}
	}
}

// external writes LIVE and MERGED directories and runs the user's diff
// program on them, as kubectl diff does with KUBECTL_EXTERNAL_DIFF.
func (p *DiffPrinter) external(diffs []*ObjectDiff) error {
	tmp, err := os.MkdirTemp("", "kubectl-mesh-diff-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	live, merged := filepath.Join(tmp, "LIVE"), filepath.Join(tmp, "MERGED")
	for _, dir := range []string{live, merged} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
	}
	for _, d := range diffs {
		if !d.Changed() {
			continue
		}
		name := fileName(d.Change.Object)
		b, a := d.texts(p.ShowSecrets)
		if err := os.WriteFile(filepath.Join(live, name), []byte(b), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(merged, name), []byte(a), 0o600); err != nil {
			return err
		}
	}
	fields := strings.Fields(p.External)
	cmd := exec.Command(fields[0], append(fields[1:], live, merged)...)
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if err := cmd.Run(); err != nil {
		// diff programs exit 1 when files differ: that is the expected case.
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return nil
		}
		return fmt.Errorf("KUBECTL_EXTERNAL_DIFF %q failed: %w", p.External, err)
	}
	return nil
}

// lines splits text into lines that keep their newline; empty text (an
// absent object) has no lines at all.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.SplitAfter(strings.TrimSuffix(s, "\n")+"\n", "\n")[:strings.Count(strings.TrimSuffix(s, "\n"), "\n")+1]
}

// fileName names an object's file as kubectl diff does: group.version.kind.namespace.name.
func fileName(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	parts := []string{gvk.Group, gvk.Version, gvk.Kind, u.GetNamespace(), u.GetName()}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}
