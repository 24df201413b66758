package canary

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// The team's own routing for reviews: a test-user route first, then a
// catch-all with retries and a timeout; a DestinationRule with a traffic
// policy and a subset for v1 under its own name.
const teamVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-routes, namespace: bookinfo, labels: {app.kubernetes.io/instance: bookinfo}}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v1-stable}}]
  - timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1s}
    route: [{destination: {host: reviews, subset: v1-stable, port: {number: 9080}}}]
`

const teamDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool: {http: {http1MaxPendingRequests: 100}}
  subsets:
  - {name: v1-stable, labels: {version: v1}}
`

func decode(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	if y == "" {
		return nil
	}
	objs, err := manifest.Decode([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0]
}

func reviews(t *testing.T, dr, vs string) *target {
	t.Helper()
	return &target{Namespace: "bookinfo", Service: "reviews", Selector: map[string]string{"app": "reviews"},
		Versions: map[string]int{"v1": 2, "v2": 1, "v3": 1}, DR: decode(t, dr), VS: decode(t, vs)}
}

func startPlan(t *testing.T, tg *target, mutate func(*start)) *pipeline.Plan {
	t.Helper()
	o := newStart()
	o.Service, o.VersionLabel, o.Stable, o.Canary, o.t = "reviews", "version", "v1", "v2", tg
	if mutate != nil {
		mutate(o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := o.build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// planned returns the objects of a plan in order, to continue from.
func planned(p *pipeline.Plan) (dr, vs *unstructured.Unstructured) {
	for _, u := range p.Objects() {
		switch u.GetKind() {
		case "DestinationRule":
			dr = u
		case "VirtualService":
			vs = u
		}
	}
	return dr, vs
}

// continueFrom is the target as the next command would read it after plan.
func continueFrom(t *testing.T, tg *target, p *pipeline.Plan) *target {
	t.Helper()
	dr, vs := planned(p)
	next := *tg
	if dr != nil {
		next.DR = dr
	}
	if vs != nil {
		next.VS = vs
	}
	c := &common{Service: "reviews", VersionLabel: "version", t: &next}
	if err := parseState(c); err != nil {
		t.Fatal(err)
	}
	return c.t
}

func TestPlansGolden(t *testing.T) {
	golden := func(t *testing.T, name string, p *pipeline.Plan) {
		t.Helper()
		plantest.Golden(t, filepath.Join("testdata", name+".golden"), plantest.Render(p))
	}
	t.Run("new", func(t *testing.T) {
		golden(t, "start-new", startPlan(t, reviews(t, "", ""), nil))
	})
	t.Run("merge", func(t *testing.T) {
		golden(t, "start-merge", startPlan(t, reviews(t, teamDR, teamVS), nil))
	})
	t.Run("header", func(t *testing.T) {
		golden(t, "start-header", startPlan(t, reviews(t, teamDR, teamVS), func(o *start) { o.Weight, o.Header = 0, "x-canary=true" }))
	})
	t.Run("mirror", func(t *testing.T) {
		golden(t, "start-mirror", startPlan(t, reviews(t, "", ""), func(o *start) { o.Weight, o.Mirror = 0, 20 }))
	})
	t.Run("step-promote-cleanup", func(t *testing.T) {
		tg := continueFrom(t, reviews(t, teamDR, teamVS), startPlan(t, reviews(t, teamDR, teamVS), func(o *start) { o.Header = "x-canary=true" }))
		st := &step{To: -1, PauseFor: time.Second, gate: gate{Skip: true}}
		st.common = common{Service: "reviews", VersionLabel: "version", t: tg}
		p, err := st.Plan(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "step-25", p)
		// At the end of its steps a first step says so, as data.
		end := &step{To: 25, first: true, gate: gate{Skip: true}}
		end.common = common{Service: "reviews", VersionLabel: "version", t: continueFrom(t, tg, p)}
		if done, err := end.Plan(nil, nil); err != nil || done == nil || len(done.Phases) != 0 || !strings.Contains(done.Done, "is at 25%, the end of its plan") {
			t.Fatalf("step at its end: %+v, %v", done, err)
		}
		tg = continueFrom(t, tg, p)
		pr := &promote{common: common{Service: "reviews", VersionLabel: "version", t: tg}, Cleanup: true}
		p, err = pr.Plan(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "promote-cleanup", p)
	})
	t.Run("abort", func(t *testing.T) {
		tg := continueFrom(t, reviews(t, "", ""), startPlan(t, reviews(t, "", ""), func(o *start) { o.Mirror = 5 }))
		p, err := abortPlan(tg, tg.State)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "abort", p)
		_, vs := planned(p)
		if vs.GetAnnotations()[AnnotationState] != "" {
			t.Fatal("abort must end the canary")
		}
	})
}

func TestChecks(t *testing.T) {
	sticky := strings.Replace(teamDR, "connectionPool: {http: {http1MaxPendingRequests: 100}}", "loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}", 1)
	p := startPlan(t, reviews(t, sticky, teamVS), nil)
	if len(p.Checks) != 1 || p.Checks[0].ID != CheckSticky {
		t.Fatalf("consistentHash with weighted subsets must warn: %+v", p.Checks)
	}
	vs := decode(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: a}, weight: 50}, {destination: {host: reviews, subset: b}, weight: 40}]
`)
	if got := routeChecks(nil, vs); len(got) != 1 || got[0].ID != CheckWeights || got[0].Objects[0] != "http route #1: weights add up to 90" {
		t.Fatalf("weights not adding up to 100 must be an error: %+v", got)
	}
	if !strings.Contains(strings.Join(p.Notes, "\n"), "Argo CD tracks VirtualService reviews-routes") {
		t.Fatalf("an Argo CD managed VirtualService needs the drift note: %v", p.Notes)
	}
}

func TestValidateStart(t *testing.T) {
	cases := []struct {
		mutate func(*start)
		want   string
	}{
		{func(o *start) { o.Canary = "v1" }, "both \"v1\""},
		{func(o *start) { o.Canary = "v9" }, "no pod of service reviews has version=v9 (versions found: v1, v2, v3)"},
		{func(o *start) { o.Weight = 101 }, "invalid --weight 101"},
		{func(o *start) { o.Weight = -1 }, "invalid --weight -1"},
		{func(o *start) { o.Mirror = 200 }, "invalid --mirror 200"},
		{func(o *start) { o.Header = "X-Canary=true" }, "lowercase"},
		{func(o *start) { o.Header = "x-canary" }, "use NAME=VALUE"},
		{func(o *start) { o.Header = "x-canary=" }, "use NAME=VALUE"},
		{func(o *start) { o.Header = "x=a\x01" }, "control characters"},
		{func(o *start) { o.Steps = "50,25,100" }, "weights must increase (25 after 50)"},
		{func(o *start) { o.Steps = "10,50" }, "last step must be 100"},
		{func(o *start) { o.Steps = "10,x,100" }, "invalid --steps"},
		{func(o *start) { o.Steps = "" }, "invalid --steps"},
	}
	for _, tc := range cases {
		o := newStart()
		o.Service, o.VersionLabel, o.Stable, o.Canary, o.t = "reviews", "version", "v1", "v2", reviews(t, "", "")
		tc.mutate(o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("got %v, want one line containing %q", err, tc.want)
		}
	}
}

func TestGateVerdicts(t *testing.T) {
	g := &gate{Interval: "5m", MinSuccess: 99, MaxP99: 500 * time.Millisecond, MinRequests: 100}
	cases := []struct {
		h    telemetry.Health
		want string
	}{
		{telemetry.Health{Requests: 50}, "CANARY-GATE-INCONCLUSIVE Error"},
		{telemetry.Health{Requests: 1000, Errors: 2, P99: 120, HasLatency: true}, "CANARY-GATE Info"},
		{telemetry.Health{Requests: 1000, Errors: 300, P99: 120, HasLatency: true}, "CANARY-GATE Error"},
		{telemetry.Health{Requests: 1000, Errors: 0, P99: 900, HasLatency: true}, "CANARY-GATE Error"},
		{telemetry.Health{Requests: 1000, Errors: 0}, "CANARY-GATE Info"},
	}
	for _, tc := range cases {
		c := g.judge(tc.h, "prom", "v2").checks()[0]
		if got := c.ID + " " + c.Severity.String(); got != tc.want {
			t.Errorf("%+v: %s (%s), want %s", tc.h, got, c.Message, tc.want)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"x-canary=true", "X=1", "=", "a=b=c", "x-y=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, value, err := parseHeader(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		if !headerName.MatchString(name) || value == "" || strings.ContainsAny(value, "\n\r") {
			t.Fatalf("accepted %q as %q=%q", s, name, value)
		}
	})
}

func FuzzParseSteps(f *testing.F) {
	for _, s := range []string{"10,25,50,100", "100", "0,100", "50,25", "1,2,3", " 5 , 100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		steps, err := parseSteps(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		for i, w := range steps {
			if w < 1 || w > 100 || i > 0 && w <= steps[i-1] {
				t.Fatalf("accepted %q as %v", s, steps)
			}
		}
		if steps[len(steps)-1] != 100 {
			t.Fatalf("accepted %q without ending at 100", s)
		}
	})
}

func TestUnreadableState(t *testing.T) {
	for _, state := range []string{`{"stableSubset":"v1"}`, `not json`, `{"stableSubset":"v1","canarySubset":"v2","header":"X=1"}`} {
		vs := decode(t, teamVS)
		vs.SetAnnotations(map[string]string{AnnotationState: state})
		c := &common{Service: "reviews", VersionLabel: "version", t: reviews(t, "", "")}
		c.t.VS = vs
		err := parseState(c)
		if err == nil || !strings.Contains(err.Error(), "unreadable canary.kubectl-mesh.io/state annotation") {
			t.Errorf("%s: %v", state, err)
		}
	}
}

// TestChangeStartsFromWhatTheTargetRead: the diff may skip its read only
// where the target's lists settle it: a team's object read whole, or a
// name no object of a listed kind has.
func TestChangeStartsFromWhatTheTargetRead(t *testing.T) {
	tg := &target{}
	tg.list("DestinationRule", []*unstructured.Unstructured{{Object: map[string]any{"kind": "DestinationRule", "metadata": map[string]any{"name": "other"}}}})
	dr := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": map[string]any{"name": name}}}
	}
	vs := &unstructured.Unstructured{Object: map[string]any{"kind": "VirtualService", "metadata": map[string]any{"name": "reviews"}}}
	for _, c := range []struct {
		what      string
		ch        pipeline.Change
		op        pipeline.Op
		known     bool
		liveGiven bool
	}{
		{"team's object", tg.change(dr("other"), dr("other")), pipeline.Replace, true, true},
		{"free name", tg.change(dr("reviews"), nil), pipeline.Apply, true, false},
		{"taken name", tg.change(dr("other"), nil), pipeline.Apply, false, false},
		{"kind not listed", tg.change(vs, nil), pipeline.Apply, false, false},
	} {
		if c.ch.Op != c.op || c.ch.Known != c.known || (c.ch.Live != nil) != c.liveGiven {
			t.Errorf("%s: %+v", c.what, c.ch)
		}
	}
}
