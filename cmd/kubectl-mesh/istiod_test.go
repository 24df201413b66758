package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// meshCluster is a control plane of its own with our production install of
// revision 1-31 and a real istiod serving it (injection, validation, xDS).
// The tests below share it: starting istiod is the expensive part.
type meshCluster struct {
	env    *testenv.Env
	istiod *testenv.Istiod
	on     []string
}

func startMeshCluster(t *testing.T) *meshCluster {
	t.Helper()
	e := startEnv(t, testenv.Options{Nodes: true, ServiceAccounts: true})
	m := &meshCluster{env: e, on: []string{"KUBECONFIG=" + e.Kubeconfig}}
	m.mesh(t, 0, "install", "--revision", "1-31", "--ingress=false", "--gateway-api", "--yes", "--timeout", "90s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := e.StartIstiod(ctx, "istio-system", "1-31")
	if err != nil {
		t.Fatal(err)
	}
	m.istiod = d
	return m
}

// mesh runs kubectl mesh on this cluster, failing on an unexpected exit code.
func (m *meshCluster) mesh(t *testing.T, want int, args ...string) result {
	t.Helper()
	r := kubectl(t, m.on, append([]string{"mesh"}, args...)...)
	if r.code != want {
		t.Fatalf("kubectl mesh %s: exit %d, want %d", strings.Join(args, " "), r.code, want)
	}
	assertNoLeaks(t, r)
	return r
}

// kubectl runs a plain kubectl command on this cluster and fails on error.
func (m *meshCluster) kubectl(t *testing.T, args ...string) result {
	t.Helper()
	r := kubectl(t, m.on, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r.stderr)
	}
	return r
}

func (m *meshCluster) apply(t *testing.T, yaml string) {
	t.Helper()
	m.kubectl(t, "apply", "-f", writeFile(t, "objects.yaml", yaml))
}

// changeSets lists the journal's change sets.
func (m *meshCluster) changeSets(t *testing.T) []any {
	t.Helper()
	var out []any
	if err := json.Unmarshal([]byte(m.mesh(t, 0, "history", "-o", "json").stdout), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// pods lists the running pods of app in ns once every one of them is Ready
// and they number want.
func (m *meshCluster) pods(t *testing.T, ns, selector string, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := m.env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods = nil
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
			pods = append(pods, p)
		}
		return len(pods) == want, nil
	})
	if err != nil {
		t.Fatalf("pods %s in %s: want %d running, have %d", selector, ns, want, len(pods))
	}
	return pods
}

// proxy connects a test proxy to the real istiod as the sidecar of pod.
func (m *meshCluster) proxy(t *testing.T, pod corev1.Pod, opts testenv.ProxyOptions) *testenv.Proxy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := m.istiod.ConnectProxy(ctx, &pod, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitProxy waits until what istiod sent the proxy satisfies cond; on
// timeout it fails with what it saw.
func waitProxy(t *testing.T, p *testenv.Proxy, what string, cond func(p *testenv.Proxy) bool, seen func(p *testenv.Proxy) any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitFor(ctx, cond); err != nil {
		b, _ := json.Marshal(seen(p))
		t.Fatalf("%s: %v; istiod sent: %s", what, err, b)
	}
}

func sidecarOf(p corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == "istio-proxy" {
				return &cs[i]
			}
		}
	}
	return nil
}

// TestRealIstiod runs the workflows against a real istiod: its injector
// adds the sidecars, its webhook validates, and what it generates for a
// proxy is what the assertions read.
func TestRealIstiod(t *testing.T) {
	m := startMeshCluster(t)

	t.Run("inject", func(t *testing.T) {
		ns := "shop"
		m.kubectl(t, "create", "namespace", ns)
		m.apply(t, meshApp(ns, "api", 8080, false)+meshApp(ns, "web", 8081, false))
		before := m.pods(t, ns, "app=api", 1)
		if sidecarOf(before[0]) != nil {
			t.Fatal("a pod had a sidecar before injection")
		}
		r := m.mesh(t, 0, "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes", "--timeout", "60s")
		mustContain(t, "coverage after", r.stdout, "After:", "total           2/2")
		if strings.Contains(r.stdout, "IST0158") {
			t.Fatalf("pods injected by 1-31 reported as another revision's:\n%s", r.stdout)
		}
		for _, app := range []string{"api", "web"} {
			p := m.pods(t, ns, "app="+app, 1)[0]
			c := sidecarOf(p)
			if c == nil {
				t.Fatalf("pod %s has no istio-proxy after inject --restart: %+v", p.Name, p.Spec)
			}
			if p.Annotations["sidecar.istio.io/status"] == "" {
				t.Fatalf("pod %s lacks the injector's status annotation", p.Name)
			}
			// The production profile's proxy resources, as Istio's injector rendered them.
			if got := c.Resources.Requests.Cpu().String() + "/" + c.Resources.Limits.Memory().String(); got != "100m/1Gi" {
				t.Fatalf("istio-proxy resources %s, want the production profile's 100m/1Gi", got)
			}
			if !holdsApplication(p) {
				t.Fatalf("pod %s: holdApplicationUntilProxyStarts not in effect: %+v", p.Name, p.Spec)
			}
			// The production profile's DNS capture reached the sidecar.
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "ISTIO_META_DNS_CAPTURE" && e.Value == "true" }) {
				t.Fatalf("pod %s: istio-proxy lacks ISTIO_META_DNS_CAPTURE=true: %v", p.Name, c.Env)
			}
		}
		r = m.mesh(t, 0, "status")
		mustContain(t, "status", r.stdout, "shop")
	})

	// STRICT from the namespace policy: web's inbound port accepts only
	// mTLS; api's port kept PERMISSIVE by --exception still has a
	// plaintext filter chain.
	t.Run("migrate-mtls", func(t *testing.T) {
		api := m.proxy(t, m.pods(t, "shop", "app=api", 1)[0], testenv.ProxyOptions{})
		web := m.proxy(t, m.pods(t, "shop", "app=web", 1)[0], testenv.ProxyOptions{})
		waitTransports(t, web, 8081, "tls,raw_buffer") // Istio's default: PERMISSIVE
		m.mesh(t, 0, "migrate-mtls", "-n", "shop", "--stage", "strict", "--exception", "api:8080", "--skip-telemetry", "--yes")
		waitTransports(t, web, 8081, "tls")
		waitTransports(t, api, 8080, "tls,raw_buffer")
	})

	// A 90/10 canary is a 90/10 weighted route in every proxy; abort puts
	// all traffic back on the stable subset.
	t.Run("canary", func(t *testing.T) {
		ns := "books"
		m.kubectl(t, "create", "namespace", ns)
		m.kubectl(t, "label", "namespace", ns, "istio.io/rev=1-31")
		m.apply(t, reviewsApp(ns))
		reviews := m.pods(t, ns, "app=reviews", 3)
		if sidecarOf(reviews[0]) == nil {
			t.Fatal("reviews pods were not injected")
		}
		p := m.proxy(t, reviews[0], testenv.ProxyOptions{})
		host := "reviews." + ns + ".svc.cluster.local"
		subset := func(v string) string { return "outbound|9080|" + v + "|" + host }
		waitRoute(t, p, host+":9080", map[string]uint32{"outbound|9080||" + host: 100})
		// The production profile's retry policy is what istiod gives every
		// route: no retries of requests the application answered (5xx).
		if got := p.DefaultRoute("9080", host+":9080").GetRoute().GetRetryPolicy().GetRetryOn(); got != "connect-failure,refused-stream,unavailable,cancelled" {
			t.Fatalf("route retry policy retries on %q", got)
		}
		r := m.mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--stable", "v1", "--canary", "v2", "--weight", "10", "--yes")
		// The apply waited for the connected proxy to acknowledge the push.
		mustContain(t, "proxy sync", r.stderr, "Verifying: proxies in books have the new configuration", "1 of 1 proxies acknowledged the new configuration")
		waitRoute(t, p, host+":9080", map[string]uint32{subset("v1"): 90, subset("v2"): 10})

		// A proxy that never acknowledges is named STALE after the wait; the
		// apply still succeeds.
		m.proxy(t, reviews[1], testenv.ProxyOptions{NoAck: true})
		r = m.mesh(t, 0, "canary", "abort", "-n", ns, "reviews", "--yes", "--proxy-sync-timeout", "3s")
		mustContain(t, "stale proxy", r.stderr, "warning: after 3s, 1 of 2 proxies acknowledged the new configuration; STALE (sent, not acknowledged): "+reviews[1].Name+"."+ns)
		waitRoute(t, p, host+":9080", map[string]uint32{subset("v1"): 100})
	})

	// A Gateway API canary: istiod turns the HTTPRoute's weighted
	// backendRefs into the mesh route of the Service, split between the
	// per-version Services' clusters (GAMMA); abort goes back to one.
	t.Run("canary on the Gateway API", func(t *testing.T) {
		ns := "books-gw"
		m.kubectl(t, "create", "namespace", ns)
		m.kubectl(t, "label", "namespace", ns, "istio.io/rev=1-31")
		m.apply(t, reviewsApp(ns))
		p := m.proxy(t, m.pods(t, ns, "app=reviews", 3)[0], testenv.ProxyOptions{})
		host := "reviews." + ns + ".svc.cluster.local"
		version := func(v string) string { return "outbound|9080||reviews-" + v + "." + ns + ".svc.cluster.local" }
		r := m.mesh(t, 0, "canary", "start", "-n", ns, "reviews", "--api", "gateway", "--stable", "v1", "--canary", "v2", "--weight", "10", "--yes")
		mustContain(t, "gateway start", r.stdout+r.stderr, "HTTPRoute.gateway.networking.k8s.io/reviews", "Service/reviews-v2")
		waitRoute(t, p, host+":9080", map[string]uint32{version("v1"): 90, version("v2"): 10})
		m.mesh(t, 0, "canary", "step", "-n", ns, "reviews", "--skip-gate", "--yes")
		waitRoute(t, p, host+":9080", map[string]uint32{version("v1"): 75, version("v2"): 25})
		m.mesh(t, 0, "canary", "abort", "-n", ns, "reviews", "--yes")
		waitRoute(t, p, host+":9080", map[string]uint32{version("v1"): 100})
		// Istio's check sees the CRDs install --gateway-api applied.
		r = m.mesh(t, 0, "check", "-o", "json")
		mustContain(t, "check", r.stdout, "Gateway API CRDs v1.", "(standard channel) are supported by Istio 1.31")
	})

	// Onboarding with named callers: the workload's inbound RBAC filter
	// allows those namespaces' identities and nothing else.
	t.Run("onboard", func(t *testing.T) {
		ns := "payments"
		m.mesh(t, 0, "onboard", "payments", "-n", ns, "--allow-from", "same-namespace,namespace:shop", "--yes")
		m.apply(t, meshApp(ns, "ledger", 8080, false))
		pod := m.pods(t, ns, "app=ledger", 1)[0]
		if sidecarOf(pod) == nil {
			t.Fatal("the onboarded namespace does not inject")
		}
		p := m.proxy(t, pod, testenv.ProxyOptions{})
		waitTransports(t, p, 8080, "tls") // STRICT for a new namespace
		var rbac string
		waitProxy(t, p, "RBAC filter on port 8080", func(p *testenv.Proxy) bool {
			rbac = strings.Join(chainRBAC(p, 8080), "\n")
			return strings.Contains(rbac, "allow-callers")
		}, func(p *testenv.Proxy) any { return p.InboundChains(8080) })
		if got := callerNamespaces(rbac); got != "payments,shop" {
			t.Fatalf("RBAC allows callers from namespaces %q, want exactly payments,shop:\n%s", got, rbac)
		}
	})

	// migrate-authz from observed callers: in audit istiod gives the proxy
	// the policies as shadow rules only; enforced, the RBAC filter admits
	// exactly the observed principal and denies everyone else.
	t.Run("migrate-authz", func(t *testing.T) {
		ns := "vault"
		m.kubectl(t, "create", "namespace", ns)
		m.kubectl(t, "label", "namespace", ns, "istio.io/rev=1-31")
		m.apply(t, meshApp(ns, "ledger", 8080, false)+`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: `+ns+`}
spec: {mtls: {mode: STRICT}}
`)
		pod := m.pods(t, ns, "app=ledger", 1)[0]
		if sidecarOf(pod) == nil {
			t.Fatal("ledger was not injected")
		}
		p := m.proxy(t, pod, testenv.ProxyOptions{})
		caller := "spiffe://cluster.local/ns/shop/sa/default"
		prom := startPrometheusWith(t, authzMetrics([]callerEdge{{strings.TrimPrefix(caller, "spiffe://"), "web", "shop", "ledger", ns, "http", 10}}))
		flags := []string{"-n", ns, "--window", "2h", "--prometheus-url", prom.URL, "--yes"}
		m.mesh(t, 0, append([]string{"migrate-authz"}, flags...)...)
		var rules, shadow []string
		waitProxy(t, p, "shadow rules for the audit", func(p *testenv.Proxy) bool {
			rules, shadow = rbacPrincipals(chainRBAC(p, 8080))
			return len(shadow) > 0
		}, func(p *testenv.Proxy) any { return p.InboundChains(8080) })
		if len(rules) > 0 || !slices.Equal(shadow, []string{caller}) {
			t.Fatalf("audit: enforced principals %v, shadow %v; want nothing enforced and the shadow rules naming %s", rules, shadow, caller)
		}
		m.mesh(t, 0, append([]string{"migrate-authz", "--stage", "enforce"}, flags...)...)
		waitProxy(t, p, "enforced RBAC", func(p *testenv.Proxy) bool {
			rules, shadow = rbacPrincipals(chainRBAC(p, 8080))
			return len(rules) > 0 && len(shadow) == 0
		}, func(p *testenv.Proxy) any { return p.InboundChains(8080) })
		// Envoy's RBAC filter with action ALLOW admits only what a policy
		// matches: the observed caller, and no other identity.
		if !slices.Equal(rules, []string{caller}) {
			t.Fatalf("enforced RBAC admits %v, want exactly %s", rules, caller)
		}
	})

	// migrate-egress: the registered host gets an outbound cluster; after
	// the lockdown, traffic to anything unregistered goes to the black hole
	// instead of the passthrough cluster.
	t.Run("migrate-egress", func(t *testing.T) {
		ns := "outbound"
		m.kubectl(t, "create", "namespace", ns)
		m.kubectl(t, "label", "namespace", ns, "istio.io/rev=1-31")
		m.apply(t, meshApp(ns, "web", 8080, false))
		pod := m.pods(t, ns, "app=web", 1)[0]
		if sidecarOf(pod) == nil {
			t.Fatal("web was not injected")
		}
		p := m.proxy(t, pod, testenv.ProxyOptions{})
		waitProxy(t, p, "ALLOW_ANY catch-all", func(p *testenv.Proxy) bool { return p.OutboundCatchAll() == "PassthroughCluster" },
			func(p *testenv.Proxy) any { return p.OutboundCatchAll() })
		prom := startPrometheusWith(t, egressMetrics(ns, []exit{{src: "web", srcNS: ns, host: "httpbin.org", perMinute: 10}}))
		flags := []string{"-n", ns, "--window", "2h", "--prometheus-url", prom.URL, "--yes"}
		m.mesh(t, 0, append([]string{"migrate-egress"}, flags...)...)
		waitProxy(t, p, "outbound cluster for httpbin.org", func(p *testenv.Proxy) bool { return slices.Contains(p.ClusterNames(), "outbound|80||httpbin.org") },
			func(p *testenv.Proxy) any { return p.ClusterNames() })
		m.mesh(t, 0, append([]string{"migrate-egress", "--stage", "lockdown"}, flags...)...)
		waitProxy(t, p, "REGISTRY_ONLY catch-all", func(p *testenv.Proxy) bool { return p.OutboundCatchAll() == "BlackHoleCluster" },
			func(p *testenv.Proxy) any { return p.OutboundCatchAll() })
		if !slices.Contains(p.ClusterNames(), "outbound|80||httpbin.org") {
			t.Fatal("the lockdown dropped the registered host's cluster")
		}
	})

	// resilience: in the proxy, the read route (GET|HEAD) carries the
	// proposed retry policy and the write route none at all — Istio's
	// implicit default retry is overridden.
	t.Run("resilience", func(t *testing.T) {
		ns := "orders"
		m.kubectl(t, "create", "namespace", ns)
		m.kubectl(t, "label", "namespace", ns, "istio.io/rev=1-31")
		m.apply(t, meshApp(ns, "orders", 8080, false))
		pod := m.pods(t, ns, "app=orders", 1)[0]
		p := m.proxy(t, pod, testenv.ProxyOptions{})
		prom := startPrometheusWith(t, latencyMetrics(ns, "orders", 300))
		m.mesh(t, 0, "resilience", "orders", "-n", ns, "--window", "2h", "--prometheus-url", prom.URL, "--yes")
		vhost := "orders." + ns + ".svc.cluster.local:80"
		waitProxy(t, p, "read and write routes", func(p *testenv.Proxy) bool { return len(p.Routes("80", vhost)) == 2 },
			func(p *testenv.Proxy) any { return p.Routes("80", vhost) })
		routes := p.Routes("80", vhost)
		reads, writes := routes[0], routes[1]
		if h := reads.GetMatch().GetHeaders(); len(h) != 1 || h[0].GetName() != ":method" || !strings.Contains(h[0].GetStringMatch().GetSafeRegex().GetRegex(), "GET|HEAD") {
			t.Fatalf("the read route does not match GET|HEAD: %v", reads.GetMatch())
		}
		rp := reads.GetRoute().GetRetryPolicy()
		if rp.GetNumRetries().GetValue() != 2 || !strings.Contains(rp.GetRetryOn(), "connect-failure") || !slices.Contains(rp.GetRetriableStatusCodes(), 503) {
			t.Fatalf("read route retry policy %v", rp)
		}
		if wp := writes.GetRoute().GetRetryPolicy(); wp != nil && wp.GetNumRetries().GetValue() != 0 {
			t.Fatalf("the write route retries: %v", wp)
		}
		if reads.GetRoute().GetTimeout().AsDuration() == 0 || writes.GetRoute().GetTimeout().AsDuration() != reads.GetRoute().GetTimeout().AsDuration() {
			t.Fatalf("route timeouts %v / %v", reads.GetRoute().GetTimeout(), writes.GetRoute().GetTimeout())
		}
	})

	// istiod allocates an address to a ServiceEntry without one (with the
	// production profile's DNS capture, TCP to external hosts on a shared
	// port can be routed).
	t.Run("address auto-allocation", func(t *testing.T) {
		m.apply(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-db, namespace: books}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: DNS
  location: MESH_EXTERNAL
`)
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			r := kubectl(t, m.on, "get", "serviceentry", "external-db", "-n", "books", "-o", "jsonpath={.status.addresses[*].value}")
			return r.code == 0 && r.stdout != "", nil
		})
		if err != nil {
			t.Fatal("istiod allocated no address to the ServiceEntry")
		}
	})

	// An object the CRD's schema accepts but Istio's validation refuses (a
	// regular expression that does not compile) is refused at the diff,
	// with Istio's own message, and nothing is written.
	t.Run("validation", func(t *testing.T) {
		bad := writeFile(t, "bad-vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-regex, namespace: books, labels: {istio.io/rev: 1-31}}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: "(("}}]
    route: [{destination: {host: reviews}}]
`)
		if r := kubectl(t, m.on, "apply", "--dry-run=server", "-f", bad, "--validate=false"); r.code == 0 {
			t.Fatal("the webhook accepted an invalid regex")
		}
		before := len(m.changeSets(t))
		r := m.mesh(t, 65, "apply", "-f", bad, "--yes")
		mustContain(t, "error", errorLine(t, r), "VirtualService.networking.istio.io/bad-regex -n books",
			`admission webhook "rev.validation.istio.io" denied the request`, "error parsing regexp", "fix the object")
		if r := kubectl(t, m.on, "get", "virtualservice", "bad-regex", "-n", "books"); r.code == 0 {
			t.Fatal("the refused VirtualService was written")
		}
		if after := len(m.changeSets(t)); after != before {
			t.Fatalf("a refused plan recorded a change set (%d → %d)", before, after)
		}
	})

	// A webhook nobody serves rejects every pod: the restart fails fast
	// with the webhook named and the change set to undo.
	t.Run("dead webhook", func(t *testing.T) {
		ns := "broken"
		m.kubectl(t, "create", "namespace", ns)
		m.apply(t, meshApp(ns, "app", 8080, false))
		m.pods(t, ns, "app=app", 1)
		m.apply(t, `apiVersion: v1
kind: Service
metadata: {name: dead-webhook, namespace: broken}
spec: {selector: {app: nothing-runs-here}, ports: [{port: 443, targetPort: 9443}]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: dead-webhook}
webhooks:
- name: dead.example.com
  clientConfig: {service: {name: dead-webhook, namespace: broken, port: 443}}
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: broken}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
`)
		start := time.Now()
		r := kubectl(t, m.on, "mesh", "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes", "--timeout", "3m")
		if r.code != 69 {
			t.Fatalf("inject with a dead webhook: exit %d, want 69 (unavailable)", r.code)
		}
		assertNoLeaks(t, r)
		mustContain(t, "error", errorLine(t, r), "Deployment/app -n broken cannot roll out: pods cannot be created",
			`failed calling webhook "dead.example.com"`, "https://dead-webhook.broken.svc:443", "kubectl mesh undo cs-",
			"the webhook's server is down or unreachable")
		mustContain(t, "progress", r.stderr, "pods cannot be created")
		if took := time.Since(start); took > 45*time.Second {
			t.Fatalf("took %s to report pods that cannot be created", took)
		}
		m.kubectl(t, "delete", "mutatingwebhookconfiguration", "dead-webhook")
		m.mesh(t, 0, "undo", "--yes")
	})

	// Last, as it stops istiod: with the injector gone, Istio's own webhook
	// (failurePolicy Fail) refuses every pod of an injected namespace. The
	// restart stops within seconds naming that webhook, and the change set
	// is recorded as failed, so undo knows what was applied.
	t.Run("istiod killed", func(t *testing.T) {
		m.istiod.Stop()
		ns := "orphan"
		m.kubectl(t, "create", "namespace", ns)
		m.apply(t, meshApp(ns, "app", 8080, false))
		m.pods(t, ns, "app=app", 1)
		r := kubectl(t, m.on, "mesh", "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes", "--timeout", "3m")
		if r.code != 69 {
			t.Fatalf("inject with istiod down: exit %d, want 69", r.code)
		}
		assertNoLeaks(t, r)
		mustContain(t, "error", errorLine(t, r), "pods cannot be created", `failed calling webhook "rev.namespace.sidecar-injector.istio.io"`, "kubectl mesh undo cs-")
		sets := m.changeSets(t)
		if last := sets[0].(map[string]any); last["status"] != "failed" {
			t.Fatalf("change set after the failed restart: %v", last["status"])
		}
		m.mesh(t, 0, "undo", "--yes")
		if l := m.kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}").stdout; l != "" {
			t.Fatalf("undo left the injection label: %q", l)
		}
	})
}

// transports lists the transport protocols of port's inbound filter chains.
func transports(p *testenv.Proxy, port uint32) string {
	var out []string
	for _, c := range p.InboundChains(port) {
		out = append(out, c.TransportProtocol)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	slices.Reverse(out) // "tls" before "raw_buffer"
	return strings.Join(out, ",")
}

func waitTransports(t *testing.T, p *testenv.Proxy, port uint32, want string) {
	t.Helper()
	waitProxy(t, p, fmt.Sprintf("inbound port %d accepts %s", port, want),
		func(p *testenv.Proxy) bool { return transports(p, port) == want },
		func(p *testenv.Proxy) any { return p.InboundChains(port) })
}

func waitRoute(t *testing.T, p *testenv.Proxy, domain string, want map[string]uint32) {
	t.Helper()
	got := func(p *testenv.Proxy) map[string]uint32 {
		w := p.WeightedClusters("9080", domain)
		for k, v := range w {
			if v == 0 {
				delete(w, k)
			}
		}
		return w
	}
	waitProxy(t, p, fmt.Sprintf("route %s weighted %v", domain, want),
		func(p *testenv.Proxy) bool { return maps.Equal(got(p), want) },
		func(p *testenv.Proxy) any { return map[string]any{"routes": p.RouteNames(), domain: got(p)} })
}

func chainRBAC(p *testenv.Proxy, port uint32) []string {
	var out []string
	for _, c := range p.InboundChains(port) {
		out = append(out, c.RBAC...)
	}
	return out
}

// callerNamespaces are the namespaces whose identities an RBAC config
// names (Istio matches a namespace as a principal regex .*/ns/NAME/.*).
func callerNamespaces(rbac string) string {
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`/ns/([a-z0-9-]+)/`).FindAllStringSubmatch(rbac, -1) {
		seen[m[1]] = true
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), ",")
}

// holdsApplication: the injector made the application wait for the proxy —
// a native sidecar (an init container that always restarts, started
// before the app) or, for a classic sidecar, istio-proxy first with the
// pilot-agent wait hook.
func holdsApplication(p corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == "istio-proxy" && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].Name != "istio-proxy" {
		return false
	}
	l := p.Spec.Containers[0].Lifecycle
	return l != nil && l.PostStart != nil && l.PostStart.Exec != nil && strings.Contains(strings.Join(l.PostStart.Exec.Command, " "), "wait")
}

// rbacPrincipals reads the RBAC filters istiod generated: the principals
// their enforced rules admit, and those of their shadow (dry-run) rules.
func rbacPrincipals(filters []string) (rules, shadow []string) {
	for _, f := range filters {
		var cfg map[string]any
		if json.Unmarshal([]byte(f), &cfg) != nil {
			continue
		}
		if r, ok := cfg["rules"]; ok {
			rules = append(rules, spiffeIDs(r)...)
		}
		if r, ok := cfg["shadowRules"]; ok {
			shadow = append(shadow, spiffeIDs(r)...)
		}
	}
	slices.Sort(rules)
	slices.Sort(shadow)
	return slices.Compact(rules), slices.Compact(shadow)
}

func spiffeIDs(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "spiffe://") {
			out = append(out, x)
		}
	case map[string]any:
		for _, e := range x {
			out = append(out, spiffeIDs(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, spiffeIDs(e)...)
		}
	}
	return out
}
