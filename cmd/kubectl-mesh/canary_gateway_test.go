package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// teamHTTPRoute is the team's mesh route for reviews: an admin rule with an
// ExtensionRef filter, the default rule (header modifier, timeout) and a
// legacy rule to another Service.
func teamHTTPRoute(ns string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: %s}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: admin
    matches: [{path: {type: PathPrefix, value: /admin}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.io, kind: Auth, name: admin}}]
    backendRefs: [{name: admin, port: 8080}]
  - name: reviews-default
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-team, value: reviews}]}}]
    timeouts: {request: 3s}
    backendRefs: [{name: reviews, port: 9080}]
  - name: legacy
    matches: [{headers: [{name: x-legacy, value: "1"}]}]
    backendRefs: [{name: reviews-legacy, port: 9080}]
`, ns)
}

// gatewayCanaryMetrics: requests as Istio reports them for a Gateway API
// canary, under the per-version Service's name. v2 fails 30% of its
// requests; v3 is healthy.
func gatewayCanaryMetrics(ns string) string {
	sel := func(v, extra string) string {
		return fmt.Sprintf(`reporter="destination",destination_service_namespace=%q,destination_service_name="reviews-%s",destination_version=%q%s`, ns, v, v, extra)
	}
	ss := []series{
		{"istio_requests", "counter", "istio_requests_total", sel("v2", `,response_code="200"`), 70},
		{"istio_requests", "counter", "istio_requests_total", sel("v2", `,response_code="503"`), 30},
		{"istio_requests", "counter", "istio_requests_total", sel("v3", `,response_code="200"`), 100},
	}
	return openMetrics(time.Now().Add(-15*time.Second), 60, 1, ss)
}

// httpRouteRules reads an HTTPRoute's parentRefs and rules from the API server: each rule as
// the server stores it, by name.
func httpRouteRules(t *testing.T, ns, name string) (map[string]string, []string) {
	t.Helper()
	var hr struct {
		Spec struct {
			ParentRefs json.RawMessage   `json:"parentRefs"`
			Rules      []json.RawMessage `json:"rules"`
		} `json:"spec"`
	}
	r := kubectl(t, nil, "get", "httproute", name, "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("get httproute %s: %s", name, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &hr); err != nil {
		t.Fatal(err)
	}
	compact := func(raw []byte) string {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	rules := map[string]string{"parentRefs": compact(hr.Spec.ParentRefs)}
	var order []string
	for _, raw := range hr.Spec.Rules {
		var named struct{ Name string }
		_ = json.Unmarshal(raw, &named)
		rules[named.Name] = compact(raw)
		order = append(order, named.Name)
	}
	return rules, order
}

// TestCanaryGatewayAPI runs a canary on the team's HTTPRoute on the real
// API server with the Gateway API CRDs and a real Prometheus: per-version
// Services appear before the route uses them and go after; a failing v2
// is blocked and aborted; v3 (header route, mirror) steps, is promoted and
// cleaned up; the team's other rules and parentRefs stay byte for byte;
// undo brings the promoted canary back.
func TestCanaryGatewayAPI(t *testing.T) {
	ns := "canary-gw"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)+"---\n"+teamHTTPRoute(ns)))
	for _, v := range []string{"v1", "v2", "v3"} {
		mustKubectl(t, "rollout", "status", "deployment/reviews-"+v, "-n", ns, "--timeout=60s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := testenv.StartPrometheus(ctx, t.TempDir(), gatewayCanaryMetrics(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	gate := []string{"--prometheus-url", prom.URL, "--interval", "30m", "--min-requests", "50"}
	team, _ := httpRouteRules(t, ns, "reviews")
	untouched := func(when string) {
		t.Helper()
		now, _ := httpRouteRules(t, ns, "reviews")
		for _, k := range []string{"admin", "legacy", "parentRefs"} {
			if now[k] != team[k] {
				t.Fatalf("%s: %s changed:\n%s\n%s", when, k, team[k], now[k])
			}
		}
	}
	split := func() string {
		return jsonpath(t, ns, "httproute", "reviews", `{.spec.rules[?(@.name=="reviews-default")].backendRefs[*].name}={.spec.rules[?(@.name=="reviews-default")].backendRefs[*].weight}`)
	}
	services := func() string {
		r := kubectl(t, nil, "get", "services", "-n", ns, "-l", "canary.kubectl-mesh.io/version-of=reviews", "-o", "jsonpath={.items[*].metadata.name}")
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		return r.stdout
	}

	r := mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v2", "--weight", "10", "--yes")
	mustContain(t, "start", r.stdout+r.stderr, "version services  Service/reviews-v1", "routes            HTTPRoute.gateway.networking.k8s.io/reviews")
	if got := split(); got != "reviews-v1 reviews-v2=90 10" {
		t.Fatalf("after start: %q", got)
	}
	if got := services(); got != "reviews-v1 reviews-v2" {
		t.Fatalf("version Services: %q", got)
	}
	if got := jsonpath(t, ns, "service", "reviews-v2", "{.spec.selector.app} {.spec.selector.version} {.spec.ports[0].port}"); got != "reviews v2 9080" {
		t.Fatalf("reviews-v2 selects %q", got)
	}
	untouched("start")
	if got := jsonpath(t, ns, "httproute", "reviews", `{.spec.rules[?(@.name=="reviews-default")].filters[0].type} {.spec.rules[?(@.name=="reviews-default")].timeouts.request}`); got != "RequestHeaderModifier 3s" {
		t.Fatalf("the split rule lost its filter or timeout: %q", got)
	}
	r = mesh(t, 0, append([]string{"canary", "status", "-n", ns, "reviews"}, gate...)...)
	mustContain(t, "status", r.stdout, `HTTPRoute reviews, rule "reviews-default"; services reviews-v1 (stable), reviews-v2 (canary)`, "gate failed: v2: success 70.00%")

	// The failing canary blocks the step; abort puts all traffic on v1 and
	// deletes the canary's Service after the route stops sending to it.
	r = mesh(t, 79, append([]string{"canary", "step", "-n", ns, "reviews", "--yes"}, gate...)...)
	mustContain(t, "blocked step", r.stderr, "CANARY-GATE", "success 70.00%")
	if got := split(); got != "reviews-v1 reviews-v2=90 10" {
		t.Fatalf("a blocked step moved the weights: %q", got)
	}
	mesh(t, 0, "canary", "abort", "-n", ns, "reviews", "--yes")
	if got := split(); got != "reviews-v1=1" { // the API server defaults weight 1
		t.Fatalf("after abort: %q", got)
	}
	if got := services(); got != "reviews-v1" {
		t.Fatalf("after abort the version Services are %q", got)
	}
	untouched("abort")

	// v3 with a header rule and mirroring: the gate reads reviews-v3.
	mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v3", "--weight", "10", "--header", "x-canary=true", "--mirror", "5", "--yes")
	rules, order := httpRouteRules(t, ns, "reviews")
	if strings.Join(order, ",") != "canary-header,admin,reviews-default,legacy" {
		t.Fatalf("rules after a header start: %v", order)
	}
	mustContain(t, "header rule", rules["canary-header"], `"name":"x-canary"`, `"value":"true"`, `"name":"reviews-v3"`, `"RequestHeaderModifier"`)
	mustContain(t, "mirror", rules["reviews-default"], `"type":"RequestMirror"`, `"percent":5`)
	r = mesh(t, 0, append([]string{"canary", "step", "-n", ns, "reviews", "--yes"}, gate...)...)
	mustContain(t, "gate", r.stderr, "gate passed: v3: success 100.00%")
	if got := split(); got != "reviews-v1 reviews-v3=75 25" {
		t.Fatalf("after step: %q", got)
	}
	untouched("step")
	mesh(t, 0, "canary", "promote", "-n", ns, "reviews", "--yes")
	mesh(t, 0, "canary", "promote", "-n", ns, "reviews", "--cleanup", "--yes")
	if got := split(); got != "reviews-v3=1" {
		t.Fatalf("after promote --cleanup: %q", got)
	}
	if got := services(); got != "reviews-v3" {
		t.Fatalf("after cleanup the version Services are %q", got)
	}
	rules, order = httpRouteRules(t, ns, "reviews")
	if strings.Join(order, ",") != "admin,reviews-default,legacy" || strings.Contains(rules["reviews-default"], "RequestMirror") {
		t.Fatalf("after cleanup the header rule and mirror must be gone: %v %s", order, rules["reviews-default"])
	}
	untouched("promote")

	// Undo brings back the promoted canary and the stable Service.
	mesh(t, 0, "undo", "--yes")
	if got := split(); got != "reviews-v1 reviews-v3=0 100" {
		t.Fatalf("after undo: %q", got)
	}
	if got := services(); got != "reviews-v1 reviews-v3" {
		t.Fatalf("after undo the version Services are %q", got)
	}
	r = mesh(t, 0, "canary", "status", "-n", ns, "reviews", "--skip-gate")
	mustContain(t, "status after undo", r.stdout, "v3 (canary, 1 pod(s)) 100%")
}

// TestCanaryGatewayAPIBadInput: a route with two rules to the Service, a
// version Service name taken by another app, both APIs for one Service.
func TestCanaryGatewayAPIBadInput(t *testing.T) {
	ns := "canary-gw-bad"
	createNamespace(t, ns)
	twoRules := strings.Replace(teamHTTPRoute(ns), "backendRefs: [{name: reviews-legacy, port: 9080}]", "backendRefs: [{name: reviews, port: 9080}]", 1)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)+"---\n"+twoRules+fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: %s}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
`, ns)))
	mustKubectl(t, "rollout", "status", "deployment/reviews-v2", "-n", ns, "--timeout=60s")
	before := changeSetCount(t)
	start := []string{"canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v2", "--yes"}
	r := mesh(t, 64, start...)
	mustContain(t, "two rules", errorLine(t, r), "rules reviews-default, legacy of HTTPRoute reviews send to service reviews: name the one that carries the split with --rule")
	r = mesh(t, 64, append(start, "--rule", "admin")...)
	mustContain(t, "wrong rule", errorLine(t, r), "--rule admin: no rule of HTTPRoute reviews of that name (or number) sends to service reviews")
	r = mesh(t, 64, append(start, "--rule", "reviews-default")...)
	mustContain(t, "taken name", errorLine(t, r), "service reviews-v2 already exists and selects app=ratings, not the version=v2 pods of reviews")
	r = mesh(t, 64, append(start, "--rule", "2", "--api", "istio")...)
	mustContain(t, "--api istio", errorLine(t, r), "HTTPRoute reviews routes service reviews: a VirtualService beside it would mix the two APIs")
	mustKubectl(t, "apply", "-f", writeFile(t, "vs.yaml", fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: %s}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
`, ns)))
	r = mesh(t, 64, append(start, "--rule", "2")...)
	mustContain(t, "both APIs", errorLine(t, r), "both VirtualService reviews and HTTPRoute reviews route service reviews")
	if got := changeSetCount(t); got != before {
		t.Fatalf("bad input recorded change sets: %d → %d", before, got)
	}
	if got := jsonpath(t, ns, "httproute", "reviews", "{.metadata.annotations}"); strings.Contains(got, "canary.kubectl-mesh.io/state") {
		t.Fatalf("bad input changed the HTTPRoute: %s", got)
	}
}

// TestCanaryGatewayAPIOnTerminal: two rules send to the Service, so start
// asks which one carries the split (the --rule question), then the rest.
func TestCanaryGatewayAPIOnTerminal(t *testing.T) {
	ns := "canary-gw-tty"
	createNamespace(t, ns)
	twoRules := strings.Replace(teamHTTPRoute(ns), "backendRefs: [{name: reviews-legacy, port: 9080}]", "backendRefs: [{name: reviews, port: 9080}]", 1)
	mustKubectl(t, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp(ns)+"---\n"+twoRules))
	mustKubectl(t, "rollout", "status", "deployment/reviews-v2", "-n", ns, "--timeout=60s")
	team, _ := httpRouteRules(t, ns, "reviews")
	screen, code := runOnTerminalSteps(t, []termStep{
		{"the one that carries the split", typeKeys("\x1b[B\r")}, // legacy
		{"Stable version", typeKeys("\r")},                       // v1
		{"Canary version", typeKeys("\x1b[B\r")},                 // v2
		{"Initial canary weight", typeKeys("\r")},
		{"Weights canary step walks through", typeKeys("\r")},
		{"Header that always reaches", typeKeys("\r")},
		{"Share of traffic to mirror", typeKeys("\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "canary", "start", "-n", ns, "reviews")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "v1 (stable, 1 pod(s)) 90%", "v2 (canary, 1 pod(s)) 10%")
	if got := jsonpath(t, ns, "httproute", "reviews", `{.spec.rules[?(@.name=="legacy")].backendRefs[*].name}={.spec.rules[?(@.name=="legacy")].backendRefs[*].weight}`); got != "reviews-v1 reviews-v2=90 10" {
		t.Fatalf("the chosen rule: %q", got)
	}
	now, _ := httpRouteRules(t, ns, "reviews")
	if now["reviews-default"] != team["reviews-default"] {
		t.Fatalf("the rule not chosen changed:\n%s\n%s", team["reviews-default"], now["reviews-default"])
	}
}
