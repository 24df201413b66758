package canary

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

type start struct {
	common
	Stable, Canary string
	Weight         int
	Header         string
	Mirror         int
	Steps          string
	API            string
	Route, Rule    string

	cmd                     *cobra.Command
	rule                    int // index of the HTTPRoute rule that carries the split, -1 for a new one
	steps                   []int
	headerName, headerValue string
}

func newStart() *start { return &start{Weight: 10, Steps: "10,25,50,100"} }

func (o *start) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start SERVICE",
		Short: "Start a canary: subsets for both versions and a weighted (or header) route",
		Example: `  kubectl mesh canary start -n bookinfo reviews --stable v1 --canary v2 --weight 10
  kubectl mesh canary start -n bookinfo reviews --stable v1 --canary v3 --weight 0 --header x-canary=true
  kubectl mesh canary start -n bookinfo reviews --stable v1 --canary v2 --weight 0 --mirror 20
  kubectl mesh canary start -n bookinfo reviews --stable v1 --canary v2 --api gateway --rule reviews-default`,
	}
	f := cmd.Flags()
	o.addFlags(f)
	f.StringVar(&o.Stable, "stable", "", "Version serving traffic today (asked when not given)")
	f.StringVar(&o.Canary, "canary", "", "Version to release (asked when not given)")
	f.IntVar(&o.Weight, "weight", o.Weight, "Initial share of traffic for the canary, 0–100")
	f.StringVar(&o.Header, "header", "", "Send requests with this header to the canary: NAME=VALUE (exact match)")
	f.IntVar(&o.Mirror, "mirror", 0, "Mirror this percentage of traffic to the canary, 0–100")
	f.StringVar(&o.Steps, "steps", o.Steps, "Weights canary step walks through, increasing, ending at 100")
	f.StringVar(&o.API, "api", "", "Routing API when nothing routes the Service yet: istio (VirtualService) or gateway (HTTPRoute); asked on a terminal, default istio")
	f.StringVar(&o.Route, "route", "", "HTTPRoute to use when several route the Service")
	f.StringVar(&o.Rule, "rule", "", "HTTPRoute rule (name, or number from 1) that carries the split when several send to the Service")
	o.cmd = cmd
	return cmd
}

var headerName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// parseHeader reads NAME=VALUE; Istio matches header names in lowercase.
func parseHeader(s string) (string, string, error) {
	name, value, ok := strings.Cut(s, "=")
	q := strconv.Quote(s)
	switch {
	case !ok || value == "":
		return "", "", fmt.Errorf("invalid --header %s: use NAME=VALUE, e.g. x-canary=true", q)
	case !headerName.MatchString(name):
		return "", "", fmt.Errorf("invalid --header %s: the name must be lowercase letters, digits and dashes (Istio matches header names in lowercase)", q)
	case strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", "", fmt.Errorf("invalid --header %s: the value has control characters", q)
	}
	return name, value, nil
}

// parseSteps reads an increasing list of weights ending at 100.
func parseSteps(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 100 {
			return nil, fmt.Errorf("invalid --steps %s: use increasing weights from 1 to 100, e.g. 10,25,50,100", strconv.Quote(s))
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("invalid --steps %s: weights must increase (%d after %d)", strconv.Quote(s), n, out[len(out)-1])
		}
		out = append(out, n)
	}
	if out[len(out)-1] != 100 {
		return nil, fmt.Errorf("invalid --steps %s: the last step must be 100", strconv.Quote(s))
	}
	return out, nil
}

func percent(flag string, v int) error {
	if v < 0 || v > 100 {
		return fmt.Errorf("invalid %s %d: use a whole percentage from 0 to 100", flag, v)
	}
	return nil
}

func (o *start) Complete(ctx context.Context, c *cli.Context, args []string) error {
	if err := o.syntax(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	if err := o.load(ctx, c, args); err != nil {
		return err
	}
	if s := o.t.State; s != nil {
		return exitcode.Usagef("a canary of %s is in progress for %s at %d%%: step, promote or abort it first", s.Canary, o.Service, s.Weight)
	}
	if err := o.chooseRoute(c); err != nil {
		return err
	}
	versions := strings.Split(versionList(o.t.Versions), ", ")
	ask := func(dst *string, q string) error {
		if *dst != "" {
			return nil
		}
		if !c.CanPrompt() {
			return exitcode.Usagef("name the versions with --stable and --canary (the pods of %s have %s: %s)", o.Service, o.VersionLabel, versionList(o.t.Versions))
		}
		v, err := c.Prompter.Select(q, versions, versions[0])
		*dst = v
		return err
	}
	if err := ask(&o.Stable, "Stable version:"); err != nil {
		return err
	}
	if err := ask(&o.Canary, "Canary version:"); err != nil {
		return err
	}
	if c.CanPrompt() {
		if !o.cmd.Flags().Changed("weight") {
			w, err := c.Prompter.Input("Initial canary weight (0–100):", strconv.Itoa(o.Weight))
			if err != nil {
				return err
			}
			if o.Weight, err = strconv.Atoi(strings.TrimSpace(w)); err != nil {
				return exitcode.Usagef("invalid weight %s: use a whole number from 0 to 100", strconv.Quote(w))
			}
		}
		if !o.cmd.Flags().Changed("steps") {
			st, err := c.Prompter.Input("Weights canary step walks through (increasing, ending at 100):", o.Steps)
			if err != nil {
				return err
			}
			o.Steps = strings.TrimSpace(st)
		}
		if !o.cmd.Flags().Changed("header") {
			h, err := c.Prompter.Input("Header that always reaches the canary (NAME=VALUE, empty for none):", "")
			if err != nil {
				return err
			}
			o.Header = h
		}
		if !o.cmd.Flags().Changed("mirror") {
			m, err := c.Prompter.Input("Share of traffic to mirror to the canary (0–100):", strconv.Itoa(o.Mirror))
			if err != nil {
				return err
			}
			if o.Mirror, err = strconv.Atoi(strings.TrimSpace(m)); err != nil {
				return exitcode.Usagef("invalid mirror share %s: use a whole number from 0 to 100", strconv.Quote(m))
			}
		}
	}
	return nil
}

// chooseRoute settles which API, HTTPRoute and rule the canary uses:
// what already routes the Service decides, else --api (asked on a
// terminal when the cluster serves the Gateway API).
func (o *start) chooseRoute(c *cli.Context) error {
	t := o.t
	o.rule = -1
	if len(t.HRs) > 1 || o.Route != "" {
		candidates := t.HRs
		if t.HR != nil {
			candidates = []*unstructured.Unstructured{t.HR}
		}
		var names []string
		for _, hr := range candidates {
			names = append(names, hr.GetName())
		}
		switch {
		case o.Route != "":
		case c.CanPrompt():
			r, err := c.Prompter.Select("Several HTTPRoutes route "+o.Service+"; the one to split:", names, names[0])
			if err != nil {
				return err
			}
			o.Route = r
		default:
			return exitcode.Usagef("HTTPRoutes %s route service %s: name the one to split with --route", strings.Join(names, ", "), o.Service)
		}
		i := slices.Index(names, o.Route)
		if i < 0 {
			found := "none does"
			if len(names) > 0 {
				found = "found: " + strings.Join(names, ", ")
			}
			return exitcode.Usagef("--route %s: no HTTPRoute of that name routes service %s (%s)", o.Route, o.Service, found)
		}
		t.HR, t.HRs = candidates[i], nil
	}
	switch {
	case t.HR != nil && o.API == APIIstio:
		return exitcode.Usagef("HTTPRoute %s routes service %s: a VirtualService beside it would mix the two APIs, which Istio does not support; leave out --api istio", t.HR.GetName(), o.Service)
	case t.VS != nil && o.API == APIGateway:
		return exitcode.Usagef("VirtualService %s routes service %s: an HTTPRoute beside it would mix the two APIs, which Istio does not support; leave out --api gateway", t.VS.GetName(), o.Service)
	case t.HR != nil:
		o.API = APIGateway
	case t.VS != nil:
		o.API = APIIstio
	case o.API == "" && c.CanPrompt() && t.GatewayAPI:
		a, err := c.Prompter.Select("Nothing routes "+o.Service+" yet; route the canary with:", []string{APIIstio, APIGateway}, APIIstio)
		if err != nil {
			return err
		}
		o.API = a
	case o.API == "":
		o.API = APIIstio
	}
	if o.API == APIGateway && !t.GatewayAPI {
		return exitcode.Usagef("the cluster serves no HTTPRoutes: install the Gateway API CRDs (kubectl mesh install --gateway-api) or use --api istio")
	}
	if t.HR == nil {
		return nil
	}
	rs := hrRules(t.HR)
	carrying := carriers(rs, t.Namespace, t.isBackend)
	var names []string
	for _, i := range carrying {
		names = append(names, hrRuleName(rs[i], i))
	}
	switch {
	case len(carrying) == 1 && o.Rule == "":
		o.rule = carrying[0]
		return nil
	case o.Rule != "":
	case c.CanPrompt():
		r, err := c.Prompter.Select(fmt.Sprintf("Several rules of HTTPRoute %s send to %s; the one that carries the split:", t.HR.GetName(), o.Service), names, names[0])
		if err != nil {
			return err
		}
		o.Rule = r
	default:
		return exitcode.Usagef("rules %s of HTTPRoute %s send to service %s: name the one that carries the split with --rule", strings.Join(names, ", "), t.HR.GetName(), o.Service)
	}
	if i := ruleIndex(rs, o.Rule); slices.Contains(carrying, i) {
		o.rule = i
		return nil
	}
	return exitcode.Usagef("--rule %s: no rule of HTTPRoute %s of that name (or number) sends to service %s (rules that do: %s)", o.Rule, t.HR.GetName(), o.Service, strings.Join(names, ", "))
}

// syntax checks the flags that need no cluster.
func (o *start) syntax() error {
	if o.API != "" && o.API != APIIstio && o.API != APIGateway {
		return fmt.Errorf("invalid --api %q: use istio (VirtualService) or gateway (HTTPRoute)", o.API)
	}
	if err := percent("--weight", o.Weight); err != nil {
		return err
	}
	if err := percent("--mirror", o.Mirror); err != nil {
		return err
	}
	steps, err := parseSteps(o.Steps)
	if err != nil {
		return err
	}
	o.steps = steps
	o.headerName, o.headerValue = "", ""
	if o.Header != "" {
		if o.headerName, o.headerValue, err = parseHeader(o.Header); err != nil {
			return err
		}
	}
	return nil
}

func (o *start) Validate() error {
	if err := o.syntax(); err != nil {
		return err
	}
	if o.t == nil {
		return nil
	}
	if o.Stable == o.Canary {
		return fmt.Errorf("--stable and --canary are both %q: a canary needs two versions", o.Stable)
	}
	for _, v := range []string{o.Stable, o.Canary} {
		if o.t.Versions[v] == 0 {
			return fmt.Errorf("no pod of service %s has %s=%s (versions found: %s)", o.Service, o.VersionLabel, v, versionList(o.t.Versions))
		}
	}
	return nil
}

func (o *start) Plan(_ context.Context, _ *cli.Context) (*pipeline.Plan, error) {
	p, err := o.build()
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err)
	}
	return p, nil
}

// build is the pure part of start: subsets (or version Services) first,
// then routes.
func (o *start) build() (*pipeline.Plan, error) {
	t := o.t
	s := &State{Service: o.Service, VersionLabel: o.VersionLabel, Stable: o.Stable, Canary: o.Canary, Weight: o.Weight,
		Steps: o.steps, Header: o.Header, Mirror: o.Mirror}
	if o.API == APIGateway {
		return o.buildGateway(s)
	}
	var dr, vs *unstructured.Unstructured
	if t.DR != nil {
		dr = pipeline.Edit(t.DR)
	} else {
		dr = manifest.New("networking.istio.io/v1", "DestinationRule", t.Namespace, o.Service)
		_ = unstructured.SetNestedField(dr.Object, o.Service, "spec", "host")
	}
	for _, v := range []struct {
		version string
		into    *string
	}{{o.Stable, &s.StableSubset}, {o.Canary, &s.CanarySubset}} {
		if *v.into = subsetFor(dr, o.VersionLabel, v.version); *v.into == "" {
			if err := addSubset(dr, v.version, o.VersionLabel, v.version); err != nil {
				return nil, err
			}
			*v.into = v.version
			setAddedSubsets(dr, append(addedSubsets(dr), v.version))
		}
	}
	if t.VS != nil {
		vs = pipeline.Edit(t.VS)
		if len(httpRoutes(vs)) == 0 {
			if _, tcp, _ := unstructured.NestedSlice(vs.Object, "spec", "tcp"); tcp {
				return nil, fmt.Errorf("VirtualService %s routes TCP only: weighted HTTP canaries need http routes", vs.GetName())
			}
		}
	} else {
		vs = manifest.New("networking.istio.io/v1", "VirtualService", t.Namespace, o.Service)
		_ = unstructured.SetNestedStringSlice(vs.Object, []string{o.Service}, "spec", "hosts")
	}
	s.Route = applyRouting(vs, "", t.hostMatches, routing{Host: t.host(), Stable: s.StableSubset, Canary: s.CanarySubset,
		Weight: o.Weight, HeaderName: o.headerName, HeaderIs: o.headerValue, Mirror: o.Mirror})
	setState(vs, s)

	plan := &pipeline.Plan{
		Title: fmt.Sprintf("canary %s → %s for %s at %d%%", o.Stable, o.Canary, o.Service, o.Weight),
		Phases: []pipeline.Phase{
			{Name: "subsets", Changes: []pipeline.Change{t.change(dr, t.DR)}},
			{Name: "routes", Changes: []pipeline.Change{t.change(vs, t.VS)}},
		},
		Notes: []string{"subsets are applied before the routes that use them (make before break)"},
	}
	plan.Checks = routeChecks(dr, vs)
	plan.Notes = append(plan.Notes, argoNote(t)...)
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) { printState(w, t, s) }
	return plan, nil
}

// buildGateway plans a Gateway API canary: the version Services, then the
// HTTPRoute (the team's, or a new one attached to the Service for the mesh).
func (o *start) buildGateway(s *State) (*pipeline.Plan, error) {
	t := o.t
	s.API = APIGateway
	var services []pipeline.Change
	for _, v := range []struct {
		version string
		into    *string
	}{{o.Stable, &s.StableService}, {o.Canary, &s.CanaryService}} {
		name, err := versionServiceName(o.Service, v.version)
		if err != nil {
			return nil, err
		}
		*v.into = name
		want := versionService(t, o.VersionLabel, v.version, name)
		switch existing := t.Services[name]; {
		case existing == nil:
			services = append(services, pipeline.Change{Op: pipeline.Apply, Object: want})
		case selects(existing, t, o.VersionLabel, v.version):
			// the team's own version Service, or ours from an earlier canary
		case existing.Labels[LabelVersionOf] == o.Service:
			services = append(services, pipeline.Change{Op: pipeline.Apply, Object: want}) // ours, out of date
		default:
			return nil, fmt.Errorf("service %s already exists and selects %s, not the %s=%s pods of %s: rename or delete it, then start the canary",
				name, labels.SelectorFromSet(existing.Spec.Selector), o.VersionLabel, v.version, o.Service)
		}
	}
	var hr *unstructured.Unstructured
	var rule map[string]any
	if t.HR != nil {
		hr = pipeline.Edit(t.HR)
		rule = hrRules(hr)[o.rule]
	} else {
		hr = manifest.New("gateway.networking.k8s.io/v1", "HTTPRoute", t.Namespace, o.Service)
		_ = unstructured.SetNestedSlice(hr.Object, []any{map[string]any{"group": "", "kind": "Service", "name": o.Service}}, "spec", "parentRefs")
	}
	port := backendPort(t, rule)
	s.Route = applyGatewayRouting(hr, o.rule, port, routingFor(t, s))
	setState(hr, s)
	plan := &pipeline.Plan{
		Title: fmt.Sprintf("canary %s → %s for %s at %d%% (HTTPRoute %s)", o.Stable, o.Canary, o.Service, o.Weight, hr.GetName()),
		Notes: []string{"the version Services exist before the HTTPRoute sends to them (make before break)"},
	}
	if len(services) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "version services", Changes: services})
	}
	plan.Phases = append(plan.Phases, pipeline.Phase{Name: "routes", Changes: []pipeline.Change{t.change(hr, t.HR)}})
	plan.Checks = gatewayChecks(t, s)
	plan.Notes = append(plan.Notes, argoNote(t)...)
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) { printState(w, t, s) }
	return plan, nil
}

// gatewayChecks: a DestinationRule for the Service's host does not apply to
// the version Services the HTTPRoute now sends to.
func gatewayChecks(t *target, s *State) []pipeline.Check {
	if t.DR == nil {
		return nil
	}
	if _, has, _ := unstructured.NestedMap(t.DR.Object, "spec", "trafficPolicy"); !has {
		return nil
	}
	return []pipeline.Check{{ID: CheckPolicyNotApplied, Severity: pipeline.Warning, Objects: []string{pipeline.Ref(t.DR)},
		Message: fmt.Sprintf("the traffic policy of DestinationRule %s applies to host %s only: requests the HTTPRoute sends to services %s and %s go without it (connection pool, outlier detection, load balancer)",
			t.DR.GetName(), t.Service, s.StableService, s.CanaryService),
		Hint: "give the version Services DestinationRules with the same trafficPolicy, or accept with --accept " + CheckPolicyNotApplied,
		URL:  "https://istio.io/latest/docs/reference/config/networking/destination-rule/"}}
}

// routeChecks are our checks on the planned objects; Istio's analyzers
// (IST0101 unknown subset, IST0109, IST0173…) run on them in the engine.
func routeChecks(dr, vs *unstructured.Unstructured) []pipeline.Check {
	var out []pipeline.Check
	if p := weightProblems(vs); len(p) > 0 {
		out = append(out, pipeline.Check{ID: CheckWeights, Severity: pipeline.Error, Objects: p,
			Message: "weighted destinations must add up to 100", URL: "https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRouteDestination"})
	}
	if stickyPolicy(dr) {
		out = append(out, pipeline.Check{ID: CheckSticky, Severity: pipeline.Warning, Objects: []string{pipeline.Ref(dr)},
			Message: "the DestinationRule uses consistentHash: session affinity does not hold across weighted subsets, so sticky users will flip between versions",
			Hint:    "route testers by header (--header) instead of by weight, or accept the flips",
			URL:     "https://istio.io/latest/docs/reference/config/networking/destination-rule/#LoadBalancerSettings-ConsistentHashLB"})
	}
	return out
}

// argoNote warns GitOps users whose route Argo CD tracks.
func argoNote(t *target) []string {
	obj := t.routeObject()
	if obj == nil {
		return nil
	}
	_, tracked := obj.GetAnnotations()["argocd.argoproj.io/tracking-id"]
	if obj.GetLabels()["app.kubernetes.io/instance"] != "" || tracked {
		path := "/spec/http"
		if t.gateway() {
			path = "/spec/rules"
		}
		return []string{fmt.Sprintf("Argo CD tracks %s %s: add ignoreDifferences for %s (or commit the plan from -o yaml) or a sync will undo the weights", obj.GetKind(), obj.GetName(), path)}
	}
	return nil
}

func printState(w io.Writer, t *target, s *State) {
	fmt.Fprintf(w, "canary %s/%s: %s (stable, %d pod(s)) %d%% → %s (canary, %d pod(s)) %d%%\n",
		t.Namespace, t.Service, s.Stable, t.Versions[s.Stable], 100-s.Weight, s.Canary, t.Versions[s.Canary], s.Weight)
	if s.Header != "" {
		fmt.Fprintf(w, "  header %s → %s\n", s.Header, s.Canary)
	}
	if s.Mirror > 0 {
		fmt.Fprintf(w, "  mirroring %d%% to %s\n", s.Mirror, s.Canary)
	}
	fmt.Fprintf(w, "  steps %s\n", strings.Trim(strings.ReplaceAll(fmt.Sprint(s.Steps), " ", " → "), "[]"))
}
