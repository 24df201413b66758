package analysis

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"istio.io/istio/pkg/config/schema/gvk"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

func TestChangedNamesCanonicalVersions(t *testing.T) {
	got := Changed(
		schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1beta1", Kind: "VirtualService"},
		schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"},
		schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, // no analyzer reads it
	)
	if !got.Contains(gvk.VirtualService) || !got.Contains(gvk.PeerAuthentication) || got.Len() != 2 {
		t.Fatalf("Changed = %v, want the canonical VirtualService and PeerAuthentication only", got.UnsortedList())
	}
}

func TestChangedNarrowsTheAnalyzers(t *testing.T) {
	all := Options{}.combined().AnalyzerNames()
	pa := Options{Changed: Changed(schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"})}.combined().AnalyzerNames()
	if len(pa) == 0 || len(pa) >= len(all) {
		t.Fatalf("a PeerAuthentication change runs %d of %d analyzers, want some and fewer", len(pa), len(all))
	}
	vs := Options{Changed: Changed(schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"})}.combined().AnalyzerNames()
	if !slices.Contains(vs, "virtualservice.DestinationHostAnalyzer") {
		t.Fatalf("a VirtualService change does not run the destination host analyzer: %v", vs)
	}
	none := Options{Changed: Changed(schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"})}.combined().AnalyzerNames()
	if len(none) != 0 {
		t.Fatalf("a NetworkPolicy change runs %v", none)
	}
}

// lister answers LISTs from JSON items per resource, NotFound for the
// others, and records what it was asked.
type lister struct {
	mu    sync.Mutex
	asked []reads.Request
	items map[string][]string // resource → items
	deny  string              // a resource it refuses
}

func (l *lister) List(_ context.Context, q reads.Request) ([]byte, error) {
	l.mu.Lock()
	l.asked = append(l.asked, q)
	l.mu.Unlock()
	if q.Resource.Resource == l.deny {
		return nil, apierrors.NewForbidden(q.Resource.GroupResource(), "", errors.New("no"))
	}
	items, ok := l.items[q.Resource.Resource]
	if !ok {
		return nil, apierrors.NewNotFound(q.Resource.GroupResource(), "")
	}
	var in []string
	for _, it := range items {
		if q.Namespace == "" || strings.Contains(it, `"namespace":"`+q.Namespace+`"`) {
			in = append(in, it)
		}
	}
	gv := q.Resource.GroupVersion().String()
	kind := map[string]string{"pods": "Pod", "namespaces": "Namespace", "configmaps": "ConfigMap", "virtualservices": "VirtualService", "gateways": "Gateway"}[q.Resource.Resource]
	return []byte(`{"apiVersion":"` + gv + `","kind":"` + kind + `List","metadata":{},"items":[` + strings.Join(in, ",") + `]}`), nil
}

func (l *lister) ListMetadata(context.Context, reads.Request) (*metav1.PartialObjectMetadataList, error) {
	return nil, errors.New("not used")
}

// Read lists each input once, cluster-wide, and keeps what Istio's live
// source keeps: nothing in the namespaces injection ignores, Istio config
// of the revision analyzed (Gateways of every revision), no Helm or token
// Secrets (asked of the API server), the mesh config from the istio
// ConfigMap.
func TestReadFiltersAsIstiosLiveSource(t *testing.T) {
	l := &lister{items: map[string][]string{
		"pods": {`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"}}`,
			`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dns","namespace":"kube-system"}}`},
		"namespaces": {`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}`,
			`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-system"}}`},
		"configmaps": {`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"istio","namespace":"istio-system"},"data":{"mesh":"defaultConfig: {}"}}`},
		"virtualservices": {`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"default-rev","namespace":"shop"},"spec":{"hosts":["a"]}}`,
			`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"canary-rev","namespace":"shop","labels":{"istio.io/rev":"canary"}},"spec":{"hosts":["a"]}}`},
	}}
	r := reads.New(l)
	snap, err := Read(context.Background(), r, Options{IstioNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range snap.configs {
		got = append(got, c.GroupVersionKind.Kind+" "+c.Namespace+"/"+c.Name)
	}
	slices.Sort(got)
	if want := []string{"ConfigMap istio-system/istio", "Namespace /shop", "Pod shop/web", "VirtualService shop/default-rev"}; !slices.Equal(got, want) {
		t.Errorf("configs = %v, want %v", got, want)
	}
	if snap.MeshConfig() != "defaultConfig: {}" {
		t.Errorf("mesh config = %q", snap.MeshConfig())
	}
	seen := map[string]int{}
	for _, q := range l.asked {
		seen[q.Resource.String()]++
		if q.Namespace != "" && q.Resource.Resource != "configmaps" {
			t.Errorf("%s read in one namespace; the analyzers read it cluster-wide", q)
		}
		if q.Resource.Resource == "secrets" && (!strings.Contains(q.Fields, "type!=helm.sh/release.v1") || !strings.Contains(q.Fields, "type!=kubernetes.io/service-account-token")) {
			t.Errorf("secrets read with %q", q.Fields)
		}
		if q.Resource.Resource != "secrets" && q.Fields != "" {
			t.Errorf("%s read with fields %q: planners could not share it", q, q.Fields)
		}
	}
	for res, n := range seen {
		if n != 1 {
			t.Errorf("%s listed %d times", res, n)
		}
	}
	if len(l.asked) != len(Requests(Options{IstioNamespace: "istio-system"})) || len(l.asked) < 25 {
		t.Errorf("%d LISTs, Requests says %d", len(l.asked), len(Requests(Options{})))
	}

	canary, err := Read(context.Background(), r, Options{IstioNamespace: "istio-system", Revision: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, c := range canary.configs {
		if c.GroupVersionKind.Kind == "VirtualService" {
			vs = append(vs, c.Name)
		}
	}
	slices.Sort(vs)
	if !slices.Equal(vs, []string{"canary-rev", "default-rev"}) { // unlabelled config is every revision's
		t.Errorf("revision canary reads VirtualServices %v", vs)
	}
	if n := len(l.asked); n != len(seen) {
		t.Errorf("a second analysis of the same command listed again: %d LISTs", n)
	}

	l.deny = "secrets"
	var denied *DeniedError
	if _, err := Read(context.Background(), reads.New(l), Options{IstioNamespace: "istio-system"}); !errors.As(err, &denied) || !slices.Equal(denied.Kinds, []string{"secrets"}) {
		t.Errorf("a forbidden kind: %v", err)
	}
}
