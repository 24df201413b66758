package resilience

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	lint "github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

func observed() telemetry.Latency {
	return telemetry.Latency{P50: 40, P99: 180, P999: 420, HasLatency: true, MeanMs: 55, Requests: 720000, Errors: 360, Window: 2 * time.Hour}
}

func TestProposalFromLatency(t *testing.T) {
	for _, tc := range []struct {
		name    string
		l       telemetry.Latency
		pods    int
		timeout string
		perTry  string
		eject   int
		outlier bool
	}{
		{"typical", observed(), 3, "850ms", "280ms", 50, true},
		{"fast service: the timeout floor", telemetry.Latency{P50: 2, P99: 8, P999: 20, HasLatency: true, Requests: 1000, Window: time.Hour}, 2, "250ms", "20ms", 50, true},
		{"slow tail: per-try capped to fit three tries", telemetry.Latency{P50: 300, P99: 2500, P999: 3000, HasLatency: true, Requests: 1000, Window: time.Hour}, 4, "6s", "2s", 50, true},
		{"one pod: no outlier detection", observed(), 1, "850ms", "280ms", 0, false},
		{"ten pods", observed(), 10, "850ms", "280ms", 50, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := propose(tc.l, tc.pods)
			if s.Timeout.String() != tc.timeout || s.PerTryTimeout.String() != tc.perTry || s.MaxEjectionPercent != tc.eject || s.Outlier != tc.outlier {
				t.Errorf("timeout %s per-try %s eject %d outlier %v; want %s %s %d %v", s.Timeout, s.PerTryTimeout, s.MaxEjectionPercent, s.Outlier, tc.timeout, tc.perTry, tc.eject, tc.outlier)
			}
			if time.Duration(s.Attempts+1)*s.PerTryTimeout > s.Timeout {
				t.Errorf("%d tries × %s exceed the timeout %s", s.Attempts+1, s.PerTryTimeout, s.Timeout)
			}
			for _, k := range []string{"timeout", "per-try-timeout", "max-ejection-percent", "max-connections"} {
				if s.Why[k] == "" {
					t.Errorf("no reason for %s", k)
				}
			}
		})
	}
}

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

const teamVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop, resourceVersion: "7"}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: ratings-proxy
    route: [{destination: {host: ratings}}]
  - name: primary
    timeout: 5s
    route: [{destination: {host: reviews, subset: v1}}]
`

const teamDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, connectionPool: {tcp: {maxConnections: 2}}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`

func options(t *testing.T, vs, dr *unstructured.Unstructured) *Options {
	o := New()
	o.Namespace, o.Service, o.vs, o.dr, o.pods, o.observed, o.where = "shop", "reviews", vs, dr, 3, observed(), "http://prometheus:9090"
	if err := o.parse(); err != nil {
		t.Fatal(err)
	}
	o.settle()
	return o
}

func routeNames(vs *unstructured.Unstructured) string {
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	var out []string
	for _, r := range routes {
		out = append(out, name(r.(map[string]any)))
	}
	return strings.Join(out, ",")
}

func TestMergeKeepsTheTeamsRoutes(t *testing.T) {
	o := options(t, obj(t, teamVS), obj(t, teamDR))
	vs, kept := o.mergeRoutes()
	// Each route to reviews alone gets a read route before it; the
	// ratings route and the order stay.
	if got := routeNames(vs); got != "jason-reads,jason,ratings-proxy,primary-reads,primary" {
		t.Fatalf("routes %s", got)
	}
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	jasonReads := routes[0].(map[string]any)
	if m := jasonReads["match"].([]any)[0].(map[string]any); m["headers"] == nil || m["method"] == nil {
		t.Errorf("the read route lost the header match or has no method: %v", m)
	}
	primary := routes[4].(map[string]any)
	if primary["timeout"] != "5s" {
		t.Errorf("the team's timeout was replaced: %v", primary["timeout"])
	}
	if a := primary["retries"].(map[string]any)["attempts"]; a != int64(0) {
		t.Errorf("write route retries %v, want attempts 0", a)
	}
	if a := routes[3].(map[string]any)["retries"].(map[string]any)["attempts"]; a != int64(2) {
		t.Errorf("read route attempts %v", a)
	}
	if len(kept) != 0 {
		t.Errorf("kept %v", kept)
	}
	if _, found, _ := unstructured.NestedString(vs.Object, "metadata", "resourceVersion"); found {
		t.Error("the plan carries the live resourceVersion")
	}
	// A re-run over its own result changes nothing.
	o.vs = vs
	again, _ := o.mergeRoutes()
	if routeNames(again) != routeNames(vs) {
		t.Errorf("re-run: %s", routeNames(again))
	}
	if a := routesOf(again)[3]["retries"].(map[string]any)["attempts"]; a != int64(2) {
		t.Errorf("re-run turned the reads' retries into %v", a)
	}

	dr, keptDR := o.mergePolicy()
	if tls, _, _ := unstructured.NestedString(dr.Object, "spec", "trafficPolicy", "tls", "mode"); tls != "ISTIO_MUTUAL" {
		t.Error("the merge dropped the team's TLS")
	}
	if pct, _, _ := unstructured.NestedInt64(dr.Object, "spec", "trafficPolicy", "outlierDetection", "maxEjectionPercent"); pct != 50 {
		t.Errorf("maxEjectionPercent %d for 3 pods", pct)
	}
	if n := number(dr.Object, "spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections"); n != 2 || len(keptDR) != 1 {
		t.Errorf("the team's connectionPool: %d, kept %v", n, keptDR)
	}
	if c := findCheck(o.checks(keptDR), CheckPoolTooSmall); c == nil {
		t.Error("a pool of 2 connections below the observed concurrency is not reported")
	}
	// The merged result passes the lint.
	fs := lint.Lint(lint.Input{VirtualServices: []*unstructured.Unstructured{vs}, DestinationRules: []*unstructured.Unstructured{dr}, Endpoints: map[string]int{"reviews.shop.svc.cluster.local": 3}})
	for _, f := range fs {
		if f.Level != "Info" && !strings.Contains(f.Message, "ratings-proxy") { // not a route to reviews: not ours to change
			t.Errorf("the proposal fails its own lint: %+v", f)
		}
	}
}

func routesOf(vs *unstructured.Unstructured) []map[string]any {
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	out := make([]map[string]any, len(routes))
	for i, r := range routes {
		out[i] = r.(map[string]any)
	}
	return out
}

func findCheck(cs []pipeline.Check, id string) *pipeline.Check {
	for i := range cs {
		if cs[i].ID == id {
			return &cs[i]
		}
	}
	return nil
}

func TestNoDataIsInconclusiveAndATimeoutBelowTheMedianBlocks(t *testing.T) {
	o := options(t, nil, nil)
	o.observed = telemetry.Latency{Window: time.Hour}
	o.settle()
	if c := findCheck(o.checks(nil), CheckInconclusive); c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Message, "histogram_quantile(0.5") {
		t.Errorf("no data: %+v", c)
	}
	o = options(t, nil, nil)
	o.set.Timeout = 20 * time.Millisecond
	if c := findCheck(o.checks(nil), CheckBelowP50); c == nil || c.Severity != pipeline.Error {
		t.Errorf("timeout below p50: %+v", c)
	}
}

func TestGoldenPlans(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vs, dr string
	}{{"new", "", ""}, {"merged", teamVS, teamDR}} {
		t.Run(tc.name, func(t *testing.T) {
			var vs, dr *unstructured.Unstructured
			if tc.vs != "" {
				vs, dr = obj(t, tc.vs), obj(t, tc.dr)
			}
			p := options(t, vs, dr).plan(nil)
			plantest.Golden(t, filepath.Join("testdata", tc.name+".golden"), plantest.Render(p))
		})
	}
}
