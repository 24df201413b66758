package mtls

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// base is a namespace "shop" in the mesh with two injected workloads
// behind Services (api: Service port 80 → container port 8080).
const base = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop, labels: {app: api}, annotations: {sidecar.istio.io/status: "{}"}}
spec: {containers: [{name: app, image: a, ports: [{containerPort: 8080}]}, {name: istio-proxy, image: p}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}, annotations: {sidecar.istio.io/status: "{}"}}
spec: {containers: [{name: app, image: a, ports: [{containerPort: 3000}]}, {name: istio-proxy, image: p}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 3000}]}
`

// snapshot builds what read() would return from a YAML fixture. Pods
// become Deployments named by their app label (StatefulSet when the pod
// has a "statefulset" label).
func snapshot(t *testing.T, docs string) *Snapshot {
	t.Helper()
	objs, err := manifest.Decode([]byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{Root: "istio-system", Namespaces: map[string]map[string]string{}}
	byRef := map[string]*mesh.Workload{}
	var order []string
	for i, u := range objs {
		u.SetCreationTimestamp(metav1.NewTime(now.Add(time.Duration(i) * time.Minute)))
		switch u.GetKind() {
		case "Namespace":
			s.Namespaces[u.GetName()] = u.GetLabels()
		case "PeerAuthentication":
			p, err := mesh.ParsePeerAuth(u)
			if err != nil {
				t.Fatal(err)
			}
			s.PAs = append(s.PAs, p)
		case "DestinationRule":
			s.DRs = append(s.DRs, u)
		case "AuthorizationPolicy":
			s.AuthZ = append(s.AuthZ, u)
		case "Service":
			var svc corev1.Service
			convert(t, u, &svc)
			s.Services = append(s.Services, svc)
		case "ValidatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			for _, h := range hooks {
				svc, _, _ := unstructured.NestedStringMap(h.(map[string]any), "clientConfig", "service")
				s.Backends = append(s.Backends, backend("ValidatingWebhookConfiguration/"+u.GetName(), svc["namespace"], svc["name"], nil))
			}
		case "Pod":
			pod := &corev1.Pod{}
			convert(t, u, pod)
			kind := "Deployment"
			if pod.Labels["statefulset"] != "" {
				kind = "StatefulSet"
			}
			key := pod.Namespace + "/" + pod.Labels["app"]
			if byRef[key] == nil {
				byRef[key] = &mesh.Workload{Namespace: pod.Namespace, Kind: kind, Name: pod.Labels["app"]}
				order = append(order, key)
			}
			byRef[key].Pods = append(byRef[key].Pods, mesh.ClassifyPod(pod))
		default:
			t.Fatalf("fixture kind %s not handled", u.GetKind())
		}
	}
	for _, k := range order {
		s.Workloads = append(s.Workloads, *byRef[k])
	}
	return s
}

func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

// plan builds a plan for shop from a fixture, with exceptions resolved
// to the app label (what the controller's matchLabels would be).
func plan(t *testing.T, docs, stage string, exceptions ...string) (*migration, *pipeline.Plan, error) {
	t.Helper()
	o := New()
	o.Namespace, o.root, o.Stage, o.Exceptions = "shop", "istio-system", stage, exceptions
	o.snap = snapshot(t, docs)
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	selectors := map[exception]map[string]string{}
	for _, e := range o.exceptions {
		selectors[e] = map[string]string{"app": e.Workload}
	}
	return o.build(selectors, now)
}

func ids(cs []pipeline.Check) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s:%s", c.ID, c.Severity))
	}
	slices.Sort(out)
	return out
}

// TestChecks: each fixture adds one hazard to the base namespace and must
// raise exactly the expected findings, at the expected severity.
func TestChecks(t *testing.T) {
	cases := []struct {
		name, docs string
		exceptions []string
		want       []string
	}{
		{"clean namespace", "", nil, nil},
		{"pod without sidecar", `
apiVersion: v1
kind: Pod
metadata: {name: old-1, namespace: shop, labels: {app: old}}
spec: {containers: [{name: app, image: a}]}`, nil, []string{"MTLS-NO-SIDECAR:Error"}},
		{"DR with DISABLE for a short host", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec: {host: api, trafficPolicy: {tls: {mode: DISABLE}}}`, nil, []string{"MTLS-DR-TLS:Error"}},
		{"DR with SIMPLE on a port, wildcard host, other namespace", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all-shop, namespace: other}
spec: {host: "*.shop.svc.cluster.local", trafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}]}}`, nil, []string{"MTLS-DR-TLS:Error"}},
		{"DR with MUTUAL in a subset", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: other}
spec: {host: api.shop.svc.cluster.local, subsets: [{name: v1, labels: {v: "1"}, trafficPolicy: {tls: {mode: MUTUAL}}}]}`, nil, []string{"MTLS-DR-TLS:Error"}},
		{"DR for another namespace, ISTIO_MUTUAL, or exported nowhere", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x, namespace: other}
spec: {host: api.other.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: second, namespace: shop}
spec: {host: api, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: third, namespace: shop}
spec: {host: api, exportTo: ["~"], trafficPolicy: {tls: {mode: DISABLE}}}`, nil, nil},
		{"webhook served from the namespace", `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: api-hook}
webhooks: [{name: a.b.c, clientConfig: {service: {namespace: shop, name: api}}}]`, nil, []string{"MTLS-APISERVER-BACKEND:Error"}},
		{"webhook port kept PERMISSIVE by an exception", `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: api-hook}
webhooks: [{name: a.b.c, clientConfig: {service: {namespace: shop, name: api, port: 80}}}]
---
apiVersion: v1
kind: Service
metadata: {name: api-hook, namespace: shop}
spec: {selector: {app: api}, ports: [{port: 443, targetPort: 8080}]}`, []string{"api:8080"}, nil},
		{"HTTP probe not rewritten", `
apiVersion: v1
kind: Pod
metadata: {name: probe-1, namespace: shop, labels: {app: probe}, annotations: {sidecar.istio.io/status: "{}", sidecar.istio.io/rewriteAppHTTPProbers: "false"}}
spec: {containers: [{name: app, image: a, readinessProbe: {httpGet: {port: 8080, path: /}}}, {name: istio-proxy, image: p}]}`, nil, []string{"MTLS-PROBE-REWRITE:Error"}},
		{"HTTP probe rewritten to the sidecar", `
apiVersion: v1
kind: Pod
metadata: {name: probe-1, namespace: shop, labels: {app: probe}, annotations: {sidecar.istio.io/status: "{}"}}
spec: {containers: [{name: app, image: a, readinessProbe: {httpGet: {port: 15020, path: /app-health/app/readyz}}}, {name: istio-proxy, image: p}]}`, nil, nil},
		{"TCP probe", `
apiVersion: v1
kind: Pod
metadata: {name: probe-1, namespace: shop, labels: {app: probe}, annotations: {sidecar.istio.io/status: "{}"}}
spec: {containers: [{name: app, image: a, livenessProbe: {tcpSocket: {port: 5432}}}, {name: istio-proxy, image: p}]}`, nil, []string{"MTLS-PROBE-REWRITE:Warning"}},
		{"excluded inbound ports", `
apiVersion: v1
kind: Pod
metadata: {name: ex-1, namespace: shop, labels: {app: ex}, annotations: {sidecar.istio.io/status: "{}", traffic.sidecar.istio.io/excludeInboundPorts: "9100"}}
spec: {containers: [{name: app, image: a}, {name: istio-proxy, image: p}]}`, nil, []string{"MTLS-EXCLUDED-PORTS:Warning"}},
		{"headless service and statefulset", `
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db, statefulset: "yes"}, annotations: {sidecar.istio.io/status: "{}"}}
spec: {containers: [{name: app, image: a, ports: [{containerPort: 5432}]}, {name: istio-proxy, image: p}]}`, nil, []string{"MTLS-HEADLESS:Warning"}},
		{"authorization policy on principals", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: shop}
spec: {rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}`, nil, []string{"MTLS-AUTHZ-PEER:Info"}},
		{"authorization policy without peer identity", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: paths, namespace: shop}
spec: {rules: [{to: [{operation: {paths: [/health]}}]}]}`, nil, nil},
		{"portLevelMtls without selector", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ports, namespace: shop}
spec: {portLevelMtls: {"8080": {mode: DISABLE}}}`, nil, []string{"MTLS-PORT-LEVEL:Error"}},
		{"portLevelMtls on a Service port", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api, namespace: shop}
spec: {selector: {matchLabels: {app: api}}, portLevelMtls: {"80": {mode: PERMISSIVE}}}`, nil, []string{"MTLS-PORT-LEVEL:Error"}},
		{"workload policy keeps DISABLE", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}`, nil, []string{"MTLS-WORKLOAD-OVERRIDE:Info"}},
		{"two namespace-wide policies", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}`, nil, []string{"MTLS-PA-CONFLICT:Error"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, p, err := plan(t, base+"---"+tc.docs, StageStrict, tc.exceptions...)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Checks); !slices.Equal(got, tc.want) {
				t.Fatalf("checks = %v, want %v", got, tc.want)
			}
			// The permissive stage shows the same findings without blocking
			// (conflicting policies excepted: they make any edit ambiguous).
			if len(tc.exceptions) > 0 {
				return
			}
			_, p, err = plan(t, base+"---"+tc.docs, StagePermissive)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range p.Checks {
				if c.Severity != pipeline.Info && c.ID != CheckConflict {
					t.Fatalf("permissive stage: %s is %s, want Info", c.ID, c.Severity)
				}
			}
		})
	}
}

// TestTrafficChecks: plaintext callers block and are named; callers of a
// workload with a PERMISSIVE exception are reported, not blocking; no
// traffic at all is a warning, not a pass.
func TestTrafficChecks(t *testing.T) {
	legacy := telemetry.Flow{Source: "legacy", SourceNamespace: "old", Dest: "api", DestNamespace: "shop", Requests: 12}
	unknown := telemetry.Flow{Source: "unknown", Dest: "web", DestNamespace: "shop", Connections: 3}
	good := telemetry.Flow{Source: "web", SourceNamespace: "shop", Dest: "api", DestNamespace: "shop", MutualTLS: true, Requests: 1000}
	cases := []struct {
		name       string
		flows      []telemetry.Flow
		exceptions []string
		want       []string
		objects    string
	}{
		{"only mTLS", []telemetry.Flow{good}, nil, nil, ""},
		{"no traffic", nil, nil, []string{"MTLS-NO-TRAFFIC:Warning"}, ""},
		{"plaintext callers named", []telemetry.Flow{good, legacy, unknown}, nil, []string{"MTLS-PLAINTEXT:Error"},
			"old/legacy → shop/api (12 requests) | unknown caller without a sidecar → shop/web (3 connections)"},
		{"covered by an exception", []telemetry.Flow{good, legacy}, []string{"api:8080"}, []string{"MTLS-PLAINTEXT:Info"},
			"old/legacy → shop/api (12 requests), kept PERMISSIVE on port 8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _, err := plan(t, base, StageStrict, tc.exceptions...)
			if err != nil {
				t.Fatal(err)
			}
			cs := m.trafficChecks(tc.flows, "http://prom", "7d")
			if got := ids(cs); !slices.Equal(got, tc.want) {
				t.Fatalf("checks = %v, want %v", got, tc.want)
			}
			if tc.objects != "" && strings.Join(cs[0].Objects, " | ") != tc.objects {
				t.Fatalf("objects = %q, want %q", strings.Join(cs[0].Objects, " | "), tc.objects)
			}
		})
	}
}

// TestPlanGolden: the policies and report for each stage.
func TestPlanGolden(t *testing.T) {
	existing := `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop, labels: {team: shop}}
spec: {mtls: {mode: PERMISSIVE}}`
	cases := []struct {
		name, docs, stage string
		exceptions        []string
	}{
		{"permissive-new-policy", "", "", nil},
		{"strict-edits-existing-policy", existing, "", nil},
		{"strict-with-exceptions", existing, StageStrict, []string{"api:8080", "web:3000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, p, err := plan(t, base+"---"+tc.docs, tc.stage, tc.exceptions...)
			if err != nil {
				t.Fatal(err)
			}
			plantest.Golden(t, filepath.Join("testdata", tc.name+".golden"), plantest.Render(p))
		})
	}
}

func TestValidate(t *testing.T) {
	disabled := `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}`
	if _, _, err := plan(t, base+"---"+disabled, StageStrict); err == nil || !strings.Contains(err.Error(), "run --stage permissive first") {
		t.Fatalf("DISABLE → STRICT must be refused, got %v", err)
	}
	if _, p, err := plan(t, base+"---"+disabled, ""); err != nil || p.Title != "PERMISSIVE for namespace shop" {
		t.Fatalf("from DISABLE the next stage is PERMISSIVE: %v %v", err, p)
	}
	existing := `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api-pa, namespace: shop}
spec: {selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}}`
	if _, _, err := plan(t, base+"---"+existing, StageStrict, "api:8080"); err == nil || !strings.Contains(err.Error(), "already selects api") {
		t.Fatalf("a second workload policy must be refused, got %v", err)
	}
}

func TestParseException(t *testing.T) {
	cases := []struct {
		in   string
		want exception
		err  string
	}{
		{"api:8080", exception{"shop", "api", 8080}, ""},
		{"other/api:80", exception{"other", "api", 80}, ""},
		{"api", exception{}, "no port"},
		{"api:", exception{}, "port must be"},
		{"api:0", exception{}, "port must be"},
		{"api:65536", exception{}, "port must be"},
		{"API:80", exception{}, "workload is not a valid name"},
		{"Bad NS/api:80", exception{}, "namespace is not a valid name"},
		{":80", exception{}, "workload is not a valid name"},
		{"a\nb:80", exception{}, `a\nb:80`},
	}
	for _, tc := range cases {
		got, err := parseException(tc.in, "shop")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: error %v, want one line containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseException(f *testing.F) {
	for _, s := range []string{"api:8080", "ns/api:80", "a:b:c", "/:", "api:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseException(s, "shop")
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error for %q: %v", s, err)
			}
			return
		}
		if e.Port == 0 || e.Workload == "" || e.Namespace == "" {
			t.Fatalf("accepted %q as %+v", s, e)
		}
	})
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"7d", "1w", "90m", "0s", "-1d", "1y2w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := telemetry.ParseWindow("--window", s)
		if err == nil && d <= 0 {
			t.Fatalf("accepted non-positive window %q", s)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("multi-line error: %v", err)
		}
	})
}
