package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// callerEdge is one series of destination-reported traffic by caller identity.
type callerEdge struct {
	principal, src, srcNS, dst, dstNS, protocol string
	perMinute                                   int
}

// authzMetrics renders caller edges as destination-reported counters over
// the last three hours (TCP edges as connection counts), for promtool.
func authzMetrics(edges []callerEdge) string {
	var ss []series
	for _, e := range edges {
		family := "istio_requests"
		if e.protocol == "tcp" {
			family = "istio_tcp_connections_opened"
		}
		principal := "spiffe://" + e.principal // as Istio reports it
		if e.principal == "" {
			principal = "unknown"
		}
		ss = append(ss, series{family, "counter", family + "_total", fmt.Sprintf(`reporter="destination",source_principal=%q,source_workload=%q,source_workload_namespace=%q,destination_workload=%q,destination_workload_namespace=%q,request_protocol=%q,connection_security_policy="mutual_tls"`,
			principal, e.src, e.srcNS, e.dst, e.dstNS, e.protocol), float64(e.perMinute)})
	}
	return openMetrics(time.Now().Add(-10*time.Minute), 180, 5, ss)
}

func startPrometheusWith(t *testing.T, metrics string) *testenv.Prometheus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prom, err := testenv.StartPrometheus(ctx, t.TempDir(), metrics)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	return prom
}

func policyField(t *testing.T, ns, name, jsonpath string) string {
	t.Helper()
	r := kubectl(t, nil, "get", "authorizationpolicy", name, "-n", ns, "-o", "jsonpath="+jsonpath)
	if r.code != 0 {
		return "<none>"
	}
	return r.stdout
}

// TestMigrateAuthz walks deny-by-default on the real API server with a real
// Prometheus holding a Bookinfo-like topology: audit writes dry-run
// policies naming exactly the observed callers; enforce is blocked while a
// plaintext caller exists, then applies once it is gone; undo puts the
// audit back.
func TestMigrateAuthz(t *testing.T) {
	ns := "authz-e2e"
	createNamespace(t, ns)
	mustKubectl(t, "label", "namespace", ns, "istio-injection=enabled")
	mustKubectl(t, "apply", "-f", writeFile(t, "apps.yaml", meshApp(ns, "productpage", 9080, true)+meshApp(ns, "reviews", 9081, true)+meshApp(ns, "ratings", 9082, true)+meshApp(ns, "details", 9083, true)+`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: `+ns+`}
spec: {mtls: {mode: STRICT}}
`))
	mustKubectl(t, "rollout", "status", "-n", ns, "deployment/productpage", "deployment/reviews", "deployment/ratings", "deployment/details", "--timeout=60s")
	sa := "cluster.local/ns/" + ns + "/sa/default"
	observed := []callerEdge{
		{sa, "productpage", ns, "reviews", ns, "http", 60},
		{sa, "productpage", ns, "details", ns, "http", 30},
		{sa, "reviews", ns, "ratings", ns, "tcp", 10},
	}
	plaintext := callerEdge{"", "unknown", "", "ratings", ns, "http", 2}
	prom := startPrometheusWith(t, authzMetrics(append(observed, plaintext)))
	flags := []string{"-n", ns, "--window", "2h", "--prometheus-url", prom.URL}

	// Export for GitOps: the manifests on stdout, nothing written.
	r := mesh(t, 0, append([]string{"migrate-authz", "-o", "yaml"}, flags...)...)
	mustContain(t, "export", r.stdout, "kind: AuthorizationPolicy", "name: allow-reviews", `istio.io/dry-run: "true"`)
	if got := policyField(t, ns, "allow-nothing", "{.metadata.name}"); got != "<none>" {
		t.Fatal("-o yaml wrote to the cluster")
	}

	// audit: dry-run ALLOW policies per called workload, allow-nothing last;
	// what would block enforce is shown, and nothing blocks.
	r = mesh(t, 0, append([]string{"migrate-authz", "--yes"}, flags...)...)
	mustContain(t, "audit", r.stderr,
		"CALLER", "authz-e2e/productpage (cluster.local/ns/authz-e2e/sa/default)", " connections", "unknown workload (plaintext, no identity)",
		"allow-reviews", "dry-run",
		"Warning [AUTHZ-PLAINTEXT] before enforce: 1 plaintext caller(s)",
		"Warning [AUTHZ-NO-TRAFFIC]", "Deployment/productpage -n "+ns,
		"AuthorizationPolicy.security.istio.io/allow-nothing -n "+ns+" created")
	for _, p := range []string{"allow-reviews", "allow-details", "allow-ratings", "allow-nothing"} {
		if got := policyField(t, ns, p, `{.metadata.annotations.istio\.io/dry-run}`); got != "true" {
			t.Fatalf("%s: istio.io/dry-run %q after audit", p, got)
		}
	}
	if got := policyField(t, ns, "allow-reviews", "{.spec.rules[0].from[0].source.principals}"); got != `["`+sa+`"]` {
		t.Fatalf("allow-reviews admits %s, want exactly the observed caller", got)
	}
	if got := policyField(t, ns, "allow-productpage", "{.metadata.name}"); got != "<none>" {
		t.Fatal("a policy for a workload nobody was seen calling")
	}

	// enforce: blocked by the plaintext caller; nothing changes.
	r = mesh(t, 79, append([]string{"migrate-authz", "--stage", "enforce", "--yes"}, flags...)...)
	mustContain(t, "blocked", r.stderr, "Error [AUTHZ-PLAINTEXT]", "unknown workload (plaintext, no identity) → ratings", "Warning [AUTHZ-AUDIT-SHORT] the audit stage has been in place for only")
	mustContain(t, "blocked", errorLine(t, r), "AUTHZ-PLAINTEXT")
	if got := policyField(t, ns, "allow-nothing", `{.metadata.annotations.istio\.io/dry-run}`); got != "true" {
		t.Fatal("a blocked enforce changed the policies")
	}

	// The caller got a sidecar: enforce applies and removes the dry-run marks.
	prom = startPrometheusWith(t, authzMetrics(observed))
	flags[len(flags)-1] = prom.URL
	r = mesh(t, 0, append([]string{"migrate-authz", "--stage", "enforce", "--yes"}, flags...)...)
	mustContain(t, "enforce", r.stderr, "enforced", "Verifying: authorization policies", "4 policies in place, enforced")
	for _, p := range []string{"allow-reviews", "allow-details", "allow-ratings", "allow-nothing"} {
		if got := policyField(t, ns, p, `{.metadata.annotations.istio\.io/dry-run}`); got != "" {
			t.Fatalf("%s: istio.io/dry-run %q after enforce", p, got)
		}
	}

	// undo: back to the audit stage exactly.
	mesh(t, 0, "undo", "--yes")
	if got := policyField(t, ns, "allow-nothing", `{.metadata.annotations.istio\.io/dry-run}`); got != "true" {
		t.Fatalf("undo of enforce: allow-nothing dry-run %q", got)
	}
}

func TestMigrateAuthzBadInput(t *testing.T) {
	empty := "authz-empty"
	createNamespace(t, empty)
	prom := startPrometheusWith(t, authzMetrics([]callerEdge{{"cluster.local/ns/other/sa/default", "a", "other", "b", "other", "http", 5}}))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"namespace missing", []string{"-n", "nope", "--prometheus-url", prom.URL}, 64, `namespace "nope" not found`},
		{"bad window", []string{"-n", empty, "--window", "forever"}, 64, `invalid --window "forever"`},
		{"bad stage", []string{"-n", empty, "--stage", "lock"}, 64, `invalid --stage "lock": use audit or enforce`},
		{"bad caller", []string{"-n", empty, "--allow-from", "frontend"}, 64, `invalid --allow-from "frontend": neither a principal nor ns/NAME`},
		{"enforce before audit", []string{"-n", empty, "--stage", "enforce", "--prometheus-url", prom.URL}, 64, "has no audited policies to enforce: run kubectl mesh migrate-authz -n authz-empty --stage audit first"},
		{"no Istio metrics", []string{"-n", empty, "--prometheus-url", prom.URL, "--yes"}, 79, "AUTHZ-INCONCLUSIVE"},
		{"Prometheus unreachable", []string{"-n", empty, "--prometheus-url", "http://127.0.0.1:1", "--yes"}, 69, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mesh(t, tc.code, append([]string{"migrate-authz"}, tc.args...)...)
			mustContain(t, tc.name, errorLine(t, r), tc.want)
			assertNoLeaks(t, r)
		})
	}
	r := mesh(t, 79, "migrate-authz", "-n", empty, "--prometheus-url", prom.URL, "--yes")
	mustContain(t, "which query", r.stderr, `both queries came back empty (sum by (source_principal`)
	if got := policyField(t, empty, "allow-nothing", "{.metadata.name}"); got != "<none>" {
		t.Fatal("an inconclusive audit wrote policies")
	}
}

// TestMigrateAuthzOnTerminal: on a terminal the observed callers are shown,
// then the stage and the callers the window did not see are asked.
func TestMigrateAuthzOnTerminal(t *testing.T) {
	ns := "authz-tty"
	createNamespace(t, ns)
	createNamespace(t, "batch") // Istio's analyzers refuse a rule naming a namespace that does not exist
	mustKubectl(t, "label", "namespace", ns, "istio-injection=enabled")
	mustKubectl(t, "apply", "-f", writeFile(t, "apps.yaml", meshApp(ns, "api", 8080, true)))
	mustKubectl(t, "rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")
	prom := startPrometheusWith(t, authzMetrics([]callerEdge{{"cluster.local/ns/" + ns + "/sa/default", "web", ns, "api", ns, "http", 10}}))
	screen, code := runOnTerminalSteps(t, []termStep{
		{"Stage to apply", typeKeys("\r")}, // audit, the next stage
		{"Callers the window did not see", typeKeys("ns/batch\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "migrate-authz", "-n", ns, "--window", "2h", "--prometheus-url", prom.URL)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "Callers of namespace "+ns, ns+"/web (cluster.local/ns/"+ns+"/sa/default)")
	if got := policyField(t, ns, "allow-api", "{.spec.rules[0].from[1].source.namespaces}"); got != `["batch"]` {
		t.Fatalf("the caller typed at the prompt: namespaces %s", got)
	}
	if got := policyField(t, ns, "allow-api", `{.metadata.annotations.kubectl-mesh\.io/allowed-without-evidence}`); got != "ns/batch: added with --allow-from, not seen in the telemetry window" {
		t.Fatalf("the unobserved caller is not recorded on the policy: %q", got)
	}
}
