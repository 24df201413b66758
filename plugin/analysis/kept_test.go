package analysis

import (
	"reflect"
	"testing"

	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/schema/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

// The lint and check read the kept kinds as unstructured objects made from
// the analyzers' typed ones; they must see what the API server sent.
func TestKeptObjectsAreWhatTheServerSent(t *testing.T) {
	lists := map[string]string{
		"VirtualService": `{"apiVersion":"networking.istio.io/v1","kind":"VirtualServiceList","metadata":{},"items":[
			{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"shop","labels":{"istio.io/rev":"canary"},"annotations":{"a":"b"},"creationTimestamp":"2026-01-02T03:04:05Z","managedFields":[{"manager":"kubectl"}]},
			 "spec":{"hosts":["reviews"],"http":[
				{"name":"writes","match":[{"method":{"exact":"POST"}}],"timeout":"2s","retries":{"attempts":5,"perTryTimeout":"1s","retryOn":"5xx,reset"},"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":100}]},
				{"route":[{"destination":{"host":"reviews"}}],"retries":{"attempts":3,"perTryTimeout":"0.5s"}},
				{"name":"no-retries","timeout":"1s","retries":{"attempts":0,"perTryTimeout":"1s","retryOn":"5xx"},"route":[{"destination":{"host":"reviews"}}]}]}},
			{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"other","namespace":"web"},"spec":{"hosts":["other"]}}]}`,
		"DestinationRule": `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRuleList","metadata":{},"items":[
			{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"shop"},
			 "spec":{"host":"reviews","trafficPolicy":{"loadBalancer":{"consistentHash":{"httpHeaderName":"x-user"}},"outlierDetection":{"consecutive5xxErrors":1,"interval":"10s","baseEjectionTime":"30s","maxEjectionPercent":100}},
				"subsets":[{"name":"v1","labels":{"version":"v1"},"trafficPolicy":{"outlierDetection":{"maxEjectionPercent":100}}}]}}]}`,
		"PeerAuthentication": `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthenticationList","metadata":{},"items":[
			{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"shop"},"spec":{"selector":{"matchLabels":{"app":"db"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}},
			{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"unset","namespace":"web"},"spec":{"mtls":{"mode":"UNSET"}}}]}`,
		"AuthorizationPolicy": `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicyList","metadata":{},"items":[
			{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"open","namespace":"shop"},"spec":{"rules":[{}]}},
			{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny","namespace":"shop"},"spec":{"action":"DENY","rules":[{"from":[{"source":{"namespaces":["web"]}}],"to":[{"operation":{"methods":["POST"],"ports":["8080"]}}]}]}}]}`,
	}
	got := map[string][]*unstructured.Unstructured{}
	want := map[string][]*unstructured.Unstructured{}
	for kind, body := range lists {
		s := schemaOf(t, kind)
		objs, err := decodeList([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		snap := &Snapshot{kept: map[config.GroupVersionKind]keptKind{s.GroupVersionKind(): {s: s, objs: objs}}}
		if got[kind], err = snap.Objects(s.GroupVersionKind(), ""); err != nil {
			t.Fatal(err)
		}
		var l unstructured.UnstructuredList
		if err := l.UnmarshalJSON([]byte(body)); err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			l.Items[i].SetManagedFields(nil)
			want[kind] = append(want[kind], &l.Items[i])
		}
		if len(got[kind]) != len(want[kind]) {
			t.Fatalf("%s: %d objects, want %d", kind, len(got[kind]), len(want[kind]))
		}
		for i, u := range got[kind] {
			w := want[kind][i]
			if u.GetAPIVersion() != w.GetAPIVersion() || u.GetKind() != w.GetKind() || u.GetNamespace() != w.GetNamespace() || u.GetName() != w.GetName() ||
				!reflect.DeepEqual(u.GetLabels(), w.GetLabels()) || !reflect.DeepEqual(u.GetAnnotations(), w.GetAnnotations()) ||
				!u.GetCreationTimestamp().Time.Equal(w.GetCreationTimestamp().Time) || u.GetManagedFields() != nil {
				t.Errorf("%s %d: metadata\n got %v\nwant %v", kind, i, u.Object["metadata"], w.Object["metadata"])
			}
		}
	}
	// Durations print as Istio's JSON prints them ("0.500s"), and zero
	// values (attempts: 0, an enum's first value) are left out; the lint
	// reads both as Istio does, so its findings are the server's.
	lint := func(m map[string][]*unstructured.Unstructured) []resilience.Finding {
		return resilience.Lint(resilience.Input{VirtualServices: m["VirtualService"], DestinationRules: m["DestinationRule"], Endpoints: map[string]int{}})
	}
	if g, w := lint(got), lint(want); len(w) < 3 || !reflect.DeepEqual(g, w) {
		t.Errorf("lint findings\n got %+v\nwant %+v (at least 3)", g, w)
	}
	// Specs as sent, but for a PeerAuthentication's UNSET mode: Istio's
	// JSON leaves a default out, which reads as UNSET all the same.
	pa := got["PeerAuthentication"]
	if g, w := pa[0].Object["spec"], want["PeerAuthentication"][0].Object["spec"]; !reflect.DeepEqual(g, w) {
		t.Errorf("PeerAuthentication spec\n got %v\nwant %v", g, w)
	}
	if mode, _, _ := unstructured.NestedString(pa[1].Object, "spec", "mtls", "mode"); mode != "" && mode != "UNSET" {
		t.Errorf("PeerAuthentication with mode UNSET reads %q", mode)
	}
	for i, u := range got["AuthorizationPolicy"] {
		if g, w := u.Object["spec"], want["AuthorizationPolicy"][i].Object["spec"]; !reflect.DeepEqual(g, w) {
			t.Errorf("AuthorizationPolicy %d spec\n got %v\nwant %v", i, g, w)
		}
	}
	for i, u := range got["DestinationRule"] {
		if g, w := u.Object["spec"], want["DestinationRule"][i].Object["spec"]; !reflect.DeepEqual(g, w) {
			t.Errorf("DestinationRule %d spec\n got %v\nwant %v", i, g, w)
		}
	}
	if shop, err := (&Snapshot{kept: map[config.GroupVersionKind]keptKind{gvk.VirtualService: {s: schemaOf(t, "VirtualService"), objs: mustDecode(t, lists["VirtualService"])}}}).Objects(gvk.VirtualService, "shop"); err != nil || len(shop) != 1 || shop[0].GetName() != "reviews" {
		t.Errorf("Objects in shop = %v, %v; want reviews only", shop, err)
	}
}

func schemaOf(t *testing.T, kind string) resource.Schema {
	t.Helper()
	for _, s := range collections.All.All() {
		if s.Kind() == kind && s.Group() != "" && s.GroupVersionKind().Group != "gateway.networking.k8s.io" {
			return s
		}
	}
	t.Fatalf("no schema for %s", kind)
	return nil
}

func mustDecode(t *testing.T, body string) []runtime.Object {
	t.Helper()
	objs, err := decodeList([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
