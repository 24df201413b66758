package analysis

import (
	"slices"
	"strings"
	"testing"

	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

func TestRuntimeFieldSelectors(t *testing.T) {
	if s := runtimeFieldSelector(gvk.Secret); !strings.Contains(s, "type!=helm.sh/release.v1") || !strings.Contains(s, "type!=kubernetes.io/service-account-token") {
		t.Errorf("secrets: %q", s)
	}
	if s := runtimeFieldSelector(gvk.Pod); !strings.Contains(s, "metadata.namespace!=kube-system") {
		t.Errorf("pods: %q", s)
	}
	if s := runtimeFieldSelector(gvk.Namespace); !strings.Contains(s, "metadata.name!=kube-system") {
		t.Errorf("namespaces: %q", s)
	}
	if s := runtimeFieldSelector(gvk.Deployment); s != "" {
		t.Errorf("deployments: %q, want none (Istio's live source has none)", s)
	}
}
