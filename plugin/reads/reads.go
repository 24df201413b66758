// Package reads is a command's one read of the cluster. Whoever asks first
// for a kind (a planner, check's cluster checks, Istio's analyzers), the
// kind is listed once, and every later read of it (in one namespace, with
// a label selector, metadata only) is served from that LIST instead of
// another request. What a command costs the API server is then one request
// per kind it reads, however many parts of it read the kind and however
// large the cluster is.
//
// A command declares the wide reads it will make with Prefetch before the
// narrow ones start, so that "pods in shop" waits for "pods everywhere"
// (which the analyzers need anyway) instead of racing it with a LIST of
// its own.
package reads

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	istiokube "istio.io/istio/pkg/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// Request is one read: a kind, where, and how much of each object.
type Request struct {
	Resource  schema.GroupVersionResource
	Namespace string // "" for every namespace
	// Labels is a label selector. A LIST of the kind without one serves
	// the request too, filtered here.
	Labels string
	// Fields is a field selector. Only a LIST with the same one serves the
	// request: the API server's field semantics are not repeated here.
	Fields string
	// Metadata says labels, annotations and owners suffice: a full LIST
	// of the kind serves the request, else a metadata-only one is made.
	Metadata bool
}

func (q Request) String() string {
	s := q.Resource.Resource
	if q.Resource.Group != "" {
		s += "." + q.Resource.Group
	}
	if q.Namespace != "" {
		s += " in " + q.Namespace
	}
	if q.Labels != "" {
		s += " (" + q.Labels + ")"
	}
	return s
}

// covers reports whether a LIST of l answers q.
func (l Request) covers(q Request) bool {
	return l.Resource == q.Resource && l.Fields == q.Fields &&
		(l.Namespace == "" || l.Namespace == q.Namespace) &&
		(l.Labels == "" || l.Labels == q.Labels) &&
		(!l.Metadata || q.Metadata)
}

// Lister makes the LIST requests: full ones return the body as the server
// sent it (protobuf for built-in kinds, JSON for custom resources).
type Lister interface {
	List(ctx context.Context, q Request) ([]byte, error)
	ListMetadata(ctx context.Context, q Request) (*metav1.PartialObjectMetadataList, error)
}

// Reader serves one command's reads. It is safe for concurrent use.
type Reader struct {
	lister   Lister
	mu       sync.Mutex
	lists    []*list
	requests atomic.Int64
}

// New returns a Reader that lists with l.
func New(l Lister) *Reader { return &Reader{lister: l} }

// Requests is the number of LISTs made so far.
func (r *Reader) Requests() int { return int(r.requests.Load()) }

// Prefetch starts the LISTs qs name, concurrently, and returns at once.
// Reads that they cover wait for them; a failed one (a user who may not
// list a kind cluster-wide) only fails the reads that asked for exactly
// it: the others make their own.
func (r *Reader) Prefetch(ctx context.Context, qs ...Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range qs {
		if r.find(q, nil) == nil {
			r.start(ctx, q)
		}
	}
}

// list is one LIST, in flight until done is closed.
type list struct {
	q    Request
	done chan struct{}
	err  error
	// A full LIST keeps its body when it is JSON (custom resources): the
	// typed objects (Istio's protobuf specs) drop what the server sent
	// as zero values, which a planner that writes the object back must
	// keep. A protobuf body (built-in kinds) decodes to typed objects
	// that hold all of it.
	body      []byte
	typedOnce sync.Once
	typed     []runtime.Object
	typedErr  error
	meta      []metav1.Object // a metadata-only LIST
}

// find returns the list that answers q: q's own, else one that covers it
// and has not failed (nor is in skip). Called with r.mu held.
func (r *Reader) find(q Request, skip map[*list]bool) *list {
	for _, l := range r.lists {
		if l.q == q {
			return l
		}
	}
	for _, l := range r.lists {
		if !skip[l] && l.q.covers(q) && !l.failed() {
			return l
		}
	}
	return nil
}

func (l *list) failed() bool {
	select {
	case <-l.done:
		return l.err != nil
	default:
		return false
	}
}

// start makes the LIST q in the background. Called with r.mu held.
func (r *Reader) start(ctx context.Context, q Request) *list {
	l := &list{q: q, done: make(chan struct{})}
	r.lists = append(r.lists, l)
	r.requests.Add(1)
	go func() {
		defer close(l.done)
		if q.Metadata {
			ml, err := r.lister.ListMetadata(ctx, q)
			if err != nil {
				l.err = err
				return
			}
			l.meta = make([]metav1.Object, len(ml.Items))
			for i := range ml.Items {
				ml.Items[i].ManagedFields = nil
				l.meta[i] = &ml.Items[i]
			}
			return
		}
		body, err := r.lister.List(ctx, q)
		if err != nil {
			l.err = err
			return
		}
		if isProtobuf(body) {
			l.typedOnce.Do(func() { l.typed, l.typedErr = decodeList(body) })
			return
		}
		l.body = body
	}()
	return l
}

// get waits for the list that answers q, starting it if need be.
func (r *Reader) get(ctx context.Context, q Request) (*list, error) {
	var tried map[*list]bool
	for {
		r.mu.Lock()
		l := r.find(q, tried)
		if l == nil {
			l = r.start(ctx, q)
		}
		r.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if l.err == nil || l.q == q {
			return l, l.err
		}
		if tried == nil {
			tried = map[*list]bool{}
		}
		tried[l] = true // a wider LIST failed: q's own may not
	}
}

// Objects are the typed objects q selects (Istio's scheme: built-in, Istio
// and Gateway API kinds). Every reader of the command gets the same ones:
// do not change them.
func (r *Reader) Objects(ctx context.Context, q Request) ([]runtime.Object, error) {
	if q.Metadata {
		return nil, fmt.Errorf("reads: %s: a metadata-only request has no typed objects", q)
	}
	l, err := r.get(ctx, q)
	if err != nil {
		return nil, err
	}
	objs, err := l.objects()
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", q, err)
	}
	return filter(objs, l.q, q)
}

// List is Objects as one Go type, e.g. List[*corev1.Pod].
func List[T runtime.Object](ctx context.Context, r *Reader, q Request) ([]T, error) {
	objs, err := r.Objects(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		t, ok := o.(T)
		if !ok {
			return nil, fmt.Errorf("reads: %s: got %T, want %T", q, o, t)
		}
		out[i] = t
	}
	return out, nil
}

// Unstructured are the objects q selects as the server sent them (without
// managedFields), copies the caller may change. Only the selected objects
// are decoded: a planner reading one namespace's routes out of the
// analyzers' cluster-wide LIST does not hold a map of every route.
func (r *Reader) Unstructured(ctx context.Context, q Request) ([]*unstructured.Unstructured, error) {
	if q.Metadata {
		return nil, fmt.Errorf("reads: %s: a metadata-only request has no objects", q)
	}
	l, err := r.get(ctx, q)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	if l.body == nil {
		typed, err := l.objects()
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", q, err)
		}
		if typed, err = filter(typed, l.q, q); err != nil {
			return nil, err
		}
		objs, err = fromTyped(typed)
	} else {
		objs, err = decodeItems(l.body, l.q, q)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", q, err)
	}
	return objs, nil
}

// Metadata is the metadata (names, labels, annotations, owners) of the
// objects q selects, shared like Objects.
func (r *Reader) Metadata(ctx context.Context, q Request) ([]metav1.Object, error) {
	q.Metadata = true
	l, err := r.get(ctx, q)
	if err != nil {
		return nil, err
	}
	all := l.meta
	if !l.q.Metadata {
		if all, err = l.metadata(); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", q, err)
		}
	}
	return filter(all, l.q, q)
}

// Exists reports whether an object named name is among those q selects,
// from the LIST of the kind (metadata is enough): one request whatever
// else the command asks of the kind, where a GET would be one more.
func (r *Reader) Exists(ctx context.Context, q Request, name string) (bool, error) {
	objs, err := r.Metadata(ctx, q)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(objs, func(m metav1.Object) bool { return m.GetName() == name }), nil
}

func (l *list) objects() ([]runtime.Object, error) {
	l.typedOnce.Do(func() { l.typed, l.typedErr = decodeList(l.body) })
	return l.typed, l.typedErr
}

// metadata of a full list: from the typed objects, or from the
// unstructured ones for a kind without a Go type.
func (l *list) metadata() ([]metav1.Object, error) {
	var out []metav1.Object
	if objs, err := l.objects(); err == nil {
		out = make([]metav1.Object, len(objs))
		for i, o := range objs {
			if out[i], err = meta.Accessor(o); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	objs, err := decodeItems(l.body, l.q, l.q)
	if err != nil {
		return nil, err
	}
	out = make([]metav1.Object, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out, nil
}

// decodeItems decodes the items of a JSON list read with got that q
// selects, each into an unstructured object of its own. Each item's
// metadata is read first, so that the others are never made into maps.
func decodeItems(body []byte, got, q Request) ([]*unstructured.Unstructured, error) {
	var list struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := utiljson.Unmarshal(body, &list); err != nil {
		return nil, err
	}
	match, err := narrowing(got, q)
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for _, raw := range list.Items {
		if match != nil {
			var m struct {
				Metadata struct {
					Namespace string            `json:"namespace"`
					Labels    map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := utiljson.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
			if !match(m.Metadata.Namespace, m.Metadata.Labels) {
				continue
			}
		}
		var obj map[string]any
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" { // the items of a built-in kind's list leave it out
			u.SetAPIVersion(list.APIVersion)
			u.SetKind(strings.TrimSuffix(list.Kind, "List"))
		}
		u.SetManagedFields(nil)
		out = append(out, u)
	}
	return out, nil
}

// fromTyped turns built-in objects decoded from protobuf into unstructured
// ones: lossless, as the server serialises them from the same types.
func fromTyped(objs []runtime.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: m}
		if gvks, _, err := istiokube.IstioScheme.ObjectKinds(o); err == nil && len(gvks) > 0 {
			u.SetGroupVersionKind(gvks[0])
		}
		out[i] = u
	}
	return out, nil
}

// narrowing is what a LIST read with got must be narrowed by to answer q:
// nil when nothing, else whether an object in a namespace with labels is
// selected.
func narrowing(got, q Request) (func(namespace string, l map[string]string) bool, error) {
	byNS := got.Namespace == "" && q.Namespace != ""
	var sel labels.Selector
	if got.Labels == "" && q.Labels != "" {
		var err error
		if sel, err = labels.Parse(q.Labels); err != nil {
			return nil, fmt.Errorf("reads: %s: %w", q, err)
		}
	}
	if !byNS && sel == nil {
		return nil, nil
	}
	return func(namespace string, l map[string]string) bool {
		return (!byNS || namespace == q.Namespace) && (sel == nil || sel.Matches(labels.Set(l)))
	}, nil
}

// filter narrows what the LIST got read with got to what q asks for.
func filter[T any](objs []T, got, q Request) ([]T, error) {
	match, err := narrowing(got, q)
	if err != nil {
		return nil, err
	} else if match == nil {
		return append([]T(nil), objs...), nil
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		if match(m.GetNamespace(), m.GetLabels()) {
			out = append(out, o)
		}
	}
	return out, nil
}
