package inject

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
)

func namespaceWith(labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName("shop")
	u.SetLabels(labels)
	u.SetManagedFields(nil)
	return u
}

// fixture: a mixed namespace — a plain Deployment, one injected by another
// revision, an opted-out one, a hostNetwork DaemonSet, a Job and a bare pod.
var fixture = []mesh.Workload{
	{Kind: "DaemonSet", Name: "agent", Pods: []mesh.Pod{{Name: "agent-x", HostNetwork: true}}},
	{Kind: "Deployment", Name: "cart", Pods: []mesh.Pod{{Name: "cart-1"}, {Name: "cart-2"}}},
	{Kind: "Deployment", Name: "legacy", Pods: []mesh.Pod{{Name: "legacy-1", OptOut: true}}},
	{Kind: "Job", Name: "migrate", Pods: []mesh.Pod{{Name: "migrate-1"}}},
	{Kind: "Pod", Name: "debug", Pods: []mesh.Pod{{Name: "debug", UID1337: true}}},
	{Kind: "StatefulSet", Name: "db", Pods: []mesh.Pod{{Name: "db-0", HasSidecar: true, Revision: "1-30"}}},
}

func TestPlanGolden(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		ns   map[string]string
	}{
		{"default-install", Options{Revision: "default", Restart: true, Wait: true}, nil},
		{"revisioned-replaces-injection-label", Options{Revision: "1-31", Restart: true, Wait: true}, map[string]string{"istio-injection": "enabled", "team": "shop"}},
		{"both-labels-no-restart", Options{Revision: "prod-stable"}, map[string]string{"istio-injection": "enabled", "istio.io/rev": "1-30"}},
		{"disable", Options{Disable: true, Restart: true}, map[string]string{"istio.io/rev": "1-30"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Namespace = "shop"
			got := plantest.Render(tc.o.build(namespaceWith(tc.ns), fixture, "2026-11-25T10:00:00Z", nil))
			plantest.Golden(t, filepath.Join("testdata", tc.name+".golden"), got)
		})
	}
}

func TestValidateRefusesSystemNamespaces(t *testing.T) {
	for _, tc := range []struct {
		ns, want string
		force    bool
	}{
		{"kube-system", "refusing", false},
		{"istio-system", "refusing", false},
		{"kube-system", "", true},
		{"shop", "", false},
	} {
		o := New()
		o.Namespace, o.Force, o.istioNamespace = tc.ns, tc.force, "istio-system"
		err := o.Validate()
		if (tc.want == "") != (err == nil) {
			t.Fatalf("%s force=%v: %v", tc.ns, tc.force, err)
		}
	}
}
