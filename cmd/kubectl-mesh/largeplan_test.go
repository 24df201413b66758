package main

import (
	"fmt"
	"strings"
	"testing"
)

func configMaps(ns string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%02d, namespace: %s}\ndata: {key: value-%d}\n", i, ns, i)
	}
	return b.String()
}

// TestLargePlanShowsSummaryFirst: a plan of 40 objects prints a table of
// what changes before any diff; --diff=summary prints only the table; on a
// terminal the long diff goes through the pager.
func TestLargePlanShowsSummaryFirst(t *testing.T) {
	ns := "large-plan"
	createNamespace(t, ns)
	f := writeFile(t, "cms.yaml", configMaps(ns, 40))

	r := mesh(t, 1, "apply", "-f", f, "--dry-run=server")
	table, diff := strings.Index(r.stdout, "PHASE"), strings.Index(r.stdout, "--- live/")
	if table < 0 || diff < 0 || table > diff {
		t.Fatalf("summary at %d, first diff at %d:\n%s", table, diff, r.stdout[:min(len(r.stdout), 600)])
	}
	mustContain(t, "summary", r.stdout, "ConfigMap/cm-00 -n large-plan", "create", "+9 -0", "ConfigMap/cm-39 -n large-plan")

	r = mesh(t, 1, "apply", "-f", f, "--dry-run=server", "--diff=summary")
	mustContain(t, "summary only", r.stdout, "ConfigMap/cm-39 -n large-plan")
	if strings.Contains(r.stdout, "--- live/") {
		t.Fatal("--diff=summary printed the diff")
	}

	// A small plan has no table: the diff is the summary.
	small := writeFile(t, "one.yaml", configMaps(ns, 1))
	if r := mesh(t, 1, "apply", "-f", small, "--dry-run=server"); strings.Contains(r.stdout, "PHASE") {
		t.Fatalf("a one-object plan printed a table:\n%s", r.stdout)
	}

	// On a terminal: paged, then asked with the count.
	t.Setenv("KUBECTL_MESH_PAGER", "sed s/^/PAGED:/")
	screen, code := runOnTerminal(t, "Apply 40 changes?", "n\r", "mesh", "apply", "-f", f)
	if code != 1 {
		t.Fatalf("declined: exit %d", code)
	}
	mustContain(t, "pager", screen, "PAGED:--- live/ConfigMap/cm-00 -n large-plan", "not confirmed: nothing was changed")
	if r := kubectl(t, nil, "get", "configmap", "cm-00", "-n", ns); r.code == 0 {
		t.Fatal("a declined plan was applied")
	}
}
