package authz

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

const (
	frontend = "cluster.local/ns/shop/sa/frontend"
	gateway  = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	reports  = "cluster.local/ns/batch/sa/reports"
)

func TestParseCaller(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: frontend, want: frontend},
		{in: "spiffe://" + frontend, want: frontend},
		{in: "ns/batch", want: "ns/batch"},
		{in: "ns/Bad_NS", err: "not a namespace name"},
		{in: "frontend", err: "neither a principal nor ns/NAME"},
		{in: "cluster.local/ns/shop/serviceaccount/x", err: "neither a principal"},
		{in: "cluster.local/ns/shop/sa/", err: "not a valid name"},
	} {
		c, err := parseCaller(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || c.String() != tc.want):
			t.Errorf("%q: %v %v, want %q", tc.in, c, err, tc.want)
		}
	}
}

func workload(name string, sidecar bool, ann map[string]string) mesh.Workload {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: "shop", Labels: map[string]string{"app": name, "pod-template-hash": "abc"}, Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}}}}}}
	return mesh.Workload{Namespace: "shop", Kind: "Deployment", Name: name, Pods: []mesh.Pod{{Name: pod.Name, HasSidecar: sidecar, Object: pod}}}
}

func apObj(name string, ann map[string]string, spec map[string]any) policy {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "spec": spec}}
	u.SetName(name)
	u.SetNamespace("shop")
	u.SetAnnotations(ann)
	return parsePolicy(u)
}

func strictShop() []mesh.PeerAuth {
	return []mesh.PeerAuth{{Namespace: "shop", Name: "default", Mode: mesh.ModeStrict}}
}

// shop: reviews and ratings called by the frontend and the gateway, a
// plaintext caller of reviews, details never called, legacy without a
// sidecar; the team already allows the frontend into ratings.
func shop() *snapshot {
	return &snapshot{
		Root: "istio-system", Namespace: "shop", NamespaceExists: true, PAs: strictShop(),
		Workloads: []mesh.Workload{workload("details", true, nil), workload("legacy", false, nil), workload("ratings", true, nil), workload("reviews", true, nil)},
		Selectors: map[string]map[string]string{"Deployment/reviews": {"app": "reviews"}, "Deployment/ratings": {"app": "ratings"}},
		Policies: []policy{apObj("team-ratings", nil, map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "ratings"}},
			"rules":    []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{"principals": []any{frontend}}}}}},
		})},
		ServiceAccounts: map[string]bool{"shop/frontend": true, "istio-system/istio-ingressgateway-service-account": true},
	}
}

func edges() []telemetry.Edge {
	return []telemetry.Edge{
		{Principal: frontend, Source: "frontend", SourceNamespace: "shop", Dest: "reviews", Protocol: "http", Requests: 900},
		{Principal: gateway, Source: "istio-ingressgateway", SourceNamespace: "istio-system", Dest: "reviews", Protocol: "http", Requests: 300},
		{Principal: frontend, Source: "frontend", SourceNamespace: "shop", Dest: "ratings", Protocol: "http", Requests: 500},
		{Principal: gateway, Source: "istio-ingressgateway", SourceNamespace: "istio-system", Dest: "ratings", Protocol: "grpc", Requests: 20},
		{Source: "unknown", Dest: "reviews", Protocol: "http", Requests: 40},
	}
}

func plan(t *testing.T, o *Options, s *snapshot, ev *evidence) *migration {
	t.Helper()
	o.Namespace, o.snap, o.ev = "shop", s, ev
	if o.Window == "" {
		o.Window = "7d"
	}
	if err := o.parse(); err != nil {
		t.Fatal(err)
	}
	m := o.build(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	return m
}

func find(m *migration, name string) *planned {
	for i := range m.planned {
		if m.planned[i].Obj.GetName() == name {
			return &m.planned[i]
		}
	}
	return nil
}

func check(cs []pipeline.Check, id string) *pipeline.Check {
	for i := range cs {
		if cs[i].ID == id {
			return &cs[i]
		}
	}
	return nil
}

func TestAuditPlansObservedPrincipalsInDryRun(t *testing.T) {
	m := plan(t, &Options{Stage: StageAudit}, shop(), &evidence{Edges: edges(), Covers: true, Where: "test"})
	names := []string{}
	for _, p := range m.planned {
		names = append(names, p.Obj.GetName())
		if p.Obj.GetAnnotations()[annotationDryRun] != "true" {
			t.Errorf("%s: audit policy without istio.io/dry-run", p.Obj.GetName())
		}
	}
	// ratings: the team's policy already admits the frontend; only the gateway is added.
	if want := []string{"allow-ratings", "allow-reviews", "allow-nothing"}; !slices.Equal(names, want) {
		t.Fatalf("planned %v, want %v", names, want)
	}
	if got := find(m, "allow-reviews").Principals; !slices.Equal(got, []string{gateway, frontend}) {
		t.Errorf("reviews allows %v, want the frontend and the gateway, sorted", got)
	}
	if got := find(m, "allow-ratings").Principals; !slices.Equal(got, []string{gateway}) {
		t.Errorf("ratings allows %v: the team's rule for the frontend is duplicated", got)
	}
	sel, _, _ := unstructured.NestedStringMap(find(m, "allow-reviews").Obj.Object, "spec", "selector", "matchLabels")
	if len(sel) != 1 || sel["app"] != "reviews" {
		t.Errorf("selector %v, want the Deployment's matchLabels", sel)
	}
	cs := m.checks()
	if c := check(cs, CheckPlaintext); c == nil || c.Severity != pipeline.Warning || !strings.HasPrefix(c.Message, "before enforce:") || !strings.Contains(c.Objects[0], "→ reviews") {
		t.Errorf("plaintext caller in audit: %+v", c)
	}
	if c := check(cs, CheckNoTraffic); c == nil || !slices.Equal(c.Objects, []string{"Deployment/details -n shop"}) {
		t.Errorf("no-traffic: %+v", c)
	}
	if c := check(cs, CheckNoSidecar); c == nil || !slices.Equal(c.Objects, []string{"Deployment/legacy -n shop"}) {
		t.Errorf("no-sidecar: %+v", c)
	}
	for _, c := range cs {
		if c.Severity == pipeline.Error {
			t.Errorf("audit blocks on %s: %s", c.ID, c.Message)
		}
	}
}

func TestAllowFromIsRecordedAndStalePrincipalsWarned(t *testing.T) {
	s := shop()
	s.ServiceAccounts["batch/reports"] = true
	ev := &evidence{Edges: append(edges(), telemetry.Edge{Principal: "cluster.local/ns/shop/sa/gone", Dest: "reviews", Requests: 3}), Covers: true}
	m := plan(t, &Options{Stage: StageAudit, AllowFrom: []string{reports, "ns/batch"}}, s, ev)
	p := find(m, "allow-details")
	if p == nil || !slices.Equal(p.Principals, []string{reports}) || !slices.Equal(p.Namespaces, []string{"batch"}) {
		t.Fatalf("--allow-from does not reach a workload nobody called: %+v", p)
	}
	if ann := p.Obj.GetAnnotations()[annotationUnobserved]; !strings.Contains(ann, reports) || !strings.Contains(ann, "--allow-from") {
		t.Errorf("annotation %q does not say why", ann)
	}
	if c := check(m.checks(), CheckStale); c == nil || !slices.Equal(c.Objects, []string{"cluster.local/ns/shop/sa/gone (allowed into reviews)"}) {
		t.Errorf("stale principal: %+v", c)
	}
}

func audited(t *testing.T, since time.Time) *snapshot {
	s := shop()
	m := plan(t, &Options{Stage: StageAudit}, s, &evidence{Edges: edges(), Covers: true})
	for _, p := range m.planned {
		p.Obj.GetAnnotations()[annotationSince] = since.Format(time.RFC3339)
		ann := p.Obj.GetAnnotations()
		ann[annotationSince] = since.Format(time.RFC3339)
		p.Obj.SetAnnotations(ann)
		s.Policies = append(s.Policies, parsePolicy(p.Obj))
	}
	return s
}

func TestEnforceBlocksOnCallersTheAuditDidNotAllow(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := audited(t, now.Add(-8*24*time.Hour))
	newCaller := telemetry.Edge{Principal: "cluster.local/ns/shop/sa/newcomer", Source: "newcomer", SourceNamespace: "shop", Dest: "reviews", Protocol: "http", Requests: 12}
	m := plan(t, &Options{Stage: StageEnforce}, s, &evidence{Edges: append(edges(), newCaller), Covers: true})
	for _, p := range m.planned {
		if _, ok := p.Obj.GetAnnotations()[annotationDryRun]; ok {
			t.Errorf("%s still dry-run in enforce", p.Obj.GetName())
		}
	}
	if got := find(m, "allow-reviews").Principals; !slices.Equal(got, []string{gateway, frontend}) {
		t.Errorf("enforce re-read the window instead of the audited rules: %v", got)
	}
	cs := m.checks()
	if c := check(cs, CheckWouldDeny); c == nil || c.Severity != pipeline.Error || len(c.Objects) != 1 || !strings.Contains(c.Objects[0], "sa/newcomer") {
		t.Errorf("would-deny: %+v", c)
	}
	if c := check(cs, CheckPlaintext); c == nil || c.Severity != pipeline.Error {
		t.Errorf("plaintext caller does not block enforce: %+v", c)
	}
	if c := check(cs, CheckAuditTooShort); c == nil || c.Severity != pipeline.Info {
		t.Errorf("an 8-day audit over a 7d window: %+v", c)
	}
	// Only the audited callers: the gate passes.
	m = plan(t, &Options{Stage: StageEnforce}, s, &evidence{Edges: edges()[:4], Covers: true})
	for _, c := range m.checks() {
		if c.Severity == pipeline.Error {
			t.Errorf("enforce of exactly the audited traffic blocks on %s: %s", c.ID, c.Message)
		}
	}
}

func TestEnforceAfterAShortAuditWarns(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m := plan(t, &Options{Stage: StageEnforce}, audited(t, now.Add(-2*time.Hour)), &evidence{Edges: edges()[:4], Covers: true})
	if c := check(m.checks(), CheckAuditTooShort); c == nil || c.Severity != pipeline.Warning || !strings.Contains(c.Message, "only 120m") {
		t.Errorf("a 2h audit over 7d: %+v", c)
	}
}

func TestMissingEvidenceIsInconclusive(t *testing.T) {
	for _, stage := range []string{StageAudit, StageEnforce} {
		s := shop()
		if stage == StageEnforce {
			s = audited(t, time.Now())
		}
		m := plan(t, &Options{Stage: stage}, s, &evidence{Where: "test"})
		c := check(m.checks(), CheckInconclusive)
		if c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Message, `istio_requests_total{reporter="destination", destination_workload_namespace="shop"}`) {
			t.Errorf("%s without metrics: %+v", stage, c)
		}
	}
	m := plan(t, &Options{Stage: StageEnforce}, audited(t, time.Now()), &evidence{Edges: edges()[:4], Covers: false})
	if c := check(m.checks(), CheckInconclusive); c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Message, "offset 1w") {
		t.Errorf("enforce on data shorter than the window: %+v", c)
	}
}

func TestNotStrictBlocksEnforceAndExistingDenyByDefaultIsKept(t *testing.T) {
	s := audited(t, time.Now().Add(-8*24*time.Hour))
	s.PAs = []mesh.PeerAuth{{Namespace: "shop", Name: "default", Mode: mesh.ModePermissive}}
	m := plan(t, &Options{Stage: StageEnforce}, s, &evidence{Edges: edges()[:4], Covers: true})
	if c := check(m.checks(), CheckNotStrict); c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Hint, "migrate-mtls -n shop") {
		t.Errorf("PERMISSIVE namespace: %+v", c)
	}

	s = shop()
	s.Policies = append(s.Policies, apObj("deny-all", nil, map[string]any{}))
	m = plan(t, &Options{Stage: StageAudit}, s, &evidence{Edges: edges(), Covers: true})
	if find(m, allowNothingName) != nil {
		t.Error("a namespace already deny-by-default gets a second allow-nothing")
	}
}

func TestProbesWithoutRewriteBlockEnforce(t *testing.T) {
	s := audited(t, time.Now().Add(-8*24*time.Hour))
	s.Workloads[3] = workload("reviews", true, map[string]string{annotationRewrite: "false"})
	m := plan(t, &Options{Stage: StageEnforce}, s, &evidence{Edges: edges()[:4], Covers: true})
	if c := check(m.checks(), CheckProbes); c == nil || c.Severity != pipeline.Error || c.Objects[0] != "Deployment/reviews -n shop" {
		t.Errorf("probe rewrite off: %+v", c)
	}
}

func TestShadowDenialsBlockEnforce(t *testing.T) {
	m := plan(t, &Options{Stage: StageEnforce}, audited(t, time.Now().Add(-8*24*time.Hour)), &evidence{Edges: edges()[:4], Covers: true, Shadow: map[string]float64{"reviews-1": 7, "ratings-1": 0}})
	if c := check(m.checks(), CheckShadowDenied); c == nil || c.Severity != pipeline.Error || !slices.Equal(c.Objects, []string{"reviews-1: 7 requests"}) {
		t.Errorf("shadow denials: %+v", c)
	}
}

// Golden plans: what audit and enforce write for the shop, with their
// checks and report.
func TestGoldenPlans(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		o    *Options
		s    *snapshot
		ev   *evidence
	}{
		{"audit", &Options{Stage: StageAudit, AllowFrom: []string{"ns/batch"}}, shop(), &evidence{Edges: edges(), Covers: true, Where: "http://prometheus:9090"}},
		{"enforce", &Options{Stage: StageEnforce}, audited(t, now.Add(-3*24*time.Hour)), &evidence{Edges: edges(), Covers: true, Where: "http://prometheus:9090"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(t, tc.o, tc.s, tc.ev).plan(nil)
			plantest.Golden(t, filepath.Join("testdata", tc.name+".golden"), plantest.Render(p))
		})
	}
}

func TestAuditOverEnforcedPoliciesIsBlocked(t *testing.T) {
	s := audited(t, time.Now().Add(-8*24*time.Hour))
	for i := range s.Policies {
		s.Policies[i].DryRun = false // enforced
	}
	o := &Options{}
	o.snap = s
	if got := o.nextStage(); got != StageEnforce {
		t.Fatalf("next stage of an enforced namespace is %s: a re-run would relax it", got)
	}
	m := plan(t, &Options{Stage: StageAudit}, s, &evidence{Edges: edges()[:4], Covers: true})
	if c := check(m.checks(), CheckRelax); c == nil || c.Severity != pipeline.Error || len(c.Objects) != 3 {
		t.Errorf("audit over enforced policies: %+v", c)
	}
}
