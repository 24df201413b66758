package onboard

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func base() *Options {
	o := New(nil)
	o.Team, o.Namespace, o.Revision, o.MTLS, o.root = "payments", "payments", "1-31", mesh.ModeStrict, "istio-system"
	o.ingressSA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	return o
}

func decodeAll(t *testing.T, y string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifest.Decode([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestBundlesGolden(t *testing.T) {
	t.Run("new-namespace", func(t *testing.T) {
		o := base()
		o.AllowFrom = []string{"same-namespace", "ingress", "namespace:frontend", "sa:batch/reporter"}
		o.EgressTo = []string{"shared"}
		o.TeamGroup = "payments-devs"
		plantest.Golden(t, filepath.Join("testdata", "new-namespace.golden"), plantest.Render(o.build(now, nil)))
	})
	t.Run("adopted-with-legacy-workloads", func(t *testing.T) {
		o := base()
		o.MTLS = mesh.ModePermissive
		o.live = decodeAll(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {istio-injection: enabled, owner: legacy}}\n")[0]
		o.running = 3
		o.workloadLabels = []map[string]string{{"app": "ledger", "pod-template-hash": "abc"}, {"app": "web"}}
		o.mtlsChecks = []pipeline.Check{{ID: "MTLS-NO-SIDECAR", Severity: pipeline.Info, Message: "before STRICT: 2 workload(s) run pods without a sidecar"}}
		existing := decodeAll(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-only, namespace: payments}
spec:
  selector: {matchLabels: {app: ledger}}
  rules: [{from: [{source: {namespaces: [web]}}, {source: {principals: [cluster.local/ns/web/sa/web]}}]}]
`)
		plantest.Golden(t, filepath.Join("testdata", "adopted.golden"), plantest.Render(o.build(now, existing)))
	})
	t.Run("jwt-and-external-host", func(t *testing.T) {
		o := base()
		o.AllowFrom = []string{"ingress"}
		o.JWTIssuer, o.JWKSURI, o.JWTAudiences = "https://idp.example.com", "https://idp.example.com/jwks", []string{"payments"}
		o.Host, o.HostService = "pay.example.com", "web:8080"
		o.AuthzDryRun = true
		o.jwksErr = errors.New("dial tcp: lookup idp.example.com: no such host")
		plantest.Golden(t, filepath.Join("testdata", "jwt-external-host.golden"), plantest.Render(o.build(now, nil)))
	})
}

// TestBundleNeverAllowsAll: whatever the callers, no ALLOW rule is empty
// and allow-nothing comes in the same phase as the ALLOW rules.
func TestBundleNeverAllowsAll(t *testing.T) {
	for _, callers := range [][]string{{"same-namespace"}, {"ingress"}, {"namespace:a", "sa:b/c"}} {
		o := base()
		o.AllowFrom = callers
		p := o.build(now, nil)
		for _, c := range p.Checks {
			if c.ID == LintAllowAll {
				t.Fatalf("%v: the bundle allows everything", callers)
			}
		}
		var phase []string
		for _, ph := range p.Phases {
			for _, ch := range ph.Changes {
				if ch.Object.GetKind() == "AuthorizationPolicy" {
					phase = append(phase, ph.Name)
				}
			}
		}
		n := len(phase)
		if phases := slices.Compact(phase); n < 2 || len(phases) != 1 || phases[0] != "security" {
			t.Fatalf("%v: %d policies in phases %v", callers, n, phases)
		}
	}
}

func TestLint(t *testing.T) {
	cases := []struct {
		name, mode, policies string
		workloads            []map[string]string
		want                 []string
	}{
		{"allow-all", mesh.ModeStrict, `spec: {rules: [{}]}`, nil, []string{"AUTHZ-ALLOW-ALL:Error"}},
		{"positive allow", mesh.ModeStrict, `spec: {rules: [{from: [{source: {namespaces: [a]}}]}]}`, nil, nil},
		{"or written for and", mesh.ModeStrict, `spec: {rules: [{from: [{source: {namespaces: [a]}}, {source: {principals: [x]}}]}]}`, nil, []string{"AUTHZ-OR-NOT-AND:Warning"}},
		{"same field twice is a real or", mesh.ModeStrict, `spec: {rules: [{from: [{source: {namespaces: [a]}}, {source: {namespaces: [b]}}]}]}`, nil, nil},
		{"L7 deny", mesh.ModeStrict, `spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}`, nil, []string{"AUTHZ-DENY-L7-ON-TCP:Warning"}},
		{"L7 deny scoped to callers", mesh.ModeStrict, `spec: {action: DENY, rules: [{from: [{source: {principals: [x], notRequestPrincipals: ["*"]}}]}]}`, nil, []string{"AUTHZ-DENY-L7-ON-TCP:Info"}},
		{"L4 deny", mesh.ModeStrict, `spec: {action: DENY, rules: [{to: [{operation: {ports: ["22"]}}]}]}`, nil, nil},
		{"peer rules while permissive", mesh.ModePermissive, `spec: {rules: [{from: [{source: {principals: [x]}}]}]}`, nil, []string{"AUTHZ-PEER-WITHOUT-STRICT:Warning"}},
		{"uncovered workload", mesh.ModeStrict, `spec: {selector: {matchLabels: {app: a}}, rules: [{from: [{source: {namespaces: [x]}}]}]}`,
			[]map[string]string{{"app": "a"}, {"app": "b"}}, []string{"AUTHZ-UNCOVERED-WORKLOADS:Warning"}},
		{"namespace-wide allow covers all", mesh.ModeStrict, `spec: {rules: [{from: [{source: {namespaces: [x]}}]}]}`,
			[]map[string]string{{"app": "a"}, {"app": "b"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := decodeAll(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"+tc.policies)
			var got []string
			for _, c := range lint("ns", tc.mode, pol, tc.workloads) {
				got = append(got, fmt.Sprintf("%s:%s", c.ID, c.Severity))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSyntax(t *testing.T) {
	cases := []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.Team = "Payments" }, `invalid team "Payments"`},
		{func(o *Options) { o.Namespace = "pay_ments" }, `invalid namespace "pay_ments"`},
		{func(o *Options) { o.MTLS = "disable" }, `invalid --mtls "disable"`},
		{func(o *Options) { o.AllowFrom = []string{"everyone"} }, `invalid --allow-from "everyone"`},
		{func(o *Options) { o.AllowFrom = []string{"sa:batch"} }, "use sa:NAMESPACE/SERVICEACCOUNT"},
		{func(o *Options) { o.AllowFrom = nil }, "--allow-from is empty"},
		{func(o *Options) { o.JWTIssuer, o.JWKSURI = "http://idp", "https://idp/jwks" }, "must be https"},
		{func(o *Options) { o.JWTIssuer, o.JWKSURI = "https://idp", "::not a url" }, "not a URL"},
		{func(o *Options) { o.JWTIssuer = "https://idp" }, "go together"},
		{func(o *Options) { o.Host, o.HostService = "pay..example.com", "web:80" }, `invalid --host "pay..example.com"`},
		{func(o *Options) { o.Host, o.HostService = "localhost", "web:80" }, `invalid --host "localhost"`},
		{func(o *Options) { o.Host = "pay.example.com" }, "--host needs --host-service SERVICE:PORT"},
		{func(o *Options) { o.Host, o.HostService = "pay.example.com", "web:http" }, "--host needs --host-service"},
		{func(o *Options) { o.HostService = "web:80" }, "--host-service needs --host"},
		{func(o *Options) { o.EgressTo = []string{"Shared"} }, `invalid --egress-to "Shared"`},
	}
	for _, tc := range cases {
		o := base()
		tc.mutate(o)
		err := o.syntax()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("got %v, want one line containing %q", err, tc.want)
		}
	}
	o := base()
	o.Host, o.HostService = "*.example.com", "web:8080"
	if err := o.syntax(); err != nil {
		t.Fatalf("a wildcard host is valid: %v", err)
	}
}

func FuzzParseCaller(f *testing.F) {
	for _, s := range []string{"same-namespace", "ingress", "namespace:a", "sa:a/b", "sa:", "namespace:", "sa:a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCaller(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		if c.kind == "" || (c.kind == "namespace" || c.kind == "sa") && c.value == "" {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}
