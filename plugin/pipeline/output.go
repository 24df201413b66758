package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
)

// exportable returns the plan's objects as they would be written: Secret
// values masked unless --show-secrets, and without what the API server
// fills in. A plan that puts a team's object back (Replace) starts from
// the live object, and its uid and resourceVersion would make GitOps
// engines refuse or conflict on every sync.
func (r *Runner) exportable(plan *Plan) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range plan.Objects() {
		c := o.DeepCopy()
		for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"} {
			unstructured.RemoveNestedField(c.Object, "metadata", f)
		}
		unstructured.RemoveNestedField(c.Object, "status")
		if !r.C.Engine.ShowSecrets {
			maskAll(c)
		}
		out = append(out, c)
	}
	return out
}

// export prints (-o) or writes (--output-dir) the plan's manifests for
// GitOps; nothing is applied.
func (r *Runner) export(plan *Plan) error {
	objs := r.exportable(plan)
	if dir := r.C.Engine.OutputDir; dir != "" {
		return writeDir(dir, objs)
	}
	w := r.C.Streams.Out
	if r.C.Engine.Output == "json" {
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = o.Object
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "---\n%s", b)
	}
	return nil
}

// writeDir writes one file per object, numbered in apply order, and a
// kustomization.yaml listing them in that order.
func writeDir(dir string, objs []*unstructured.Unstructured) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exitcode.Usagef("cannot create --output-dir %s: %v", dir, err)
	}
	var files []string
	for i, o := range objs {
		name := ManifestFile(i+1, o)
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return exitcode.Usagef("cannot write --output-dir %s: %v", dir, err)
		}
		files = append(files, name)
	}
	k, _ := yaml.Marshal(map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  files,
	})
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644)
}

// ManifestFile names the n-th object's file in an output directory:
// numbered in apply order, then kind, name and namespace.
func ManifestFile(n int, o *unstructured.Unstructured) string {
	name := fmt.Sprintf("%03d-%s-%s", n, strings.ToLower(o.GetKind()), o.GetName())
	if ns := o.GetNamespace(); ns != "" {
		name += "." + ns
	}
	return name + ".yaml"
}

// printPlan is --dry-run=client: what would be done, validated by nobody.
func (r *Runner) printPlan(plan *Plan) error {
	w := r.C.Streams.Out
	fmt.Fprintf(w, "Plan: %s\n", plan.Title)
	for _, n := range plan.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, c := range plan.Checks {
		fmt.Fprintf(w, "  %s [%s] %s\n", c.Severity, c.ID, c.Message)
	}
	for i, ph := range plan.Phases {
		fmt.Fprintf(w, "Phase %d: %s\n", i+1, ph.Name)
		for _, c := range ph.Changes {
			fmt.Fprintf(w, "  %-7s %s\n", c.Op, Ref(c.Object))
		}
	}
	for _, v := range plan.Verify {
		fmt.Fprintf(w, "Verify: %s\n", v.Name)
	}
	return nil
}
