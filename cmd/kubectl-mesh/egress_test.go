package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// exit is one series of source-reported traffic leaving through the
// passthrough path: an HTTP Host, a TLS SNI, or a bare TCP destination.
type exit struct {
	src, srcNS, host, sni, service string
	tcp                            bool
	perMinute                      int
}

// egressMetrics renders exits as source-reported counters over the last
// three hours, plus in-mesh traffic so the proxies are known to report.
func egressMetrics(ns string, exits []exit) string {
	var ss []series
	for _, e := range exits {
		family, svc := "istio_requests", e.host
		if e.tcp {
			family, svc = "istio_tcp_connections_opened", e.service
		}
		if svc == "" {
			svc = "PassthroughCluster"
		}
		sni := e.sni
		if sni == "" {
			sni = "unknown"
		}
		ss = append(ss, series{family, "counter", family + "_total", fmt.Sprintf(`reporter="source",source_workload=%q,source_workload_namespace=%q,destination_service=%q,destination_service_name="PassthroughCluster",requested_server_name=%q`,
			e.src, e.srcNS, svc, sni), float64(e.perMinute)})
	}
	ss = append(ss, series{"istio_requests", "counter", "istio_requests_total", fmt.Sprintf(`reporter="source",source_workload="web",source_workload_namespace=%q,destination_service="api.%s.svc.cluster.local",destination_service_name="api",requested_server_name="unknown"`, ns, ns), 30})
	return openMetrics(time.Now().Add(-10*time.Minute), 180, 5, ss)
}

func seField(t *testing.T, kind, ns, name, jsonpath string) string {
	t.Helper()
	r := kubectl(t, nil, "get", kind, name, "-n", ns, "-o", "jsonpath="+jsonpath)
	if r.code != 0 {
		return "<none>"
	}
	return r.stdout
}

// TestMigrateEgress walks ALLOW_ANY → REGISTRY_ONLY on the real API server
// with a real Prometheus holding passthrough traffic to an HTTP host, a TLS
// host and a TCP database: registry writes the entries; lockdown is
// blocked by a host seen since and by the hostless TCP destination, then
// applies with them registered; undo restores ALLOW_ANY.
func TestMigrateEgress(t *testing.T) {
	ns := "egress-e2e"
	createNamespace(t, ns)
	exits := []exit{
		{src: "web", srcNS: ns, host: "httpbin.org", perMinute: 20},
		{src: "web", srcNS: ns, sni: "api.stripe.com", tcp: true, perMinute: 5},
		{src: "billing", srcNS: ns, service: "203.0.113.7:5432", tcp: true, perMinute: 2},
	}
	prom := startPrometheusWith(t, egressMetrics(ns, exits))
	flags := []string{"-n", ns, "--window", "2h", "--prometheus-url", prom.URL}

	r := mesh(t, 0, append([]string{"migrate-egress", "--yes"}, flags...)...)
	mustContain(t, "registry", r.stderr,
		"SOURCE", "httpbin.org:80/HTTP", "HTTP Host header", "api.stripe.com:443/TLS", "TLS SNI", "203.0.113.7:5432/TCP", "TCP, IP only: low confidence",
		"Warning [EGRESS-TCP-NO-HOST] before lockdown:",
		"ServiceEntry.networking.istio.io/egress-httpbin-org -n "+ns+" created",
		"ServiceEntry.networking.istio.io/egress-api-stripe-com -n "+ns+" created")
	if got := seField(t, "serviceentry", ns, "egress-api-stripe-com", "{.spec.location} {.spec.resolution} {.spec.ports[0].number}/{.spec.ports[0].protocol} {.spec.exportTo}"); got != `MESH_EXTERNAL DNS 443/TLS ["."]` {
		t.Fatalf("api.stripe.com entry: %s", got)
	}
	if got := seField(t, "sidecar", ns, "default", "{.metadata.name}"); got != "<none>" {
		t.Fatal("the registry stage locked down")
	}

	// A host seen since the registry stage blocks the lockdown, named.
	prom = startPrometheusWith(t, egressMetrics(ns, append(exits, exit{src: "web", srcNS: ns, sni: "new.example.com", tcp: true, perMinute: 1})))
	flags[len(flags)-1] = prom.URL
	r = mesh(t, 79, append([]string{"migrate-egress", "--stage", "lockdown", "--yes"}, flags...)...)
	mustContain(t, "blocked", r.stderr, "Error [EGRESS-UNREGISTERED]", "new.example.com:443/TLS (from "+ns+"/web", "Error [EGRESS-TCP-NO-HOST]")
	if got := seField(t, "sidecar", ns, "default", "{.metadata.name}"); got != "<none>" {
		t.Fatal("a blocked lockdown wrote the Sidecar")
	}

	// Registered with --allow, the database accepted: REGISTRY_ONLY.
	r = mesh(t, 0, append([]string{"migrate-egress", "--stage", "lockdown", "--allow", "new.example.com:443", "--allow", "db.example.com:5432/TCP", "--accept", "EGRESS-TCP-NO-HOST", "--yes"}, flags...)...)
	mustContain(t, "lockdown", r.stderr, "Sidecar.networking.istio.io/default -n "+ns+" created", "outbound traffic of "+ns+" is REGISTRY_ONLY")
	if got := seField(t, "sidecar", ns, "default", "{.spec.outboundTrafficPolicy.mode}"); got != "REGISTRY_ONLY" {
		t.Fatalf("Sidecar mode %q", got)
	}
	if got := seField(t, "serviceentry", ns, "egress-db-example-com", `{.metadata.annotations.kubectl-mesh\.io/registered-without-evidence}`); !strings.Contains(got, "--allow") {
		t.Fatalf("the --allow'ed host is not recorded as such: %q", got)
	}

	// undo: ALLOW_ANY again, the entries of the registry stage kept.
	mesh(t, 0, "undo", "--yes")
	if got := seField(t, "sidecar", ns, "default", "{.metadata.name}"); got != "<none>" {
		t.Fatal("undo of the lockdown left the Sidecar")
	}
	if got := seField(t, "serviceentry", ns, "egress-httpbin-org", "{.metadata.name}"); got != "egress-httpbin-org" {
		t.Fatal("undo of the lockdown removed the registry stage's entries")
	}
}

func TestMigrateEgressBadInput(t *testing.T) {
	quiet, fresh := "egress-quiet", "egress-fresh"
	createNamespace(t, quiet)
	createNamespace(t, fresh)
	prom := startPrometheusWith(t, egressMetrics(fresh, []exit{{src: "web", srcNS: fresh, host: "httpbin.org", perMinute: 3}}))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad allow", []string{"-n", fresh, "--allow", "db.example.com"}, 64, `invalid --allow "db.example.com": no port`},
		{"bad protocol", []string{"-n", fresh, "--allow", "db.example.com:5432/SQL"}, 64, "protocol must be one of HTTP, HTTPS, TLS, TCP, GRPC, HTTP2"},
		{"bad stage", []string{"-n", fresh, "--stage", "closed"}, 64, `invalid --stage "closed": use registry or lockdown`},
		{"namespace missing", []string{"-n", "nope", "--prometheus-url", prom.URL}, 64, `namespace "nope" not found`},
		{"Prometheus unreachable", []string{"-n", fresh, "--prometheus-url", "http://127.0.0.1:1", "--yes"}, 69, "127.0.0.1:1"},
		{"lockdown before registry", []string{"-n", fresh, "--stage", "lockdown", "--window", "2h", "--prometheus-url", prom.URL, "--yes"}, 64, "lockdown before registry: 1 observed host(s) have no ServiceEntry (httpbin.org:80/HTTP"},
		{"no Istio metrics", []string{"-n", quiet, "--window", "2h", "--prometheus-url", prom.URL, "--yes"}, 79, "EGRESS-INCONCLUSIVE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mesh(t, tc.code, append([]string{"migrate-egress"}, tc.args...)...)
			mustContain(t, tc.name, errorLine(t, r), tc.want)
			assertNoLeaks(t, r)
		})
	}
	if got := seField(t, "sidecar", fresh, "default", "{.metadata.name}"); got != "<none>" {
		t.Fatal("bad input changed the cluster")
	}
}

// TestMigrateEgressOnTerminal: the inventory is shown, then the stage and
// the hosts the window did not see are asked.
func TestMigrateEgressOnTerminal(t *testing.T) {
	ns := "egress-tty"
	createNamespace(t, ns)
	prom := startPrometheusWith(t, egressMetrics(ns, []exit{{src: "web", srcNS: ns, host: "httpbin.org", perMinute: 5}}))
	screen, code := runOnTerminalSteps(t, []termStep{
		{"Stage to apply", typeKeys("\r")}, // registry, the next stage
		{"Hosts the window did not see", typeKeys("reports.example.com:443\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "migrate-egress", "-n", ns, "--window", "2h", "--prometheus-url", prom.URL)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "Outbound traffic of "+ns, "httpbin.org:80/HTTP")
	if got := seField(t, "serviceentry", ns, "egress-reports-example-com", "{.spec.ports[0].number}/{.spec.ports[0].protocol}"); got != "443/TLS" {
		t.Fatalf("the host typed at the prompt: %s", got)
	}
}
