package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// latencyMetrics renders a Service's destination-reported latency histogram
// (p50 ≈ 40ms, p99 ≈ 250ms, p99.9 ≈ 500ms) and requests, 1% of them 503,
// over the last three hours.
func latencyMetrics(ns, svc string, perMinute float64) string {
	sel := fmt.Sprintf(`reporter="destination",destination_service_namespace=%q,destination_service_name=%q`, ns, svc)
	var ss []series
	for _, b := range []struct {
		le   string
		frac float64
	}{{"10", 0.05}, {"25", 0.3}, {"50", 0.6}, {"100", 0.9}, {"250", 0.99}, {"500", 0.999}, {"1000", 1}, {"+Inf", 1}} {
		ss = append(ss, series{"istio_request_duration_milliseconds_bucket", "unknown", "istio_request_duration_milliseconds_bucket", sel + `,le="` + b.le + `"`, perMinute * b.frac})
	}
	ss = append(ss,
		series{"istio_request_duration_milliseconds_sum", "unknown", "istio_request_duration_milliseconds_sum", sel, perMinute * 45},
		series{"istio_request_duration_milliseconds_count", "unknown", "istio_request_duration_milliseconds_count", sel, perMinute},
		series{"istio_requests", "counter", "istio_requests_total", sel + `,response_code="200"`, perMinute * 0.99},
		series{"istio_requests", "counter", "istio_requests_total", sel + `,response_code="503"`, perMinute * 0.01})
	return openMetrics(time.Now().Add(-10*time.Minute), 180, 5, ss)
}

// TestResilience: from a real Prometheus's latency histogram, a read route
// that retries and a write route that does not, outlier detection sized to
// the three pods; bad input and missing data refuse; undo.
func TestResilience(t *testing.T) {
	ns := "resilience-e2e"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", meshApp(ns, "reviews", 9080, true)+meshApp(ns, "ghost", 9081, true)))
	mustKubectl(t, "scale", "deployment/reviews", "-n", ns, "--replicas=3")
	mustKubectl(t, "rollout", "status", "deployment/reviews", "-n", ns, "--timeout=60s")
	prom := startPrometheusWith(t, latencyMetrics(ns, "reviews", 600))
	flags := []string{"-n", ns, "--window", "2h", "--prometheus-url", prom.URL}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no service", []string{"resilience", "-n", ns}, 64, "name the Service"},
		{"service missing", append([]string{"resilience", "nope"}, flags...), 64, `service "nope" not found in namespace ` + ns},
		{"bad duration", append([]string{"resilience", "reviews", "--timeout", "-1s"}, flags...), 64, "invalid --timeout -1s: use a positive duration"},
		{"negative attempts", append([]string{"resilience", "reviews", "--attempts", "-1"}, flags...), 64, "invalid --attempts -1"},
		{"no metrics", append([]string{"resilience", "ghost", "--yes"}, flags...), 79, "RESILIENCE-INCONCLUSIVE"},
		{"timeout below the median", append([]string{"resilience", "reviews", "--timeout", "5ms", "--yes"}, flags...), 79, "RESILIENCE-TIMEOUT-BELOW-P50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mesh(t, tc.code, tc.args...)
			mustContain(t, tc.name, errorLine(t, r), tc.want)
		})
	}
	if r := kubectl(t, nil, "get", "virtualservice", "reviews", "-n", ns); r.code == 0 {
		t.Fatal("refused runs wrote the VirtualService")
	}

	r := mesh(t, 0, append([]string{"resilience", "reviews", "--yes"}, flags...)...)
	mustContain(t, "proposal", r.stderr, "Observed for "+ns+"/reviews", "latency p50", "route timeout", "p99.9", "at most 50%", "3 pods")
	vs := func(path string) string {
		return kubectl(t, nil, "get", "virtualservice", "reviews", "-n", ns, "-o", "jsonpath="+path).stdout
	}
	if got := vs("{.spec.http[*].name}"); got != "reviews-reads reviews" {
		t.Fatalf("routes %q", got)
	}
	if got := vs("{.spec.http[0].match[0].method.regex} {.spec.http[0].retries.attempts} {.spec.http[1].retries.attempts}"); got != "^(GET|HEAD)$ 2 0" {
		t.Fatalf("reads retry, writes do not: %q", got)
	}
	if got := kubectl(t, nil, "get", "destinationrule", "reviews", "-n", ns, "-o", "jsonpath={.spec.trafficPolicy.outlierDetection.maxEjectionPercent}").stdout; got != "50" {
		t.Fatalf("maxEjectionPercent %q for 3 pods", got)
	}
	// The lint on every plan: a retry budget beyond the timeout blocks.
	bad := writeFile(t, "bad.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: budget, namespace: `+ns+`}
spec:
  hosts: [ghost]
  http:
  - match: [{method: {exact: GET}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 1s}
    route: [{destination: {host: ghost}}]
`)
	r = mesh(t, 79, "apply", "-f", bad, "--yes")
	mustContain(t, "budget", r.stderr, "Error [KM0101]", "3 attempts × perTryTimeout 1s = 3s exceed the route timeout 2s")

	mesh(t, 0, "undo", "--yes")
	if r := kubectl(t, nil, "get", "virtualservice", "reviews", "-n", ns); r.code == 0 {
		t.Fatal("undo left the VirtualService")
	}
}

// TestResilienceLintOnBookinfo: analyze reports our lint beside Istio's on
// Istio's own Bookinfo samples: every route retries writes by default, none
// has a timeout.
func TestResilienceLintOnBookinfo(t *testing.T) {
	dir := filepath.Join(istioModuleDir(t), "samples", "bookinfo", "networking")
	r := mesh(t, 0, "analyze", "-A", "--use-kube=false", filepath.Join(dir, "virtual-service-all-v1.yaml"), filepath.Join(dir, "destination-rule-all.yaml"))
	for _, svc := range []string{"productpage", "reviews", "ratings", "details"} {
		mustContain(t, svc, r.stdout, "Warning [KM0102] (VirtualService default/"+svc+")", "Info [KM0105] (VirtualService default/"+svc+")")
	}
	r = mesh(t, 0, "analyze", "-A", "--use-kube=false", "-o", "json", filepath.Join(dir, "virtual-service-reviews-jason-v2-v3.yaml"), filepath.Join(dir, "destination-rule-all.yaml"))
	mustContain(t, "json", r.stdout, `"code": "KM0102"`, "docs/lint/resilience.md#km0102")
	if strings.Contains(r.stdout, "istio.io/v1.30/docs/reference/config/analysis/km") {
		t.Fatal("our codes link to istio.io")
	}
}

// TestResilienceOnTerminal: the observed figures are shown, and each
// proposed value is asked, to accept (Enter) or edit.
func TestResilienceOnTerminal(t *testing.T) {
	ns := "resilience-tty"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "api.yaml", meshApp(ns, "api", 8080, true)))
	mustKubectl(t, "scale", "deployment/api", "-n", ns, "--replicas=2")
	mustKubectl(t, "rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
	prom := startPrometheusWith(t, latencyMetrics(ns, "api", 120))
	screen, code := runOnTerminalSteps(t, []termStep{
		{"Route timeout", typeKeys("\x15" + "1500ms\r")},
		{"Retries of reads", typeKeys("\r")},
		{"Timeout of each try", typeKeys("\r")},
		{"Retry reads on", typeKeys("\r")},
		{"5xx in a row", typeKeys("\r")},
		{"Outlier detection interval", typeKeys("\r")},
		{"Shortest ejection", typeKeys("\x15" + "1m\r")},
		{"Most of the pool ejected", typeKeys("\r")},
		{"max connections", typeKeys("\r")},
		{"max pending", typeKeys("\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "resilience", "api", "-n", ns, "--window", "2h", "--prometheus-url", prom.URL)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "Observed for "+ns+"/api", "latency p50", "2 pods: at most 50% ejected")
	if got := kubectl(t, nil, "get", "virtualservice", "api", "-n", ns, "-o", "jsonpath={.spec.http[0].timeout}").stdout; got != "1.5s" {
		t.Fatalf("the timeout typed at the prompt: %q", got)
	}
	if got := kubectl(t, nil, "get", "destinationrule", "api", "-n", ns, "-o", "jsonpath={.spec.trafficPolicy.outlierDetection.baseEjectionTime}").stdout; got != "1m0s" {
		t.Fatalf("the ejection time typed at the prompt: %q", got)
	}
}

// TestResilienceLintLive: analyze lints the cluster's VirtualServices from
// the analyzers' own read, every revision's, in the namespace asked only.
func TestResilienceLintLive(t *testing.T) {
	ns, other := "lint-live", "lint-live-other"
	createNamespace(t, ns)
	createNamespace(t, other)
	vs := func(ns, name, labels string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ` + name + `, namespace: ` + ns + `, labels: {` + labels + `}}
spec:
  hosts: [` + name + `]
  http:
  - match: [{method: {exact: GET}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: connect-failure}
    route: [{destination: {host: ` + name + `}}]
`
	}
	mustKubectl(t, "apply", "-f", writeFile(t, "lint.yaml", vs(ns, "budget", "")+"---\n"+vs(ns, "canary-budget", "istio.io/rev: canary")+"---\n"+vs(other, "elsewhere", "")))
	r := mesh(t, 79, "analyze", "-n", ns)
	mustContain(t, "lint", r.stdout, "Error [KM0101] (VirtualService "+ns+"/budget)", "Error [KM0101] (VirtualService "+ns+"/canary-budget)", "3 attempts × perTryTimeout 1s = 3s exceed the route timeout 2s")
	if strings.Contains(r.stdout, "elsewhere") {
		t.Fatalf("analyze -n %s linted another namespace:\n%s", ns, r.stdout)
	}
	r = mesh(t, 79, "analyze", "-A")
	mustContain(t, "lint -A", r.stdout, "(VirtualService "+other+"/elsewhere)")
}
