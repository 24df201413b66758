package pipeline

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/journal"
)

// UndoPlan builds the plan that restores the state recorded in cs: objects
// the change set created are deleted, changed or deleted ones are put back
// exactly as they were (managedFields included), in reverse order.
func UndoPlan(cs *journal.ChangeSet) (*Plan, error) {
	if cs.UndoneBy != "" {
		return nil, fmt.Errorf("change set %s was already undone by %s: undo %s instead to redo it", cs.ID, cs.UndoneBy, cs.UndoneBy)
	}
	ph := Phase{Name: "restore prior state"}
	for i := len(cs.Entries) - 1; i >= 0; i-- {
		e := cs.Entries[i]
		if e.Existed && e.Prior != nil {
			ph.Changes = append(ph.Changes, Change{Op: Replace, Object: e.Prior.DeepCopy()})
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(e.APIVersion)
		u.SetKind(e.Kind)
		u.SetNamespace(e.Namespace)
		u.SetName(e.Name)
		ph.Changes = append(ph.Changes, Change{Op: Delete, Object: u})
	}
	return &Plan{
		Title:  fmt.Sprintf("undo %s (%s)", cs.ID, cs.Title),
		Phases: []Phase{ph},
		UndoOf: cs.ID,
	}, nil
}
