package reads

import (
	"context"
	"encoding/json"

	istiokube "istio.io/istio/pkg/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// REST lists through the typed client's REST client, so that built-in
// kinds travel as protobuf (several times faster to decode than JSON for
// thousands of pods; custom resources only speak JSON), and metadata-only
// lists through the metadata client. A LIST is consistent and served
// whole: since Kubernetes 1.31 the API server answers it from its watch
// cache, as cheaply as resourceVersion=0, and a planner that writes back
// what it read must not have read a stale copy.
func REST(kube kubernetes.Interface, md metadata.Interface) Lister {
	return restLister{rc: kube.CoreV1().RESTClient(), md: md}
}

type restLister struct {
	rc rest.Interface
	md metadata.Interface
}

func (l restLister) List(ctx context.Context, q Request) ([]byte, error) {
	gvr := q.Resource
	path := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		path = "/api/" + gvr.Version
	}
	if q.Namespace != "" {
		path += "/namespaces/" + q.Namespace
	}
	req := l.rc.Get().AbsPath(path, gvr.Resource)
	if !istiokube.IstioScheme.IsGroupRegistered(gvr.Group) {
		// A built-in kind this binary has no Go type for (APIService):
		// protobuf could not be decoded.
		req = req.SetHeader("Accept", "application/json")
	}
	if q.Labels != "" {
		req = req.Param("labelSelector", q.Labels)
	}
	if q.Fields != "" {
		req = req.Param("fieldSelector", q.Fields)
	}
	res := req.Do(ctx)
	// Error decodes the API server's Status (DoRaw would leave a refusal
	// sent as protobuf as an error saying "unknown"): "User … cannot list
	// resource …", and a forbidden error that says so.
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

func (l restLister) ListMetadata(ctx context.Context, q Request) (*metav1.PartialObjectMetadataList, error) {
	return l.md.Resource(q.Resource).Namespace(q.Namespace).List(ctx, metav1.ListOptions{LabelSelector: q.Labels, FieldSelector: q.Fields})
}

// Dynamic lists through a dynamic client: for unit tests with client-go's
// fake, whose objects are then decoded as the API server's JSON would be.
func Dynamic(dyn dynamic.Interface) Lister { return dynamicLister{dyn} }

type dynamicLister struct{ dyn dynamic.Interface }

func (l dynamicLister) list(ctx context.Context, q Request) (*unstructured.UnstructuredList, error) {
	return l.dyn.Resource(q.Resource).Namespace(q.Namespace).List(ctx, metav1.ListOptions{LabelSelector: q.Labels, FieldSelector: q.Fields})
}

func (l dynamicLister) List(ctx context.Context, q Request) ([]byte, error) {
	ul, err := l.list(ctx, q)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ul)
}

func (l dynamicLister) ListMetadata(ctx context.Context, q Request) (*metav1.PartialObjectMetadataList, error) {
	ul, err := l.list(ctx, q)
	if err != nil {
		return nil, err
	}
	return MetadataList(ul.Items)
}

// MetadataList is what a metadata-only LIST of these objects returns: their
// metadata, the rest of each object dropped.
func MetadataList(objs []unstructured.Unstructured) (*metav1.PartialObjectMetadataList, error) {
	out := &metav1.PartialObjectMetadataList{Items: make([]metav1.PartialObjectMetadata, len(objs))}
	for i := range objs {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[i].Object, &out.Items[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
