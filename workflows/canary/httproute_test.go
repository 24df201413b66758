package canary

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
)

// The team's HTTPRoute for reviews, attached to the Service (mesh): an
// admin rule with an ExtensionRef, the default rule with a header modifier
// and a timeout, and a legacy rule to another Service.
const teamHR = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo, labels: {app.kubernetes.io/instance: bookinfo}}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: admin
    matches: [{path: {type: PathPrefix, value: /admin}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.io, kind: Auth, name: admin}}]
    backendRefs: [{name: admin, port: 8080}]
  - name: reviews-default
    matches: [{path: {type: PathPrefix, value: /}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-team, value: reviews}]}}]
    timeouts: {request: 3s}
    backendRefs: [{group: "", kind: Service, name: reviews, port: 9080, weight: 1}]
  - name: legacy
    matches: [{headers: [{name: x-legacy, value: "1"}]}]
    backendRefs: [{name: reviews-legacy, port: 9080}]
`

func gatewayReviews(t *testing.T, hr string) *target {
	t.Helper()
	tg := reviews(t, "", "")
	tg.GatewayAPI = true
	tg.Ports = []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080), Protocol: corev1.ProtocolTCP}}
	tg.Services = map[string]*corev1.Service{"reviews": {Spec: corev1.ServiceSpec{Selector: tg.Selector}}}
	if hr != "" {
		tg.HR = decode(t, hr)
	}
	return tg
}

var noTerminal = func() *cli.Context {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	return cli.New(streams)
}()

func gatewayStart(t *testing.T, tg *target, mutate func(*start)) *pipeline.Plan {
	t.Helper()
	return startPlan(t, tg, func(o *start) {
		o.API = APIGateway
		if mutate != nil {
			mutate(o)
		}
		if err := o.chooseRoute(noTerminal); err != nil {
			t.Fatal(err)
		}
	})
}

// continueGateway is the target as the next command reads it after p.
func continueGateway(t *testing.T, tg *target, p *pipeline.Plan) *target {
	t.Helper()
	next := *tg
	next.Services = map[string]*corev1.Service{}
	for k, v := range tg.Services {
		next.Services[k] = v
	}
	for _, u := range p.Objects() {
		switch u.GetKind() {
		case "HTTPRoute":
			next.HR = u
		case "Service":
			var svc corev1.Service
			b, _ := json.Marshal(u.Object)
			if err := json.Unmarshal(b, &svc); err != nil {
				t.Fatal(err)
			}
			next.Services[svc.Name] = &svc
		}
	}
	c := &common{Service: "reviews", VersionLabel: "version", t: &next}
	if err := parseState(c); err != nil {
		t.Fatal(err)
	}
	return c.t
}

func rulesByName(t *testing.T, hr *unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, r := range hrRules(hr) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[hrRuleName(r, i)] = string(b)
	}
	return out
}

func TestGatewayPlansGolden(t *testing.T) {
	golden := func(t *testing.T, name string, p *pipeline.Plan) {
		t.Helper()
		plantest.Golden(t, filepath.Join("testdata", name+".golden"), plantest.Render(p))
	}
	t.Run("new", func(t *testing.T) {
		golden(t, "gateway-start-new", gatewayStart(t, gatewayReviews(t, ""), nil))
	})
	t.Run("merge-keeps-other-rules", func(t *testing.T) {
		tg := gatewayReviews(t, teamHR)
		p := gatewayStart(t, tg, nil)
		golden(t, "gateway-start-merge", p)
		before, after := rulesByName(t, tg.HR), rulesByName(t, continueGateway(t, tg, p).HR)
		for _, name := range []string{"admin", "legacy"} {
			if before[name] != after[name] {
				t.Errorf("rule %s changed:\n%s\n%s", name, before[name], after[name])
			}
		}
		if !strings.Contains(after["reviews-default"], `"requestHeaderModifier"`) || !strings.Contains(after["reviews-default"], `"timeouts"`) {
			t.Errorf("the split rule lost its filters or timeouts: %s", after["reviews-default"])
		}
	})
	t.Run("header", func(t *testing.T) {
		golden(t, "gateway-start-header", gatewayStart(t, gatewayReviews(t, teamHR), func(o *start) { o.Weight, o.Header = 0, "x-canary=true" }))
	})
	t.Run("mirror", func(t *testing.T) {
		golden(t, "gateway-start-mirror", gatewayStart(t, gatewayReviews(t, teamHR), func(o *start) { o.Weight, o.Mirror = 0, 20 }))
	})
	t.Run("step-promote-cleanup", func(t *testing.T) {
		tg0 := gatewayReviews(t, teamHR)
		tg := continueGateway(t, tg0, gatewayStart(t, tg0, func(o *start) { o.Header = "x-canary=true" }))
		st := &step{To: -1, gate: gate{Skip: true}}
		st.common = common{Service: "reviews", VersionLabel: "version", t: tg}
		p, err := st.Plan(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "gateway-step-25", p)
		tg = continueGateway(t, tg, p)
		pr := &promote{common: common{Service: "reviews", VersionLabel: "version", t: tg}, Cleanup: true}
		if p, err = pr.Plan(nil, nil); err != nil {
			t.Fatal(err)
		}
		golden(t, "gateway-promote-cleanup", p)
		end := continueGateway(t, tg, p)
		if end.State != nil {
			t.Fatal("promote --cleanup must end the canary")
		}
		before, after := rulesByName(t, tg0.HR), rulesByName(t, end.HR)
		if len(after) != 3 || before["admin"] != after["admin"] || before["legacy"] != after["legacy"] {
			t.Fatalf("other rules changed or header rule left:\n%v\n%v", before, after)
		}
	})
	t.Run("abort", func(t *testing.T) {
		tg := continueGateway(t, gatewayReviews(t, ""), gatewayStart(t, gatewayReviews(t, ""), func(o *start) { o.Mirror = 5 }))
		p, err := abortPlan(tg, tg.State)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "gateway-abort", p)
		var deleted []string
		for _, ph := range p.Phases {
			for _, c := range ph.Changes {
				if c.Op == pipeline.Delete {
					deleted = append(deleted, c.Object.GetName())
				}
			}
		}
		if strings.Join(deleted, ",") != "reviews-v2" || p.Phases[len(p.Phases)-1].Changes[0].Op != pipeline.Delete {
			t.Fatalf("abort deletes the canary's Service after the routes stop using it, got %v", deleted)
		}
	})
}

func TestGatewayBadInput(t *testing.T) {
	twoRules := strings.Replace(teamHR, "backendRefs: [{name: reviews-legacy, port: 9080}]", "backendRefs: [{name: reviews, port: 9080}]", 1)
	cases := []struct {
		name string
		tg   func() *target
		o    func(*start)
		want string
	}{
		{"several rules", func() *target { return gatewayReviews(t, twoRules) }, nil,
			"rules reviews-default, legacy of HTTPRoute reviews send to service reviews: name the one that carries the split with --rule"},
		{"unknown rule", func() *target { return gatewayReviews(t, twoRules) }, func(o *start) { o.Rule = "admin" },
			"--rule admin: no rule of HTTPRoute reviews of that name (or number) sends to service reviews"},
		{"no Gateway API", func() *target { tg := gatewayReviews(t, ""); tg.GatewayAPI = false; return tg }, nil,
			"the cluster serves no HTTPRoutes: install the Gateway API CRDs (kubectl mesh install --gateway-api) or use --api istio"},
		{"VirtualService routes it", func() *target { tg := gatewayReviews(t, ""); tg.VS = decode(t, teamVS); return tg }, nil,
			"VirtualService reviews-routes routes service reviews: an HTTPRoute beside it would mix the two APIs"},
		{"HTTPRoute routes it", func() *target { return gatewayReviews(t, teamHR) }, func(o *start) { o.API = APIIstio },
			"HTTPRoute reviews routes service reviews: a VirtualService beside it would mix the two APIs"},
		{"unknown route", func() *target { return gatewayReviews(t, teamHR) }, func(o *start) { o.Route = "other" },
			"--route other: no HTTPRoute of that name routes service reviews (found: reviews)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newStart()
			o.Service, o.VersionLabel, o.Stable, o.Canary, o.t, o.API = "reviews", "version", "v1", "v2", tc.tg(), APIGateway
			if tc.o != nil {
				tc.o(o)
			}
			err := o.chooseRoute(noTerminal)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line containing %q", err, tc.want)
			}
		})
	}
	t.Run("rule by number", func(t *testing.T) {
		o := newStart()
		o.Service, o.VersionLabel, o.Stable, o.Canary, o.t, o.Rule = "reviews", "version", "v1", "v2", gatewayReviews(t, twoRules), "3"
		if err := o.chooseRoute(noTerminal); err != nil || o.rule != 2 || o.API != APIGateway {
			t.Fatalf("--rule 3: %v, rule %d, api %s", err, o.rule, o.API)
		}
	})
	t.Run("version Service taken", func(t *testing.T) {
		tg := gatewayReviews(t, teamHR)
		tg.Services["reviews-v2"] = &corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "ratings"}}}
		o := newStart()
		o.Service, o.VersionLabel, o.Stable, o.Canary, o.t, o.API = "reviews", "version", "v1", "v2", tg, APIGateway
		if err := o.chooseRoute(noTerminal); err != nil {
			t.Fatal(err)
		}
		_, err := o.build()
		if err == nil || !strings.Contains(err.Error(), "service reviews-v2 already exists and selects app=ratings, not the version=v2 pods of reviews") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("team's own version Service is reused and kept", func(t *testing.T) {
		tg := gatewayReviews(t, teamHR)
		tg.Services["reviews-v2"] = &corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews", "version": "v2"}}}
		p := gatewayStart(t, tg, nil)
		for _, u := range p.Objects() {
			if u.GetKind() == "Service" && u.GetName() == "reviews-v2" {
				t.Fatal("an existing Service that selects the version must not be re-applied")
			}
		}
		next := continueGateway(t, tg, p)
		ab, err := abortPlan(next, next.State)
		if err != nil {
			t.Fatal(err)
		}
		for _, ph := range ab.Phases {
			for _, c := range ph.Changes {
				if c.Op == pipeline.Delete {
					t.Fatalf("the team's Service %s must not be deleted", c.Object.GetName())
				}
			}
		}
	})
	t.Run("version name", func(t *testing.T) {
		if n, err := versionServiceName("reviews", "1.2_RC"); err != nil || n != "reviews-1-2-rc" {
			t.Fatalf("%q %v", n, err)
		}
		if _, err := versionServiceName(strings.Repeat("a", 60), "v1234"); err == nil || strings.Contains(err.Error(), "\n") {
			t.Fatalf("a too long name must be one line: %v", err)
		}
	})
}

func TestAttached(t *testing.T) {
	hr := func(parents string) *unstructured.Unstructured {
		return decode(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: bookinfo}\nspec:\n  parentRefs: "+parents+"\n")
	}
	cases := map[string]bool{
		`[{group: "", kind: Service, name: reviews}]`:                       true,  // mesh (GAMMA)
		`[{name: ingress}]`:                                                 true,  // a Gateway, by the defaults
		`[{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]`:     true,  // ingress
		`[{group: "", kind: Service, name: ratings}]`:                       false, // another Service's mesh route
		`[{group: "", kind: Service, name: reviews, namespace: other}]`:     false,
		`[{group: example.io, kind: Gateway, name: gw}]`:                    false,
		`[{group: gateway.networking.k8s.io, kind: ListenerSet, name: x}]`:  true,
		`[{group: gateway.networking.k8s.io, kind: GatewayClass, name: x}]`: false,
	}
	for parents, want := range cases {
		if got := attached(hr(parents), "reviews"); got != want {
			t.Errorf("%s: attached %v, want %v", parents, got, want)
		}
	}
}
