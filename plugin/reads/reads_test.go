package reads

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	istiokube "istio.io/istio/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

var (
	apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	pas         = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
)

// server answers LISTs from objects, as the API server would: pods as
// protobuf, custom resources as JSON; it records each request and refuses
// cluster-wide ones when denyWide is set.
type server struct {
	mu       sync.Mutex
	seen     []string
	denyWide bool
	gate     chan struct{} // when set, LISTs wait for it
	pods     []corev1.Pod
	pas      map[string]string // namespace → an item's JSON
}

func (s *server) record(q Request) error {
	s.mu.Lock()
	s.seen = append(s.seen, q.String())
	s.mu.Unlock()
	if s.gate != nil {
		<-s.gate
	}
	if s.denyWide && q.Namespace == "" {
		return apierrors.NewForbidden(q.Resource.GroupResource(), "", errors.New("no"))
	}
	return nil
}

func (s *server) List(_ context.Context, q Request) ([]byte, error) {
	if err := s.record(q); err != nil {
		return nil, err
	}
	switch q.Resource {
	case pods:
		l := &corev1.PodList{}
		for _, p := range s.pods {
			if q.Namespace == "" || p.Namespace == q.Namespace {
				l.Items = append(l.Items, p)
			}
		}
		l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		var buf bytes.Buffer
		if err := protobuf.NewSerializer(istiokube.IstioScheme, istiokube.IstioScheme).Encode(l, &buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case apiServices:
		return []byte(`{"apiVersion":"apiregistration.k8s.io/v1","kind":"APIServiceList","metadata":{},"items":[{"metadata":{"name":"v1beta1.metrics.k8s.io","labels":{"k8s-app":"metrics-server"}},"spec":{"service":{"namespace":"kube-system","name":"metrics-server","port":443}}},{"metadata":{"name":"v1.apps"},"spec":{}}]}`), nil
	case pas:
		var items []string
		for ns, item := range s.pas {
			if q.Namespace == "" || ns == q.Namespace {
				items = append(items, item)
			}
		}
		return []byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthenticationList","metadata":{},"items":[` + strings.Join(items, ",") + `]}`), nil
	}
	return nil, apierrors.NewNotFound(q.Resource.GroupResource(), "")
}

func (s *server) ListMetadata(_ context.Context, q Request) (*metav1.PartialObjectMetadataList, error) {
	if err := s.record(q); err != nil {
		return nil, err
	}
	out := &metav1.PartialObjectMetadataList{}
	for _, p := range s.pods {
		if q.Namespace == "" || p.Namespace == q.Namespace {
			out.Items = append(out.Items, metav1.PartialObjectMetadata{ObjectMeta: p.ObjectMeta})
		}
	}
	return out, nil
}

func pod(ns, name string, labels map[string]string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
}

func newServer() *server {
	return &server{
		pods: []corev1.Pod{
			pod("shop", "web-1", map[string]string{"app": "web"}),
			pod("shop", "db-1", map[string]string{"app": "db"}),
			pod("blog", "web-1", map[string]string{"app": "web"}),
		},
		pas: map[string]string{
			"shop": `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"shop","managedFields":[{"manager":"kubectl"}]},"spec":{"mtls":{"mode":"UNSET"}}}`,
			"blog": `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"strict","namespace":"blog"},"spec":{"mtls":{"mode":"STRICT"}}}`,
		},
	}
}

func names[T any](t *testing.T, objs []T) string {
	t.Helper()
	var out []string
	for _, o := range objs {
		m, err := metaOf(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.GetNamespace()+"/"+m.GetName())
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func metaOf(o any) (metav1.Object, error) {
	if m, ok := o.(metav1.Object); ok {
		return m, nil
	}
	return nil, fmt.Errorf("%T has no metadata", o)
}

// Every read of a kind after a wide one is served from it: in one
// namespace, by labels, metadata only, typed or unstructured.
func TestNarrowReadsAreServedFromTheWideList(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	r := New(s)
	r.Prefetch(ctx, Request{Resource: pods}, Request{Resource: pas})

	all, err := List[*corev1.Pod](ctx, r, Request{Resource: pods})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, all); got != "blog/web-1 shop/db-1 shop/web-1" {
		t.Errorf("all pods = %s", got)
	}
	if len(all[0].ManagedFields) != 0 {
		t.Error("managedFields kept")
	}
	shop, err := List[*corev1.Pod](ctx, r, Request{Resource: pods, Namespace: "shop"})
	if err != nil || names(t, shop) != "shop/db-1 shop/web-1" {
		t.Errorf("pods in shop = %s, %v", names(t, shop), err)
	}
	web, err := r.Metadata(ctx, Request{Resource: pods, Labels: "app=web"})
	if err != nil || names(t, web) != "blog/web-1 shop/web-1" {
		t.Errorf("app=web = %s, %v", names(t, web), err)
	}
	u, err := r.Unstructured(ctx, Request{Resource: pods, Namespace: "blog"})
	if err != nil || names(t, u) != "blog/web-1" {
		t.Fatalf("unstructured pods in blog = %s, %v", names(t, u), err)
	}
	if u[0].GetKind() != "Pod" || u[0].GetAPIVersion() != "v1" {
		t.Errorf("a pod from protobuf reads as %s %s", u[0].GetAPIVersion(), u[0].GetKind())
	}
	if img := u[0].Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "app:1" {
		t.Errorf("image = %v", img)
	}
	if _, err := r.Objects(ctx, Request{Resource: pas, Namespace: "shop"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.seen, "; "); got != "pods; peerauthentications.security.istio.io" && got != "peerauthentications.security.istio.io; pods" {
		t.Errorf("LISTs made: %s, want one per kind", got)
	}
	if r.Requests() != 2 {
		t.Errorf("Requests() = %d", r.Requests())
	}
}

// Unstructured objects are what the server sent (a PeerAuthentication's
// explicit UNSET, which its protobuf type cannot tell from no mode) and
// the caller's own to change; typed ones come from the same LIST.
func TestUnstructuredIsAsStoredAndACopy(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	r := New(s)
	q := Request{Resource: pas, Namespace: "shop"}
	u, err := r.Unstructured(ctx, q)
	if err != nil || len(u) != 1 {
		t.Fatalf("%v, %v", u, err)
	}
	if mode := u[0].Object["spec"].(map[string]any)["mtls"].(map[string]any)["mode"]; mode != "UNSET" {
		t.Errorf("mode = %v, want UNSET as stored", mode)
	}
	if len(u[0].GetManagedFields()) != 0 {
		t.Error("managedFields kept")
	}
	u[0].SetName("changed")
	again, _ := r.Unstructured(ctx, q)
	if again[0].GetName() != "default" {
		t.Error("a caller's change reached the next reader")
	}
	typed, err := r.Objects(ctx, Request{Resource: pas})
	if err != nil || len(typed) != 2 {
		t.Fatalf("typed = %v, %v", typed, err)
	}
	if len(s.seen) != 2 { // PAs in shop, then everywhere: not covered the other way round
		t.Errorf("LISTs: %v", s.seen)
	}
}

// A metadata-only read makes a metadata-only LIST when no full one
// covers it; a full read later makes its own.
func TestMetadataOnlyWhenNothingFullCoversIt(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	r := New(s)
	m, err := r.Metadata(ctx, Request{Resource: pods, Namespace: "shop"})
	if err != nil || names(t, m) != "shop/db-1 shop/web-1" {
		t.Fatalf("%s, %v", names(t, m), err)
	}
	if _, err := r.Objects(ctx, Request{Resource: pods, Namespace: "shop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Metadata(ctx, Request{Resource: pods, Namespace: "shop", Labels: "app=db"}); err != nil {
		t.Fatal(err)
	}
	if len(s.seen) != 2 {
		t.Errorf("LISTs: %v, want the metadata one and the full one", s.seen)
	}
}

// A user who may not list a kind cluster-wide still reads it in a
// namespace: the failed wide LIST fails only reads of exactly it.
func TestAFailedWideListFailsOnlyItsOwnReads(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	s.denyWide = true
	r := New(s)
	r.Prefetch(ctx, Request{Resource: pods})
	if _, err := r.Objects(ctx, Request{Resource: pods}); !apierrors.IsForbidden(err) {
		t.Fatalf("wide read: %v, want forbidden", err)
	}
	shop, err := List[*corev1.Pod](ctx, r, Request{Resource: pods, Namespace: "shop"})
	if err != nil || len(shop) != 2 {
		t.Fatalf("pods in shop = %v, %v", shop, err)
	}
	if _, err := r.Objects(ctx, Request{Resource: pods}); !apierrors.IsForbidden(err) {
		t.Fatalf("wide read again: %v", err)
	}
	if want := []string{"pods", "pods in shop"}; !slices.Equal(s.seen, want) {
		t.Errorf("LISTs: %v, want %v (a failure is not retried)", s.seen, want)
	}
	if _, err := r.Objects(ctx, Request{Resource: schema.GroupVersionResource{Group: "x.io", Version: "v1", Resource: "nopes"}, Namespace: "shop"}); !apierrors.IsNotFound(err) {
		t.Errorf("a kind not served: %v, want the API server's NotFound", err)
	}
}

// Concurrent readers of a kind share one LIST in flight.
func TestConcurrentReadersShareOneList(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	s.gate = make(chan struct{})
	r := New(s)
	r.Prefetch(ctx, Request{Resource: pods})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns := []string{"shop", "blog", ""}[i%3]
			_, err := r.Objects(ctx, Request{Resource: pods, Namespace: ns})
			errs <- err
		}()
	}
	close(s.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(s.seen) != 1 {
		t.Errorf("LISTs: %v", s.seen)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	s.gate = make(chan struct{})
	if _, err := r.Objects(cctx, Request{Resource: pas}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled read: %v", err)
	}
	close(s.gate)
}

func TestListRefusesTheWrongType(t *testing.T) {
	r := New(newServer())
	if _, err := List[*corev1.Service](context.Background(), r, Request{Resource: pods}); err == nil {
		t.Error("pods read as Services")
	}
	var _ runtime.Object = (*corev1.Pod)(nil)
}

// A kind this binary has no Go type for (APIService) is read as the
// server's JSON, whose list items leave out their kind.
func TestKindsWithoutGoTypes(t *testing.T) {
	ctx := context.Background()
	r := New(newServer())
	r.Prefetch(ctx, Request{Resource: apiServices}) // the labelled read is served from it
	u, err := r.Unstructured(ctx, Request{Resource: apiServices, Labels: "k8s-app=metrics-server"})
	if err != nil || len(u) != 1 {
		t.Fatalf("%v, %v", u, err)
	}
	if u[0].GetKind() != "APIService" || u[0].GetAPIVersion() != "apiregistration.k8s.io/v1" || u[0].GetName() != "v1beta1.metrics.k8s.io" {
		t.Errorf("got %s %s %s", u[0].GetAPIVersion(), u[0].GetKind(), u[0].GetName())
	}
	if port, _, _ := unstructured.NestedInt64(u[0].Object, "spec", "service", "port"); port != 443 {
		t.Errorf("port = %d", port)
	}
	m, err := r.Metadata(ctx, Request{Resource: apiServices})
	if err != nil || names(t, m) != "/v1.apps /v1beta1.metrics.k8s.io" {
		t.Errorf("metadata = %s, %v", names(t, m), err)
	}
	if _, err := r.Objects(ctx, Request{Resource: apiServices}); err == nil {
		t.Error("typed APIServices without a Go type")
	}
}

// Exists answers from the kind's LIST: a wide one serves a namespaced ask.
func TestExists(t *testing.T) {
	ctx := context.Background()
	s := newServer()
	r := New(s)
	r.Prefetch(ctx, Request{Resource: pods})
	for name, want := range map[string]bool{"db-1": true, "nope": false} {
		if got, err := r.Exists(ctx, Request{Resource: pods, Namespace: "shop"}, name); err != nil || got != want {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	if got, _ := r.Exists(ctx, Request{Resource: pods, Namespace: "blog"}, "db-1"); got {
		t.Error("db-1 found in blog")
	}
	if len(s.seen) != 1 {
		t.Errorf("LISTs: %v", s.seen)
	}
}
