// Package readstest serves a reads.Reader from objects in memory, for unit
// tests of code that reads the cluster through one.
package readstest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	istiokube "istio.io/istio/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Lister answers LISTs from typed objects (Istio's scheme) as the API
// server would in JSON, and records the requests. A kind none of its
// objects has is an empty list, unless NotServed names it.
type Lister struct {
	objs      []runtime.Object
	NotServed []schema.GroupVersionResource
	// Forbidden names kinds the user may not list in any namespace.
	Forbidden []schema.GroupVersionResource

	mu    sync.Mutex
	Asked []reads.Request
}

// New returns a Lister of objs.
func New(objs ...runtime.Object) *Lister { return &Lister{objs: objs} }

// Reader is a reads.Reader over objs.
func Reader(objs ...runtime.Object) *reads.Reader { return reads.New(New(objs...)) }

func (l *Lister) matching(q reads.Request) ([]map[string]any, string, error) {
	l.mu.Lock()
	l.Asked = append(l.Asked, q)
	l.mu.Unlock()
	for _, g := range l.Forbidden {
		if g == q.Resource {
			return nil, "", apierrors.NewForbidden(g.GroupResource(), "", nil)
		}
	}
	for _, g := range l.NotServed {
		if g == q.Resource {
			return nil, "", apierrors.NewNotFound(g.GroupResource(), "")
		}
	}
	sel, err := labels.Parse(q.Labels)
	if err != nil {
		return nil, "", apierrors.NewBadRequest(err.Error())
	}
	var items []map[string]any
	kind := ""
	for _, o := range l.objs {
		gvks, _, err := istiokube.IstioScheme.ObjectKinds(o)
		if err != nil {
			return nil, "", err
		}
		gvk := gvks[0]
		if r, _ := meta.UnsafeGuessKindToResource(gvk); r != q.Resource {
			continue
		}
		m, _ := meta.Accessor(o)
		if q.Namespace != "" && m.GetNamespace() != q.Namespace || !sel.Matches(labels.Set(m.GetLabels())) {
			continue
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, "", err
		}
		u["apiVersion"], u["kind"] = gvk.GroupVersion().String(), gvk.Kind
		items = append(items, u)
		kind = gvk.Kind
	}
	return items, kind, nil
}

func (l *Lister) List(_ context.Context, q reads.Request) ([]byte, error) {
	items, kind, err := l.matching(q)
	if err != nil {
		return nil, err
	}
	if items == nil {
		items = []map[string]any{}
	}
	list := map[string]any{"apiVersion": q.Resource.GroupVersion().String(), "kind": kind + "List", "metadata": map[string]any{}, "items": items}
	if kind == "" {
		list["apiVersion"], list["kind"] = "v1", "List"
	}
	return json.Marshal(list)
}

func (l *Lister) ListMetadata(_ context.Context, q reads.Request) (*metav1.PartialObjectMetadataList, error) {
	items, _, err := l.matching(q)
	if err != nil {
		return nil, err
	}
	objs := make([]unstructured.Unstructured, len(items))
	for i, it := range items {
		objs[i].Object = it
	}
	return reads.MetadataList(objs)
}

// Requests is what was asked, one line each ("pods in shop").
func (l *Lister) Requests() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, q := range l.Asked {
		s = append(s, q.String())
	}
	return strings.Join(s, "; ")
}
