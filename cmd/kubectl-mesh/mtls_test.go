package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// meshApp is a Deployment whose pods look injected (status annotation and
// an istio-proxy container) unless sidecar is false, listening on port.
func meshApp(ns, name string, port int, sidecar bool) string {
	ann, proxy := "", ""
	if sidecar {
		ann = `
      annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}`
		proxy = `
      - {name: istio-proxy, image: proxyv2:1}`
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata:
      labels: {app: %[2]s, version: v1}%[4]s
    spec:
      containers:
      - {name: app, image: app:1, ports: [{containerPort: %[3]d}]}%[5]s
---
apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  selector: {app: %[2]s}
  ports: [{name: http, port: 80, targetPort: %[3]d}]
---
`, ns, name, port, ann, proxy)
}

// flow is one series of destination-reported Istio traffic.
type flow struct {
	src, srcNS, dst, dstNS, security string
	tcp                              bool // a TCP connection count instead of HTTP requests
	perMinute                        int
}

// istioMetrics renders flows as destination-reported counters over the
// last three hours, for promtool to backfill.
func istioMetrics(flows []flow) string {
	var ss []series
	for _, f := range flows {
		family := "istio_requests"
		if f.tcp {
			family = "istio_tcp_connections_opened"
		}
		ss = append(ss, series{family, "counter", family + "_total", fmt.Sprintf(`reporter="destination",source_workload=%q,source_workload_namespace=%q,destination_workload=%q,destination_workload_namespace=%q,connection_security_policy=%q`,
			f.src, f.srcNS, f.dst, f.dstNS, f.security), float64(f.perMinute)})
	}
	return openMetrics(time.Now().Add(-10*time.Minute), 180, 5, ss)
}

// series is one counter rising perMinute, in an OpenMetrics family.
type series struct {
	family, typ, metric, labels string
	perMinute                   float64
}

// openMetrics renders series sampled every step minutes over the minutes
// before end, grouped by family, ending in "# EOF".
func openMetrics(end time.Time, minutes, step int, ss []series) string {
	var b strings.Builder
	var families []string
	for _, s := range ss {
		if !slices.Contains(families, s.family) {
			families = append(families, s.family)
		}
	}
	for _, fam := range families {
		first := true
		for _, s := range ss {
			if s.family != fam {
				continue
			}
			if first {
				fmt.Fprintf(&b, "# TYPE %s %s\n", s.family, s.typ)
				first = false
			}
			for m := 0; m <= minutes; m += step {
				ts := end.Add(time.Duration(m-minutes) * time.Minute).Unix()
				fmt.Fprintf(&b, "%s{%s} %g %d\n", s.metric, s.labels, float64(m)*s.perMinute, ts)
			}
		}
	}
	b.WriteString("# EOF\n")
	return b.String()
}

func peerAuthMode(t *testing.T, ns, name string) string {
	t.Helper()
	r := kubectl(t, nil, "get", "peerauthentication", name, "-n", ns, "-o", "jsonpath={.spec.mtls.mode}")
	if r.code != 0 {
		return "<none>"
	}
	return r.stdout
}

// exposeThroughAPIServer makes Prometheus a Service the plugin can find and
// reach through the API server's service proxy: a selector-less Service
// whose Endpoints point at a Pod object carrying this machine's address
// (the proxy only forwards to addresses of real Pod objects).
func exposeThroughAPIServer(t *testing.T, prom *testenv.Prometheus) {
	t.Helper()
	ip, err := testenv.HostIP()
	if err != nil {
		t.Fatal(err)
	}
	manifests := fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: prometheus-host}
spec: {unschedulable: true}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus-0, namespace: istio-system, labels: {app: prometheus}}
spec:
  nodeName: prometheus-host
  containers: [{name: prometheus, image: prom/prometheus:v2.42.0}]
---
apiVersion: v1
kind: Service
metadata: {name: prometheus, namespace: istio-system, labels: {app.kubernetes.io/name: prometheus}}
spec: {ports: [{name: http, port: 9090}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: prometheus, namespace: istio-system}
subsets:
- addresses: [{ip: %[1]s, targetRef: {kind: Pod, name: prometheus-0, namespace: istio-system}}]
  ports: [{name: http, port: %[2]d}]
`, ip, prom.Port)
	mustKubectl(t, "apply", "-f", writeFile(t, "prom.yaml", manifests))
	mustKubectl(t, "patch", "pod", "prometheus-0", "-n", "istio-system", "--subresource=status", "--type=merge",
		"-p", fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, ip, ip))
}

// TestMigrateMTLS walks the flagship path on the real API server with a
// real Prometheus: explicit PERMISSIVE first; STRICT blocked by a legacy
// plaintext caller and by a DestinationRule with DISABLE; a port exception
// lets it through; Prometheus found in the cluster through the API server;
// undo restores the previous policies exactly.
func TestMigrateMTLS(t *testing.T) {
	installFakeControlPlane(t)
	for _, ns := range []string{"shop", "clean", "legacy"} {
		createNamespace(t, ns)
	}
	mustKubectl(t, "label", "namespace", "shop", "istio-injection=enabled")
	mustKubectl(t, "label", "namespace", "clean", "istio.io/rev=stable")
	mustKubectl(t, "apply", "-f", writeFile(t, "apps.yaml",
		meshApp("shop", "api", 8080, true)+meshApp("shop", "web", 8080, true)+
			meshApp("clean", "front", 8080, true)+meshApp("clean", "db", 5432, true)+
			meshApp("legacy", "legacy-client", 9000, false)))
	mustKubectl(t, "rollout", "status", "deployment/api", "-n", "shop", "--timeout=60s")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := testenv.StartPrometheus(ctx, t.TempDir(), istioMetrics([]flow{
		{"web", "shop", "api", "shop", "mutual_tls", false, 20},
		{"legacy-client", "legacy", "api", "shop", "none", false, 3},
		{"front", "clean", "db", "clean", "mutual_tls", false, 50},
		{"front", "clean", "db", "clean", "mutual_tls", true, 2},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()

	// Stage 1: nothing set yet, so the next stage is an explicit PERMISSIVE.
	r := mesh(t, 0, "migrate-mtls", "-n", "shop", "--yes")
	mustContain(t, "report", r.stderr, "Deployment/api -n shop", "PERMISSIVE", "stage 1 of 2")
	mustContain(t, "next step", r.stdout, "--stage strict")
	if got := peerAuthMode(t, "shop", "default"); got != "PERMISSIVE" {
		t.Fatalf("after stage 1 the namespace policy is %q, want PERMISSIVE", got)
	}
	permissiveSet := lastChangeSet(t)["id"].(string)

	// Stage 2 is blocked: the legacy client sends plaintext, and is named.
	r = mesh(t, 79, "migrate-mtls", "-n", "shop", "--prometheus-url", prom.URL, "--yes")
	mustContain(t, "plaintext finding", r.stderr, "MTLS-PLAINTEXT", "legacy/legacy-client → shop/api")
	if got := peerAuthMode(t, "shop", "default"); got != "PERMISSIVE" {
		t.Fatalf("a blocked STRICT changed the policy to %q", got)
	}

	// An exception on the Service port is refused with the container port.
	r = mesh(t, 64, "migrate-mtls", "-n", "shop", "--prometheus-url", prom.URL, "--exception", "api:80", "--yes")
	mustContain(t, "error", errorLine(t, r), "80 is Service api's port; the container port is 8080")

	// With the container port kept PERMISSIVE, STRICT goes through.
	r = mesh(t, 0, "migrate-mtls", "-n", "shop", "--prometheus-url", prom.URL, "--exception", "api:8080", "--yes")
	mustContain(t, "report", r.stderr, "kept PERMISSIVE on port 8080", "stage 2 of 2")
	if got := peerAuthMode(t, "shop", "default"); got != "STRICT" {
		t.Fatalf("namespace policy is %q, want STRICT", got)
	}
	ex := object(t, "shop", "peerauthentication", "api-mtls-exception")
	if fmt.Sprint(ex["spec"]) != "map[portLevelMtls:map[8080:map[mode:PERMISSIVE]] selector:map[matchLabels:map[app:api]]]" {
		t.Fatalf("exception policy: %v", ex["spec"])
	}
	// Re-running changes nothing.
	r = mesh(t, 0, "migrate-mtls", "-n", "shop", "--prometheus-url", prom.URL, "--exception", "api:8080", "--yes")
	mustContain(t, "re-run", r.stderr, "No changes")

	// Undo goes back to exactly the PERMISSIVE policy, without the exception.
	mesh(t, 0, "undo", "--yes")
	if got := peerAuthMode(t, "shop", "default"); got != "PERMISSIVE" {
		t.Fatalf("after undo the namespace policy is %q, want PERMISSIVE", got)
	}
	if got := peerAuthMode(t, "shop", "api-mtls-exception"); got != "<none>" {
		t.Fatal("undo left the exception policy behind")
	}
	mesh(t, 0, "undo", permissiveSet, "--yes")
	if got := peerAuthMode(t, "shop", "default"); got != "<none>" {
		t.Fatal("undoing stage 1 left the namespace policy behind")
	}

	// No Prometheus in the cluster and none given: STRICT needs --skip-telemetry.
	r = mesh(t, 69, "migrate-mtls", "-n", "clean", "--stage", "strict", "--yes")
	mustContain(t, "error", errorLine(t, r), "no Prometheus found", "--skip-telemetry")

	// A DestinationRule anywhere that turns TLS off for clean's hosts blocks STRICT.
	exposeThroughAPIServer(t, prom)
	mustKubectl(t, "apply", "-f", writeFile(t, "dr.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db-plain, namespace: legacy}
spec:
  host: "*.clean.svc.cluster.local"
  trafficPolicy: {tls: {mode: DISABLE}}
`))
	r = mesh(t, 79, "migrate-mtls", "-n", "clean", "--stage", "strict", "--yes")
	mustContain(t, "DR finding", r.stderr, "MTLS-DR-TLS", "DestinationRule.networking.istio.io/db-plain -n legacy", "trafficPolicy: DISABLE")
	mustKubectl(t, "delete", "destinationrule", "db-plain", "-n", "legacy")

	// Clean traffic, Prometheus found in the cluster and reached through
	// the API server: STRICT goes through straight from Istio's default.
	r = mesh(t, 0, "migrate-mtls", "-n", "clean", "--stage", "strict", "--yes")
	mustContain(t, "through the API server", r.stderr+r.stdout, "STRICT")
	if strings.Contains(r.stderr, "MTLS-PLAINTEXT") {
		t.Fatalf("clean dataset reported plaintext:\n%s", r.stderr)
	}
	if got := peerAuthMode(t, "clean", "default"); got != "STRICT" {
		t.Fatalf("clean namespace policy is %q, want STRICT", got)
	}
	cs := lastChangeSet(t)
	mesh(t, 0, "undo", "--yes")
	if got := peerAuthMode(t, "clean", "default"); got != "<none>" {
		t.Fatalf("undo left %q behind (change set %v)", got, cs["id"])
	}
}

// TestMigrateMTLSBadInput: every bad input is one line, a non-zero exit,
// and no change set.
func TestMigrateMTLSBadInput(t *testing.T) {
	installFakeControlPlane(t)
	for _, ns := range []string{"mtls-bad", "mtls-plain", "mtls-conflict"} {
		createNamespace(t, ns)
	}
	mustKubectl(t, "label", "namespace", "mtls-bad", "istio-injection=enabled")
	mustKubectl(t, "label", "namespace", "mtls-conflict", "istio-injection=enabled")
	mustKubectl(t, "apply", "-f", writeFile(t, "apps.yaml", meshApp("mtls-bad", "api", 8080, true)+`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: mtls-conflict}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b, namespace: mtls-conflict}
spec: {mtls: {mode: STRICT}}
`))
	mustKubectl(t, "rollout", "status", "deployment/api", "-n", "mtls-bad", "--timeout=60s")
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status/buildinfo") {
			fmt.Fprint(w, `{"status":"success","data":{"version":"2.42.0"}}`)
			return
		}
		fmt.Fprint(w, "<html>not prometheus</html>")
	}))
	defer garbage.Close()

	before := changeSetCount(t)
	strict := []string{"migrate-mtls", "-n", "mtls-bad", "--stage", "strict", "--yes"}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate-mtls", "-n", "nowhere", "--yes"}, 64, `namespace "nowhere" not found`},
		{[]string{"migrate-mtls", "-n", "mtls-plain", "--yes"}, 64, "is not in the mesh"},
		{[]string{"migrate-mtls", "-n", "mtls-bad", "--stage", "later"}, 64, `invalid --stage "later"`},
		{[]string{"migrate-mtls", "-n", "mtls-bad", "--window", "a week"}, 64, `invalid --window "a week"`},
		{[]string{"migrate-mtls", "-n", "mtls-bad", "--window", "-1d"}, 64, "invalid --window"},
		{[]string{"migrate-mtls", "-n", "mtls-bad", "--prometheus-url", "localhost:9090"}, 64, "invalid --prometheus-url"},
		{append(strict, "--exception", "api"), 64, "no port"},
		{append(strict, "--exception", "api:http"), 64, "port must be a number"},
		{append(strict, "--exception", "api:70000"), 64, "port must be a number"},
		{append(strict, "--exception", "Bad_Name:80"), 64, "workload is not a valid name"},
		{append(strict, "--exception", "ghost:8080", "--skip-telemetry"), 64, `no running workload "ghost"`},
		{append(strict, "--exception", "api:9999", "--skip-telemetry"), 64, "port 9999 is not a container port of Deployment/api (it declares ports 8080)"},
		{[]string{"migrate-mtls", "-n", "mtls-bad", "--stage", "permissive", "--exception", "api:8080"}, 64, "--exception only applies with --stage strict"},
		{append(strict, "--prometheus-url", "http://127.0.0.1:1"), 69, "cannot reach Prometheus at http://127.0.0.1:1"},
		{append(strict, "--prometheus-url", garbage.URL), 65, "returned a malformed result"},
		{[]string{"migrate-mtls", "-n", "mtls-conflict", "--yes", "--skip-telemetry"}, 79, "MTLS-PA-CONFLICT"},
		{[]string{"migrate-mtls", "--mesh-wide", "-n", "mtls-bad"}, 64, "--mesh-wide changes the policy in the root namespace"},
	}
	for _, tc := range cases {
		r := mesh(t, tc.code, tc.args...)
		mustContain(t, strings.Join(tc.args, " "), errorLine(t, r), tc.want)
	}
	if after := changeSetCount(t); after != before {
		t.Fatalf("bad input recorded %d change set(s)", after-before)
	}
	if got := peerAuthMode(t, "mtls-bad", "default"); got != "<none>" {
		t.Fatalf("bad input created a policy (%s)", got)
	}
}

// TestMigrateMTLSOnTerminal: without --stage the command shows where the
// namespace stands, asks for the stage and the exceptions, then confirms.
func TestMigrateMTLSOnTerminal(t *testing.T) {
	installFakeControlPlane(t)
	createNamespace(t, "mtls-tty")
	mustKubectl(t, "label", "namespace", "mtls-tty", "istio-injection=enabled")
	mustKubectl(t, "apply", "-f", writeFile(t, "apps.yaml", meshApp("mtls-tty", "api", 8080, true)))
	mustKubectl(t, "rollout", "status", "deployment/api", "-n", "mtls-tty", "--timeout=60s")

	screen, code := runOnTerminalSteps(t, []termStep{
		{"Stage to apply", typeKeys("\x1b[B\r")}, // permissive is the default; pick strict
		{"Ports to keep PERMISSIVE", typeKeys("api:8080\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "migrate-mtls", "-n", "mtls-tty", "--skip-telemetry")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "namespace mtls-tty is PERMISSIVE (Istio's default)", "PORT  MODE        DECIDED BY", "MTLS-TELEMETRY-SKIPPED", "PeerAuthentication/api-mtls-exception -n mtls-tty port 8080")
	if got := peerAuthMode(t, "mtls-tty", "default"); got != "STRICT" {
		t.Fatalf("namespace policy is %q, want STRICT", got)
	}
	if peerAuthMode(t, "mtls-tty", "api-mtls-exception") == "<none>" {
		t.Fatal("the exception typed at the prompt was not applied")
	}
}

// TestMigrateMTLSMeshWide: --mesh-wide edits the root namespace's policy
// and checks every namespace in the mesh without a policy of its own;
// an accepted finding is recorded in the change set.
func TestMigrateMTLSMeshWide(t *testing.T) {
	e := startEnv(t, testenv.Options{IstioCRDs: true})
	kc := []string{"KUBECONFIG=" + e.Kubeconfig}
	run := func(code int, args ...string) result {
		t.Helper()
		r := kubectl(t, kc, args...)
		if r.code != code {
			t.Fatalf("kubectl %s: exit %d, want %d", strings.Join(args, " "), r.code, code)
		}
		assertNoLeaks(t, r)
		return r
	}
	for _, ns := range []string{"istio-system", "team-a", "team-b", "outside"} {
		run(0, "create", "namespace", ns)
	}
	run(0, "label", "namespace", "team-a", "istio-injection=enabled")
	run(0, "label", "namespace", "team-b", "istio.io/rev=stable")
	// team-b already decided for itself; outside is not in the mesh.
	run(0, "apply", "-f", writeFile(t, "pa.yaml", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: team-b}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: team-b}
spec: {host: "*.team-b.svc.cluster.local", trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: team-a}
spec: {host: "*.team-a.svc.cluster.local", trafficPolicy: {tls: {mode: DISABLE}}}
`))
	r := run(0, "mesh", "migrate-mtls", "--mesh-wide", "--yes")
	mustContain(t, "stage 1", r.stderr, "PeerAuthentication.security.istio.io/default -n istio-system created")
	r = run(79, "mesh", "migrate-mtls", "--mesh-wide", "--skip-telemetry", "--yes")
	mustContain(t, "findings", r.stderr, "MTLS-DR-TLS", "plain -n team-a")
	if strings.Contains(r.stderr, "plain -n team-b") {
		t.Fatal("team-b has its own namespace policy: the mesh-wide change does not reach it")
	}
	run(0, "mesh", "migrate-mtls", "--mesh-wide", "--skip-telemetry", "--accept", "MTLS-DR-TLS", "--yes")
	if r := run(0, "get", "peerauthentication", "default", "-n", "istio-system", "-o", "jsonpath={.spec.mtls.mode}"); r.stdout != "STRICT" {
		t.Fatalf("mesh-wide policy is %q", r.stdout)
	}
	cs := lastChangeSetOn(t, kc)
	if fmt.Sprint(cs["accepted"]) != "[MTLS-DR-TLS]" || !strings.Contains(fmt.Sprint(cs["command"]), "--skip-telemetry") {
		t.Fatalf("change set does not record the accepted finding and --skip-telemetry: %v", cs)
	}
	run(0, "mesh", "undo", "--yes")
	if r := run(0, "get", "peerauthentication", "default", "-n", "istio-system", "-o", "jsonpath={.spec.mtls.mode}"); r.stdout != "PERMISSIVE" {
		t.Fatalf("after undo the mesh-wide policy is %q", r.stdout)
	}
}
