package install

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
)

// summary is the golden view of a rendered install: object kinds and counts
// per phase, and the production-relevant values of each workload.
func summary(t *testing.T, o *Options) string {
	t.Helper()
	o.istioNamespace = "istio-system"
	objs, err := o.Render()
	if err != nil {
		t.Fatal(err)
	}
	plan := o.phases(objs)
	var b strings.Builder
	fmt.Fprintf(&b, "title: %s\n", plan.Title)
	for _, ph := range plan.Phases {
		counts := map[string]int{}
		for _, c := range ph.Changes {
			counts[c.Object.GetKind()]++
		}
		var kinds []string
		for k, n := range counts {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, "phase %s: %s\n", ph.Name, strings.Join(kinds, " "))
	}
	for _, u := range objs {
		switch u.GetKind() {
		case "Deployment":
			replicas, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			c := cs[0].(map[string]any)
			_, aff, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec", "affinity", "podAntiAffinity")
			fmt.Fprintf(&b, "Deployment %s: replicas=%d image=%s resources=%v antiAffinity=%v\n", u.GetName(), replicas, c["image"], c["resources"], aff)
			spec, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec")
			var spread []string
			tsc, _, _ := unstructured.NestedSlice(spec, "topologySpreadConstraints")
			for _, x := range tsc {
				spread = append(spread, fmt.Sprint(x.(map[string]any)["topologyKey"]))
			}
			var env []string
			for _, e := range c["env"].([]any) {
				if n := e.(map[string]any)["name"]; n == "EXIT_ON_ZERO_ACTIVE_CONNECTIONS" {
					env = append(env, fmt.Sprintf("%v=%v", n, e.(map[string]any)["value"]))
				}
			}
			ann, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", "proxy.istio.io/config")
			fmt.Fprintf(&b, "Deployment %s: spread=%v priorityClass=%v grace=%v drain=%v %v\n", u.GetName(), spread, spec["priorityClassName"], spec["terminationGracePeriodSeconds"], ann, env)
		case "PriorityClass":
			v, _, _ := unstructured.NestedInt64(u.Object, "value")
			fmt.Fprintf(&b, "PriorityClass %s: value=%d\n", u.GetName(), v)
		case "HorizontalPodAutoscaler":
			minR, _, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicas")
			maxR, _, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicas")
			fmt.Fprintf(&b, "HPA %s: min=%d max=%d\n", u.GetName(), minR, maxR)
		case "PodDisruptionBudget":
			minA, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "minAvailable")
			fmt.Fprintf(&b, "PDB %s: minAvailable=%v\n", u.GetName(), minA)
		case "ConfigMap":
			if mc, ok, _ := unstructured.NestedString(u.Object, "data", "mesh"); ok {
				for _, l := range strings.Split(mc, "\n") {
					if strings.Contains(l, "accessLogFile") || strings.Contains(l, "holdApplicationUntilProxyStarts") || strings.Contains(l, "mode: ") ||
						strings.Contains(l, "retryOn") || strings.Contains(l, "DNS_CAPTURE") {
						fmt.Fprintf(&b, "mesh %s: %s\n", u.GetName(), strings.TrimSpace(l))
					}
				}
			}
		}
	}
	return b.String()
}

func TestRenderGolden(t *testing.T) {
	cases := map[string]*Options{}
	for _, p := range Profiles {
		o := New()
		o.Profile = p
		if p == "minimal" || p == "ambient" {
			o.Ingress = false
		}
		cases[p] = o
	}
	rev := New()
	rev.Revision, rev.Egress, rev.OutboundPolicy = "1-31", true, "REGISTRY_ONLY"
	cases["production-revision-egress"] = rev
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			plantest.Golden(t, filepath.Join("testdata", name+".golden"), summary(t, o))
		})
	}
}

func TestProductionOverlayValues(t *testing.T) {
	got := summary(t, New())
	for _, want := range []string{
		"Deployment istiod: replicas=2", "map[limits:map[cpu:1000m ephemeral-storage:1Gi memory:4Gi] requests:map[cpu:500m ephemeral-storage:100Mi memory:2Gi]]",
		"HPA istiod: min=2 max=5", "PDB istiod: minAvailable=1",
		"Deployment istiod: spread=[topology.kubernetes.io/zone kubernetes.io/hostname] priorityClass=istio-control-plane",
		"Deployment istio-ingressgateway: replicas=2", "map[limits:map[cpu:2000m ephemeral-storage:1Gi memory:2Gi] requests:map[cpu:1000m ephemeral-storage:100Mi memory:1Gi]]",
		`Deployment istio-ingressgateway: spread=[topology.kubernetes.io/zone kubernetes.io/hostname] priorityClass=istio-control-plane grace=45 drain={"terminationDrainDuration": "30s"} [EXIT_ON_ZERO_ACTIVE_CONNECTIONS=true]`,
		"HPA istio-ingressgateway: min=2 max=5", "PriorityClass istio-control-plane: value=1000000",
		"accessLogFile: /dev/stdout", "holdApplicationUntilProxyStarts: true",
		"retryOn: connect-failure,refused-stream,unavailable,cancelled", `ISTIO_META_DNS_CAPTURE: "true"`,
		"image=docker.io/istio/pilot:1.31.0",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("production render lacks %q:\n%s", want, got)
		}
	}
}

func TestValidateTable(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(*Options) {}, ""},
		{func(o *Options) { o.Profile = "x" }, "unknown profile"},
		{func(o *Options) { o.Revision = "default" }, "reserved"},
		{func(o *Options) { o.Revision = "a_b" }, "must be a DNS label"},
		{func(o *Options) { o.Tag = "latest" }, "does not pin a release"},
		{func(o *Options) { o.Hub = " " }, "--hub must not be empty"},
		{func(o *Options) { o.IngressServiceType = "External" }, "invalid --ingress-service-type"},
		{func(o *Options) { o.Sets = []string{"=1"} }, "invalid --set"},
		{func(o *Options) { o.TracingSampling = -1 }, "invalid --tracing-sampling"},
	} {
		o := New()
		tc.mod(o)
		err := o.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Validate() = %v, want %q", err, tc.want)
		}
	}
	if suggestedRevision("1.31.0") != "1-31" {
		t.Fatal("suggested revision")
	}
}

func TestEveryProductionSettingHasAReason(t *testing.T) {
	if len(ProductionReasons) < 8 {
		t.Fatalf("only %d reasons", len(ProductionReasons))
	}
	for _, r := range ProductionReasons {
		if r.Setting == "" || r.Why == "" {
			t.Fatalf("reason without text: %+v", r)
		}
	}
}

func TestCompleteAsksOnlyWhatFlagsLeftOpen(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	c := cli.New(streams)
	m := &prompt.Mock{}
	m.ExpectSelect("Profile", "production")
	m.ExpectInput("Revision name", "1-31")
	m.ExpectConfirm("ingress gateway", true)
	m.ExpectSelect("Service type", "NodePort")
	m.ExpectConfirm("egress gateway", false)
	m.ExpectConfirm("Access logs", true)
	m.ExpectSelect("Outbound traffic policy", "REGISTRY_ONLY")
	m.ExpectConfirm("Gateway API CRDs", true)
	m.ExpectInput("Tracing sampling", "1")
	m.ExpectInput("Tracing collector", "zipkin.observability:9411")
	// --hub and --tag were given: not asked.
	c.Prompter = m
	o := New()
	cmd := o.Command()
	if err := cmd.ParseFlags([]string{"--hub", "registry.example/istio", "--tag", "1.31.1"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	if o.Revision != "1-31" || !o.GatewayAPI || o.OutboundPolicy != "REGISTRY_ONLY" || o.TracingSampling != 1 || o.TracingAddress != "zipkin.observability:9411" || o.Tag != "1.31.1" || o.IngressServiceType != "NodePort" {
		t.Fatalf("answers not applied: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestKubernetesVersionGate(t *testing.T) {
	o := New()
	for v, ok := range map[string]bool{"v1.36.1": true, "v1.28.0": true, "v1.28.15-gke.1": true, "v1.27.9": false, "v1.21.0": false} {
		err := o.supported(v)
		if ok != (err == nil) {
			t.Fatalf("%s: %v", v, err)
		}
		if err != nil && !strings.Contains(err.Error(), "too old") {
			t.Fatalf("%s: %v", v, err)
		}
	}
	if o.supported("garbage") == nil {
		t.Fatal("unparsable version accepted")
	}
}

func TestLeaveReplicasToHPA(t *testing.T) {
	mk := func() []*unstructured.Unstructured {
		dep := func(name string) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": map[string]any{"name": name, "namespace": "istio-system"}, "spec": map[string]any{"replicas": int64(2)}}}
		}
		hpa := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
			"metadata": map[string]any{"name": "istiod", "namespace": "istio-system"},
			"spec":     map[string]any{"scaleTargetRef": map[string]any{"kind": "Deployment", "name": "istiod"}, "minReplicas": int64(2)}}}
		return []*unstructured.Unstructured{dep("istiod"), dep("not-autoscaled"), hpa}
	}
	replicas := func(objs []*unstructured.Unstructured) (string, string) {
		get := func(u *unstructured.Unstructured) string {
			n, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
			if !found {
				return "unset"
			}
			return strconv.FormatInt(n, 10)
		}
		return get(objs[0]), get(objs[1])
	}
	for _, tc := range []struct {
		name       string
		live       map[string]int64
		export     bool
		hpa, other string
	}{
		{"first install starts at the HPA's floor", nil, false, "2", "2"},
		{"a re-run keeps what the autoscaler chose", map[string]int64{"istio-system/istiod": 4, "istio-system/not-autoscaled": 7}, false, "4", "2"},
		{"an export leaves the count to the autoscaler", map[string]int64{"istio-system/istiod": 4}, true, "unset", "2"},
	} {
		objs := mk()
		leaveReplicasToHPA(objs, tc.live, tc.export)
		if hpa, other := replicas(objs); hpa != tc.hpa || other != tc.other {
			t.Errorf("%s: autoscaled %s, other %s; want %s, %s", tc.name, hpa, other, tc.hpa, tc.other)
		}
	}
}

func TestGatewayAPICRDs(t *testing.T) {
	plan := func(installed map[string]gatewayCRD) *pipeline.Plan {
		o := New()
		o.GatewayAPI = true
		p := &pipeline.Plan{Phases: []pipeline.Phase{{Name: "Istio CRDs"}, {Name: "namespace"}}}
		if err := o.addGatewayAPI(p, installed); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ours := mesh.GatewayAPIVersion()
	p := plan(nil)
	if len(p.Phases) != 3 || p.Phases[1].Name != "Gateway API CRDs" || len(p.Phases[1].Changes) < 5 || len(p.Checks) != 0 {
		t.Fatalf("the CRDs come right after Istio's: %+v", p.Phases)
	}
	for _, c := range p.Phases[1].Changes {
		if c.Object.GetKind() != "CustomResourceDefinition" || !strings.HasSuffix(c.Object.GetName(), ".gateway.networking.k8s.io") {
			t.Fatalf("not a Gateway API CRD: %s", c.Object.GetName())
		}
	}
	if p := plan(map[string]gatewayCRD{"httproutes.gateway.networking.k8s.io": {ours, "standard"}}); len(p.Phases[1].Changes) != len(plan(nil).Phases[1].Changes) {
		t.Fatal("the same version is applied again (a no-op diff)")
	}
	p = plan(map[string]gatewayCRD{"httproutes.gateway.networking.k8s.io": {"v9.0.0", "standard"}})
	if len(p.Phases[1].Changes) != len(plan(nil).Phases[1].Changes)-1 || !strings.Contains(strings.Join(p.Notes, "\n"), "httproutes.gateway.networking.k8s.io v9.0.0") {
		t.Fatalf("a newer CRD must be kept and said so: %v", p.Notes)
	}
	p = plan(map[string]gatewayCRD{"gateways.gateway.networking.k8s.io": {"v1.2.0", "experimental"}})
	if len(p.Checks) != 1 || p.Checks[0].ID != CheckGatewayAPIChannel || p.Checks[0].Severity != pipeline.Error {
		t.Fatalf("an experimental channel install must block: %+v", p.Checks)
	}
	o := New()
	p = &pipeline.Plan{}
	if err := o.addGatewayAPI(p, nil); err != nil || len(p.Phases) != 0 {
		t.Fatal("without --gateway-api nothing is planned")
	}
}
