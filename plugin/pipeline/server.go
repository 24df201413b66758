package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// server performs the object operations of a plan; dryRun selects a
// server-side dry run (used for the diff) or the real write.
type server struct {
	dyn          dynamic.Interface
	mapper       meta.ResettableRESTMapper
	fieldManager string
	force        bool
}

func (s *server) client(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			return nil, fmt.Errorf("%s has no namespace", Ref(u))
		}
		return s.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return s.dyn.Resource(m.Resource), nil
}

// get returns the live object, or nil when it does not exist.
func (s *server) get(ctx context.Context, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	rc, err := s.client(u)
	if err != nil {
		return nil, err
	}
	live, err := rc.Get(ctx, u.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return live, err
}

// do runs one change against live, the object as it is now (nil if absent).
func (s *server) do(ctx context.Context, ch Change, live *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	rc, err := s.client(ch.Object)
	if err != nil {
		return nil, err
	}
	var dr []string
	if dryRun {
		dr = []string{metav1.DryRunAll}
	}
	name := ch.Object.GetName()
	switch ch.Op {
	case Apply:
		body, err := json.Marshal(ch.Object.Object)
		if err != nil {
			return nil, err
		}
		// A partial change (a restart annotation) deliberately takes over the
		// few fields it sets, e.g. from an earlier kubectl rollout restart.
		force := s.force || ch.Partial
		return rc.Patch(ctx, name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: s.fieldManager, Force: &force, DryRun: dr})
	case Replace:
		obj := ch.Object.DeepCopy()
		for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation"} {
			unstructured.RemoveNestedField(obj.Object, "metadata", f)
		}
		if live == nil {
			return rc.Create(ctx, obj, metav1.CreateOptions{FieldManager: s.fieldManager, DryRun: dr})
		}
		obj.SetResourceVersion(live.GetResourceVersion())
		res, err := rc.Update(ctx, obj, metav1.UpdateOptions{FieldManager: s.fieldManager, DryRun: dr})
		if err != nil || dryRun || len(obj.GetManagedFields()) == 0 {
			return res, err
		}
		// The update records us as owner of the fields it put back; the
		// restored object should have exactly its prior owners. A patch of
		// managedFields alone changes no field, so it adds no entry.
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"managedFields": obj.Object["metadata"].(map[string]any)["managedFields"],
		}})
		if err != nil {
			return nil, err
		}
		return rc.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	case Delete:
		if live == nil {
			return nil, nil
		}
		// The UID makes sure a re-created object of the same name is not deleted.
		pre := metav1.Preconditions{UID: ptr(live.GetUID())}
		err := rc.Delete(ctx, name, metav1.DeleteOptions{DryRun: dr, Preconditions: &pre})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		return nil, err
	}
	return nil, fmt.Errorf("unknown operation %q", ch.Op)
}

func ptr[T any](v T) *T { return &v }

// explain turns an API error for one object into one actionable line.
func explain(ch Change, err error) error {
	ref := Ref(ch.Object)
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		if apierrors.IsConflict(err) {
			for _, c := range causes(st) {
				if c.Type == metav1.CauseType("FieldManagerConflict") || strings.Contains(c.Message, "conflict with") {
					return fmt.Errorf("%s: fields are owned by another field manager (%s); re-run with --force-conflicts to take them over", ref, conflictSummary(st))
				}
			}
			return fmt.Errorf("%s changed after the diff was shown (%w); nothing was overwritten: re-run to plan against the current state", ref, err)
		}
	}
	return fmt.Errorf("%s: %w", ref, err)
}

func conflictSummary(st metav1.Status) string {
	var parts []string
	for _, c := range causes(st) {
		parts = append(parts, strings.TrimSpace(c.Message+" "+c.Field))
	}
	if len(parts) == 0 {
		return st.Message
	}
	return strings.Join(parts, "; ")
}

// isCRD reports whether u is a CustomResourceDefinition.
func isCRD(u *unstructured.Unstructured) bool {
	return u.GroupVersionKind().GroupKind() == apiextensionsv1.Kind("CustomResourceDefinition")
}

// kindOrder puts what other objects depend on first: CRDs, then namespaces.
func kindOrder(u *unstructured.Unstructured) int {
	switch {
	case isCRD(u):
		return 0
	case u.GetKind() == "Namespace" && u.GroupVersionKind().Group == "":
		return 1
	}
	return 2
}

func causes(st metav1.Status) []metav1.StatusCause {
	if st.Details == nil {
		return nil
	}
	return st.Details.Causes
}
