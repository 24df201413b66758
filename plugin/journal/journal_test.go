package journal

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
)

func TestSaveGetListRoundTrip(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	s := &Store{Kube: kube, Namespace: "kubectl-mesh"}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	prior := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "s", "namespace": "n"}, "data": map[string]any{"k": "c2VjcmV0"}}}
	// Same second, IDs out of order: List must still sort by creation time.
	older := &ChangeSet{ID: "cs-20261125-100000-ffffff", Title: "first", Created: base, Status: StatusApplying,
		Entries: []Entry{{APIVersion: "v1", Kind: "Secret", Namespace: "n", Name: "s", Op: "apply", Existed: true, Prior: prior}}}
	newer := &ChangeSet{ID: "cs-20261125-100000-000000", Title: "second", Created: base.Add(time.Millisecond), Status: StatusApplied}
	for _, cs := range []*ChangeSet{older, newer} {
		// (The fake client does not check namespaces; creating the journal
		// namespace on first use is covered by the e2e tests.)
		if err := s.Save(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	older.Status = StatusApplied
	if err := s.Save(ctx, older); err != nil { // update in place
		t.Fatal(err)
	}
	got, err := s.Get(ctx, older.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusApplied || got.Entries[0].Prior.Object["data"].(map[string]any)["k"] != "c2VjcmV0" {
		t.Fatalf("round trip lost data: %+v", got)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Title != "second" {
		t.Fatalf("list order: %v, %v", list[0].Title, list[1].Title)
	}
	if v := got.WithoutPriors(); v.Entries[0].Prior != nil || got.Entries[0].Prior == nil {
		t.Fatal("WithoutPriors must copy, not strip the original")
	}
	if _, err := s.Get(ctx, "cs-missing"); err == nil || !strings.Contains(err.Error(), "kubectl mesh history") {
		t.Fatalf("missing change set: %v", err)
	}
	if id := NewID(base); !strings.HasPrefix(id, "cs-20261125-100000-") || len(id) != len("cs-20261125-100000-")+6 {
		t.Fatalf("id %q", id)
	}
}
