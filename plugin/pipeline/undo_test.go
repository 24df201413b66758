package pipeline

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/journal"
)

func TestUndoPlanReversesTheChangeSet(t *testing.T) {
	prior := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "changed", "namespace": "n"}, "data": map[string]any{"a": "1"}}}
	cs := &journal.ChangeSet{ID: "cs-1", Title: "t", Entries: []journal.Entry{
		{APIVersion: "v1", Kind: "Namespace", Name: "n", Op: "apply", Existed: false},
		{APIVersion: "v1", Kind: "ConfigMap", Namespace: "n", Name: "changed", Op: "apply", Existed: true, Prior: prior},
		{APIVersion: "networking.istio.io/v1", Kind: "VirtualService", Namespace: "n", Name: "new", Op: "apply"},
	}}
	plan, err := UndoPlan(cs)
	if err != nil {
		t.Fatal(err)
	}
	got := plan.Phases[0].Changes
	want := []struct {
		op   Op
		name string
	}{{Delete, "new"}, {Replace, "changed"}, {Delete, "n"}}
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Op != w.op || got[i].Object.GetName() != w.name {
			t.Fatalf("change %d = %s %s, want %s %s", i, got[i].Op, got[i].Object.GetName(), w.op, w.name)
		}
	}
	if plan.UndoOf != "cs-1" {
		t.Fatal("undo plan does not name its change set")
	}
	// The runner's ordering keeps the namespace delete last.
	sortPhases(plan)
	if last := plan.Phases[0].Changes[2]; last.Object.GetKind() != "Namespace" {
		t.Fatalf("namespace delete not last: %s", last.Object.GetKind())
	}
	cs.UndoneBy = "cs-2"
	if _, err := UndoPlan(cs); err == nil {
		t.Fatal("undoing an undone change set should be refused")
	}
}

func TestSortPhasesPutsCRDsAndNamespacesFirst(t *testing.T) {
	mk := func(apiVersion, kind, name string) Change {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetName(name)
		return Change{Op: Apply, Object: u}
	}
	plan := &Plan{Phases: []Phase{{Changes: []Change{
		mk("networking.istio.io/v1", "VirtualService", "vs"),
		mk("v1", "Namespace", "ns"),
		mk("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd"),
		mk("v1", "ConfigMap", "cm"),
	}}}}
	sortPhases(plan)
	var names []string
	for _, c := range plan.Phases[0].Changes {
		names = append(names, c.Object.GetName())
	}
	if want := []string{"crd", "ns", "vs", "cm"}; !slices.Equal(names, want) {
		t.Fatalf("order %v, want %v", names, want)
	}
}
