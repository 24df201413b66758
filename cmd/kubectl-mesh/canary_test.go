package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// reviewsApp is Bookinfo's reviews: one Deployment per version behind one Service.
func reviewsApp(ns string) string {
	var b strings.Builder
	for _, v := range []string{"v1", "v2", "v3"} {
		fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-%[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: %[2]s}}
  template:
    metadata: {labels: {app: reviews, version: %[2]s}}
    spec: {containers: [{name: reviews, image: reviews:%[2]s, ports: [{containerPort: 9080}]}]}
---
`, ns, v)
	}
	fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: %s}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
`, ns)
	return b.String()
}

// canaryMetrics: v2 answers 30%% of its requests with 503; v3 is healthy
// with a p99 under 100ms.
func canaryMetrics(ns string) string {
	sel := func(v, extra string) string {
		return fmt.Sprintf(`reporter="destination",destination_service_namespace=%q,destination_service_name="reviews",destination_version=%q%s`, ns, v, extra)
	}
	ss := []series{
		{"istio_requests", "counter", "istio_requests_total", sel("v2", `,response_code="200"`), 70},
		{"istio_requests", "counter", "istio_requests_total", sel("v2", `,response_code="503"`), 30},
		{"istio_requests", "counter", "istio_requests_total", sel("v3", `,response_code="200"`), 100},
	}
	for _, b := range []struct {
		le   string
		rate float64
	}{{"25", 50}, {"100", 100}, {"+Inf", 100}} {
		ss = append(ss, series{"istio_request_duration_milliseconds", "histogram", "istio_request_duration_milliseconds_bucket", sel("v3", `,le="`+b.le+`"`), b.rate})
	}
	ss = append(ss,
		series{"istio_request_duration_milliseconds", "histogram", "istio_request_duration_milliseconds_count", sel("v3", ""), 100},
		series{"istio_request_duration_milliseconds", "histogram", "istio_request_duration_milliseconds_sum", sel("v3", ""), 3000})
	return openMetrics(time.Now().Add(-15*time.Second), 60, 1, ss)
}

func jsonpath(t *testing.T, ns, kind, name, path string) string {
	t.Helper()
	r := kubectl(t, nil, "get", kind, name, "-n", ns, "-o", "jsonpath="+path)
	if r.code != 0 {
		t.Fatalf("get %s/%s: %s", kind, name, r.stderr)
	}
	return r.stdout
}

// TestCanary runs Bookinfo's reviews through a canary on the real API
// server with a real Prometheus: a failing v2 makes --auto abort back to
// v1; a healthy v3 steps to 25, auto-steps to 100, is promoted and cleaned
// up; undo brings the canary back.
func TestCanary(t *testing.T) {
	ns := "canary-e2e"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)))
	for _, v := range []string{"v1", "v2", "v3"} {
		mustKubectl(t, "rollout", "status", "deployment/reviews-"+v, "-n", ns, "--timeout=60s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := testenv.StartPrometheus(ctx, t.TempDir(), canaryMetrics(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	gate := []string{"--prometheus-url", prom.URL, "--interval", "30m"}
	weights := func() string {
		return jsonpath(t, ns, "virtualservice", "reviews", `{.spec.http[?(@.name=="primary")].route[*].destination.subset}={.spec.http[?(@.name=="primary")].route[*].weight}`)
	}

	// GitOps: -o yaml prints the merged objects and writes nothing.
	r := mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v2", "--weight", "10", "-o", "yaml")
	mustContain(t, "export", r.stdout, "kind: DestinationRule", "kind: VirtualService", "weight: 90", "canary.kubectl-mesh.io/state")
	if r := kubectl(t, nil, "get", "virtualservice", "reviews", "-n", ns); r.code == 0 {
		t.Fatal("-o yaml created the VirtualService")
	}

	r = mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v2", "--weight", "10", "--yes")
	// The stand-in istiod serves nothing: one line, and the apply goes on.
	mustContain(t, "proxy sync", r.stderr, "note: proxy sync will not be checked: istiod's sync status cannot be read through the API server")
	if got := weights(); got != "v1 v2=90 10" {
		t.Fatalf("after start: %q", got)
	}
	r = mesh(t, 0, "canary", "status", "-n", ns, "reviews", "--prometheus-url", prom.URL, "--interval", "30m")
	mustContain(t, "status", r.stdout, "v1 (stable, 1 pod(s)) 90%", "v2 (canary, 1 pod(s)) 10%", "gate failed: v2: success 70.00%")
	r = mesh(t, 64, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v3", "--yes")
	mustContain(t, "second start", errorLine(t, r), "a canary of v2 is in progress for reviews at 10%")
	r = mesh(t, 79, "canary", "step", "-n", ns, "reviews", "--yes", "--prometheus-url", prom.URL, "--interval", "30m")
	mustContain(t, "blocked step", r.stderr, "CANARY-GATE")

	// --auto aborts on the failed gate: all traffic back on v1, v2's subset gone.
	r = mesh(t, 79, append([]string{"canary", "step", "-n", ns, "reviews", "--auto", "--pause", "1s", "--yes"}, gate...)...)
	mustContain(t, "auto abort", r.stderr, "aborting the canary")
	mustContain(t, "auto abort", errorLine(t, r), "canary aborted, all traffic is back on v1")
	if got := weights(); got != "v1=" {
		t.Fatalf("after abort: %q", got)
	}
	if got := jsonpath(t, ns, "destinationrule", "reviews", "{.spec.subsets[*].name}"); got != "v1" {
		t.Fatalf("after abort the subsets are %q", got)
	}

	// v3: header route, one gated step, then --auto to the end.
	mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v3", "--weight", "10", "--header", "x-canary=true", "--yes")
	if got := jsonpath(t, ns, "virtualservice", "reviews", `{.spec.http[0].name} {.spec.http[0].match[0].headers.x-canary.exact} {.spec.http[0].route[0].destination.subset}`); got != "canary-header true v3" {
		t.Fatalf("header route: %q", got)
	}
	r = mesh(t, 0, append([]string{"canary", "step", "-n", ns, "reviews", "--yes"}, gate...)...)
	mustContain(t, "gate", r.stderr, "gate passed: v3: success 100.00%", "p99")
	if got := weights(); got != "v1 v3=75 25" {
		t.Fatalf("after step: %q", got)
	}
	r = mesh(t, 0, append([]string{"canary", "step", "-n", ns, "reviews", "--auto", "--pause", "1s", "--yes"}, gate...)...)
	mustContain(t, "auto", r.stderr, "Waiting 1s before the next gate")
	if got := weights(); got != "v1 v3=0 100" {
		t.Fatalf("after --auto: %q", got)
	}
	mesh(t, 0, "canary", "promote", "-n", ns, "reviews", "--cleanup", "--yes")
	if got := weights(); got != "v3=" {
		t.Fatalf("after promote --cleanup: %q", got)
	}
	if got := jsonpath(t, ns, "destinationrule", "reviews", "{.spec.subsets[*].name}"); got != "v3" {
		t.Fatalf("after cleanup the subsets are %q", got)
	}
	if got := jsonpath(t, ns, "virtualservice", "reviews", `{.spec.http[*].name}`); got != "primary" {
		t.Fatalf("after cleanup the routes are %q (the header route must be gone)", got)
	}

	// Undo brings back the promoted canary exactly.
	mesh(t, 0, "undo", "--yes")
	if got := weights(); got != "v1 v3=0 100" {
		t.Fatalf("after undo: %q", got)
	}
	r = mesh(t, 0, "canary", "status", "-n", ns, "reviews", "--skip-gate")
	mustContain(t, "status after undo", r.stdout, "v3 (canary, 1 pod(s)) 100%")
}

// TestCanaryBadInput: one line, non-zero exit, nothing written.
func TestCanaryBadInput(t *testing.T) {
	ns := "canary-bad"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)+`---
apiVersion: v1
kind: Service
metadata: {name: nolabel, namespace: canary-bad}
spec: {selector: {app: reviews}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: canary-bad}
spec: {selector: {app: nothing}, ports: [{port: 80}]}
`))
	mustKubectl(t, "rollout", "status", "deployment/reviews-v1", "-n", ns, "--timeout=60s")
	before := changeSetCount(t)
	start := []string{"canary", "start", "-n", ns, "reviews", "--yes"}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"canary", "start", "-n", ns, "ghost", "--stable", "v1", "--canary", "v2"}, 64, `service "ghost" not found`},
		{[]string{"canary", "start", "-n", ns, "--stable", "v1", "--canary", "v2"}, 64, "name one Service"},
		{[]string{"canary", "start", "-n", ns, "empty", "--stable", "v1", "--canary", "v2"}, 64, "selects no pods"},
		{[]string{"canary", "start", "-n", ns, "nolabel", "--version-label", "track", "--stable", "v1", "--canary", "v2"}, 64, `no "track" label`},
		{start, 64, "name the versions with --stable and --canary"},
		{append(start, "--stable", "v1", "--canary", "v1"), 64, "a canary needs two versions"},
		{append(start, "--stable", "v1", "--canary", "v7"), 64, "versions found: v1, v2, v3"},
		{append(start, "--stable", "v1", "--canary", "v2", "--weight", "150"), 64, "invalid --weight 150"},
		{append(start, "--stable", "v1", "--canary", "v2", "--weight", "ten"), 64, "invalid argument"},
		{append(start, "--stable", "v1", "--canary", "v2", "--weight", "12.5"), 64, "invalid argument"},
		{append(start, "--stable", "v1", "--canary", "v2", "--header", "x-canary"), 64, "use NAME=VALUE"},
		{append(start, "--stable", "v1", "--canary", "v2", "--header", "X-Canary=1"), 64, "lowercase"},
		{append(start, "--stable", "v1", "--canary", "v2", "--mirror", "-5"), 64, "invalid --mirror -5"},
		{append(start, "--stable", "v1", "--canary", "v2", "--steps", "50,20,100"), 64, "weights must increase"},
		{[]string{"canary", "step", "-n", ns, "reviews", "--yes", "--skip-gate"}, 64, "no canary in progress for service reviews"},
		{[]string{"canary", "step", "-n", ns, "reviews", "--to", "120"}, 64, "invalid --to 120"},
		{[]string{"canary", "step", "-n", ns, "reviews", "--interval", "soon"}, 64, `invalid --interval "soon"`},
		{[]string{"canary", "step", "-n", ns, "reviews", "--pause", "0s", "--auto"}, 64, "invalid --pause"},
		{[]string{"canary", "abort", "-n", ns, "reviews", "--yes"}, 64, "no canary in progress"},
		{[]string{"canary", "promote", "-n", ns, "reviews", "--yes"}, 64, "no canary in progress"},
	}
	for _, tc := range cases {
		r := mesh(t, tc.code, tc.args...)
		mustContain(t, strings.Join(tc.args, " "), errorLine(t, r), tc.want)
	}
	// Prometheus unreachable with the gate requested: nothing moves.
	mesh(t, 0, append(start, "--stable", "v1", "--canary", "v2")...)
	r := mesh(t, 69, "canary", "step", "-n", ns, "reviews", "--yes", "--prometheus-url", "http://127.0.0.1:1")
	mustContain(t, "unreachable", errorLine(t, r), "cannot reach Prometheus at http://127.0.0.1:1")
	if got := changeSetCount(t); got != before+1 {
		t.Fatalf("bad input recorded change sets: %d → %d", before, got)
	}
	if got := jsonpath(t, ns, "virtualservice", "reviews", `{.spec.http[?(@.name=="primary")].route[*].weight}`); got != "90 10" {
		t.Fatalf("a failed step changed the weights: %q", got)
	}
}

// TestCanaryStartOnTerminal: without flags, canary start asks for the
// versions, the weight, the steps, a header and mirroring.
func TestCanaryStartOnTerminal(t *testing.T) {
	ns := "canary-tty"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)))
	mustKubectl(t, "rollout", "status", "deployment/reviews-v2", "-n", ns, "--timeout=60s")
	screen, code := runOnTerminalSteps(t, []termStep{
		{"route the canary with", typeKeys("\r")},            // istio: a VirtualService
		{"Stable version", typeKeys("\r")},                   // v1
		{"Canary version", typeKeys("\x1b[B\r")},             // v2
		{"Initial canary weight", typeKeys("\x15" + "25\r")}, // clear the default, type 25
		{"Weights canary step walks through", typeKeys("\x15" + "25,60,100\r")},
		{"Header that always reaches", typeKeys("\r")},
		{"Share of traffic to mirror", typeKeys("\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "canary", "start", "-n", ns, "reviews")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "v1 (stable, 1 pod(s)) 75%", "v2 (canary, 1 pod(s)) 25%")
	r := mesh(t, 0, "canary", "status", "-n", ns, "reviews")
	mustContain(t, "steps typed at the prompt", r.stdout, "steps 25 → 60 → 100")
}
