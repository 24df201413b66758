// Package journal records every change set in the cluster before it is
// applied: the prior state of each object it touches. history lists them and
// undo restores them. Records are Secrets because prior states may hold
// Secret data; they live in one namespace (default "kubectl-mesh").
package journal

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
)

const (
	// LabelChangeSet marks journal records.
	LabelChangeSet = "kubectl-mesh.io/change-set"
	// LabelManagedBy is set on everything the plugin applies.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "kubectl-mesh"
	dataKey        = "changeset.json.gz"
	secretType     = corev1.SecretType("kubectl-mesh.io/change-set")
)

// Status of a change set.
const (
	StatusApplying    = "applying"    // recorded, apply started; stays so if the process died
	StatusApplied     = "applied"     // every object applied
	StatusFailed      = "failed"      // an apply was rejected; some objects may be applied
	StatusInterrupted = "interrupted" // stopped by Ctrl-C between objects
)

// Entry is one object touched by a change set.
type Entry struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Op         string `json:"op"`
	// Existed is false when the change set created the object.
	Existed bool `json:"existed"`
	// Prior is the object as it was, managedFields included, so undo can
	// restore field ownership too.
	Prior *unstructured.Unstructured `json:"prior,omitempty"`
	// Applied is true once the object was written.
	Applied bool `json:"applied,omitempty"`
}

// ChangeSet is one run of a plan.
type ChangeSet struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	Command  string    `json:"command"`
	User     string    `json:"user,omitempty"`
	Created  time.Time `json:"created"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Accepted []string  `json:"accepted,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	UndoOf   string    `json:"undoOf,omitempty"`
	UndoneBy string    `json:"undoneBy,omitempty"`
	Entries  []Entry   `json:"entries"`
}

// WithoutPriors returns a copy without the recorded object contents, for
// listing (prior states can hold Secret data).
func (cs *ChangeSet) WithoutPriors() *ChangeSet {
	c := *cs
	c.Entries = make([]Entry, len(cs.Entries))
	for i, e := range cs.Entries {
		e.Prior = nil
		c.Entries[i] = e
	}
	return &c
}

// NewID returns a sortable, unique change-set ID.
func NewID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "cs-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Store reads and writes records.
type Store struct {
	Kube      kubernetes.Interface
	Namespace string
}

// Save creates or updates the record of cs.
func (s *Store) Save(ctx context.Context, cs *ChangeSet) error {
	data, err := encode(cs)
	if err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      cs.ID,
			Namespace: s.Namespace,
			Labels:    map[string]string{LabelChangeSet: "true", LabelManagedBy: ManagedByValue},
			Annotations: map[string]string{
				"kubectl-mesh.io/title":  cs.Title,
				"kubectl-mesh.io/status": cs.Status,
			},
		},
		Type: secretType,
		Data: map[string][]byte{dataKey: data},
	}
	secrets := s.Kube.CoreV1().Secrets(s.Namespace)
	cur, err := secrets.Get(ctx, cs.ID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			// First change set in this cluster: the namespace is missing.
			if err := s.createNamespace(ctx); err != nil {
				return err
			}
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		}
	case err == nil:
		sec.ResourceVersion = cur.ResourceVersion
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("journal: cannot record change set %s in namespace %s: %w", cs.ID, s.Namespace, err)
	}
	return nil
}

func (s *Store) createNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.Namespace, Labels: map[string]string{LabelManagedBy: ManagedByValue}}}
	_, err := s.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("journal: cannot create namespace %s for change sets: %w", s.Namespace, err)
	}
	return nil
}

// Get returns one change set.
func (s *Store) Get(ctx context.Context, id string) (*ChangeSet, error) {
	sec, err := s.Kube.CoreV1().Secrets(s.Namespace).Get(ctx, id, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("change set %q not found in namespace %s: run kubectl mesh history to list them", id, s.Namespace)
	}
	if err != nil {
		return nil, err
	}
	return decode(sec)
}

// List returns all change sets, newest first.
func (s *Store) List(ctx context.Context) ([]*ChangeSet, error) {
	list, err := s.Kube.CoreV1().Secrets(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelChangeSet + "=true"})
	if err != nil {
		return nil, err
	}
	out := make([]*ChangeSet, 0, len(list.Items))
	for i := range list.Items {
		cs, err := decode(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func encode(cs *ChangeSet) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(cs); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decode(sec *corev1.Secret) (*ChangeSet, error) {
	zr, err := gzip.NewReader(bytes.NewReader(sec.Data[dataKey]))
	if err != nil {
		return nil, fmt.Errorf("journal record %s is unreadable: %w", sec.Name, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("journal record %s is unreadable: %w", sec.Name, err)
	}
	var cs ChangeSet
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("journal record %s is unreadable: %w", sec.Name, err)
	}
	return &cs, nil
}
