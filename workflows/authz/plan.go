package authz

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// evidence is what Prometheus says about the namespace's callers.
type evidence struct {
	Edges  []telemetry.Edge
	Where  string
	Covers bool               // the data reaches back over the whole window
	Shadow map[string]float64 // would-be denials of the dry-run policies, per pod
}

// observe reads the evidence: the callers, whether the data covers the
// window, and the shadow-rule denials.
func (o *Options) observe(ctx context.Context, c *cli.Context) (*evidence, error) {
	prom, err := telemetry.Require(ctx, c, o.PrometheusURL, o.root, "read the namespace's callers from")
	if err != nil {
		return nil, err
	}
	ev := &evidence{Where: prom.Where}
	now := c.Now()
	if ev.Edges, err = prom.Edges(ctx, o.Namespace, o.window, now); err != nil {
		return nil, err
	}
	if ev.Covers, err = prom.Covers(ctx, o.Namespace, o.window, now); err != nil {
		return nil, err
	}
	if ev.Shadow, err = prom.ShadowDenied(ctx, o.Namespace, o.window, now); err != nil {
		return nil, err
	}
	return ev, nil
}

// migration is one planned stage: the policies it writes and the policies
// that will be in force after it.
type migration struct {
	o       *Options
	ev      *evidence
	now     time.Time
	planned []planned
	after   []policy // ALLOW policies as enforced after enforce (simulated in audit)
}

// planned is one generated policy.
type planned struct {
	Workload   string // "" for allow-nothing
	Principals []string
	Namespaces []string
	Obj        *unstructured.Unstructured
}

// Plan implements pipeline.Workflow.
func (o *Options) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	if o.ev == nil {
		ev, err := o.observe(ctx, c)
		if err != nil {
			return nil, err
		}
		o.ev = ev
	}
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	return o.build(c.Now()).plan(cl.Dynamic), nil
}

// plan lays the migration out: phases, checks, report, verify.
func (m *migration) plan(dyn dynamic.Interface) *pipeline.Plan {
	o := m.o
	plan := &pipeline.Plan{Title: fmt.Sprintf("migrate-authz %s: %s", o.Namespace, o.Stage)}
	var allows, deny []pipeline.Change
	for _, p := range m.planned {
		ch := pipeline.Change{Op: pipeline.Apply, Object: p.Obj}
		if p.Workload == "" {
			deny = append(deny, ch)
		} else {
			allows = append(allows, ch)
		}
	}
	// Make before break: the callers' ALLOW rules exist before the
	// namespace denies everything else.
	if len(allows) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "allow the observed callers", Changes: allows})
	}
	if len(deny) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "deny by default", Changes: deny})
	}
	plan.Checks = m.checks()
	plan.Report = m.report
	plan.Verify = []pipeline.VerifyStep{m.verify(dyn)}
	if o.Stage == StageAudit {
		plan.Notes = append(plan.Notes, fmt.Sprintf("audit: the policies are evaluated, not enforced (istio.io/dry-run); let them soak for --window (%s), then run kubectl mesh migrate-authz -n %s --stage enforce", o.Window, o.Namespace))
	}
	return plan
}

// build computes the stage's policies from the snapshot and the evidence.
func (o *Options) build(now time.Time) *migration {
	s := o.snap
	m := &migration{o: o, ev: o.ev, now: now}
	team := s.teamAllows()
	audited := map[string]policy{}
	for _, p := range s.audit() {
		audited[p.For] = p
	}
	var extraP, extraNS []string
	for _, e := range o.extra {
		if e.Namespace != "" {
			extraNS = append(extraNS, e.Namespace)
		} else {
			extraP = append(extraP, e.Principal)
		}
	}
	for _, w := range s.Workloads {
		if w.Injected() == 0 {
			continue // policies are enforced by the sidecar: nothing to write
		}
		var principals, namespaces []string
		if o.Stage == StageEnforce {
			// Enforce what was audited, not a fresh reading of the window:
			// the soak was of these rules.
			p, ok := audited[w.Name]
			if !ok {
				continue
			}
			for _, r := range p.Rules {
				principals = append(principals, r.Principals...)
				namespaces = append(namespaces, r.Namespaces...)
			}
		} else {
			labels := w.Pods[0].Object.Labels
			for _, e := range o.ev.Edges {
				if e.Dest != w.Name || e.Principal == "" {
					continue
				}
				if _, byTeam := coverage(team, s.Namespace, s.Root, labels, e.Principal); byTeam {
					continue // the team's rule already admits it: not repeated
				}
				principals = append(principals, e.Principal)
			}
		}
		principals = sortedUnique(append(principals, extraP...))
		namespaces = sortedUnique(append(namespaces, extraNS...))
		if len(principals)+len(namespaces) == 0 {
			continue
		}
		obj := m.policyObject("allow-"+w.Name, w.Name, audited[w.Name])
		obj.Object["spec"] = map[string]any{
			"selector": map[string]any{"matchLabels": toAny(s.selectorOf(w))},
			"action":   "ALLOW",
			"rules":    []any{map[string]any{"from": sources(principals, namespaces)}},
		}
		m.planned = append(m.planned, planned{Workload: w.Name, Principals: principals, Namespaces: namespaces, Obj: obj})
	}
	if _, ours := audited["*"]; ours || !s.denyByDefault() {
		obj := m.policyObject(allowNothingName, "*", audited["*"])
		obj.Object["spec"] = map[string]any{}
		m.planned = append(m.planned, planned{Obj: obj})
	}
	// The policies in force once enforced: the team's and the planned ones.
	m.after = append(m.after, team...)
	for _, p := range m.planned {
		pp := parsePolicy(p.Obj.DeepCopy())
		pp.DryRun = false
		m.after = append(m.after, pp)
	}
	return m
}

// policyObject is a generated AuthorizationPolicy's metadata for the stage.
func (m *migration) policyObject(name, forWorkload string, prev policy) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion("security.istio.io/v1")
	u.SetKind("AuthorizationPolicy")
	u.SetNamespace(m.o.Namespace)
	u.SetName(name)
	since := prev.Since
	if since == "" || m.o.Stage == StageAudit && !prev.DryRun {
		since = m.now.UTC().Format(time.RFC3339)
	}
	ann := map[string]string{annotationFor: forWorkload, annotationSince: since}
	if m.o.Stage == StageAudit {
		ann[annotationDryRun] = "true"
	}
	if len(m.o.extra) > 0 && forWorkload != "*" {
		var names []string
		for _, e := range m.o.extra {
			names = append(names, e.String())
		}
		ann[annotationUnobserved] = strings.Join(names, ",") + ": added with --allow-from, not seen in the telemetry window"
	}
	u.SetAnnotations(ann)
	return u
}

func sources(principals, namespaces []string) []any {
	var out []any
	if len(principals) > 0 {
		out = append(out, map[string]any{"source": map[string]any{"principals": toAnySlice(principals)}})
	}
	if len(namespaces) > 0 {
		out = append(out, map[string]any{"source": map[string]any{"namespaces": toAnySlice(namespaces)}})
	}
	return out
}

// teamAllows are the enforced ALLOW policies this workflow did not write.
func (s *snapshot) teamAllows() []policy {
	var out []policy
	for _, p := range s.Policies {
		if p.Action == "ALLOW" && !p.DryRun && p.For == "" {
			out = append(out, p)
		}
	}
	return out
}

// denyByDefault reports an enforced allow-nothing the team already has,
// for the namespace or the whole mesh.
func (s *snapshot) denyByDefault() bool {
	for _, p := range s.teamAllows() {
		if p.denyByDefault() {
			return true
		}
	}
	return false
}

// selectorOf is the workload's pods as its controller selects them; a pod
// without such a controller is selected by its own labels.
func (s *snapshot) selectorOf(w mesh.Workload) map[string]string {
	if sel := s.Selectors[w.Ref()]; sel != nil {
		return sel
	}
	sel := maps.Clone(w.Pods[0].Object.Labels)
	for _, k := range []string{"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name", "security.istio.io/tlsMode", "service.istio.io/canonical-name", "service.istio.io/canonical-revision"} {
		delete(sel, k)
	}
	return sel
}

// admittedBy reports whether the ALLOW policies let principal reach a pod:
// yes when one of those selecting it admits the caller, or when none
// selects it (Istio allows what no ALLOW policy covers).
func admittedBy(allows []policy, ns, root string, podLabels map[string]string, principal string) bool {
	covered, admitted := coverage(allows, ns, root, podLabels, principal)
	return admitted || !covered
}

// coverage says whether any enforced ALLOW policy selects the pod, and
// whether one of those admits principal.
func coverage(allows []policy, ns, root string, podLabels map[string]string, principal string) (covered, admitted bool) {
	for _, p := range allows {
		if p.Action != "ALLOW" || p.DryRun || !p.selects(ns, podLabels, root) {
			continue
		}
		covered = true
		if p.admits(principal) {
			return true, true
		}
	}
	return covered, false
}

// denied are the observed callers the policies in force after the plan
// would refuse.
func (m *migration) denied() (plaintext, identities []string) {
	s := m.o.snap
	for _, e := range m.ev.Edges {
		w := s.workload(e.Dest)
		if w == nil || w.Injected() == 0 {
			continue
		}
		if admittedBy(m.after, s.Namespace, s.Root, w.Pods[0].Object.Labels, e.Principal) {
			continue
		}
		line := fmt.Sprintf("%s → %s (%s)", e.Caller(), e.Dest, volume(e))
		if e.Principal == "" {
			plaintext = append(plaintext, line)
		} else {
			identities = append(identities, line)
		}
	}
	return plaintext, identities
}

func (s *snapshot) workload(name string) *mesh.Workload {
	for i := range s.Workloads {
		if s.Workloads[i].Name == name {
			return &s.Workloads[i]
		}
	}
	return nil
}

func volume(e telemetry.Edge) string {
	unit := "requests"
	if e.Protocol == "tcp" {
		unit = "connections"
	}
	return fmt.Sprintf("%.0f %s", e.Requests, unit)
}

// report prints the observed callers and the policies the stage writes.
func (m *migration) report(w io.Writer) {
	if !m.o.edgesShown {
		fmt.Fprintf(w, "Callers of namespace %s over the last %s (Prometheus: %s):\n", m.o.Namespace, m.o.Window, m.ev.Where)
		printEdges(w, m.ev.Edges)
	}
	mode := "enforced"
	if m.o.Stage == StageAudit {
		mode = "dry-run"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tWORKLOAD\tALLOWS\tMODE")
	for _, p := range m.planned {
		who := strings.Join(append(append([]string{}, p.Principals...), prefixed("ns/", p.Namespaces)...), ", ")
		wl := p.Workload
		if wl == "" {
			wl, who = "(namespace)", "nothing else"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Obj.GetName(), wl, who, mode)
	}
	_ = tw.Flush()
}

func prefixed(prefix string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = prefix + s
	}
	return out
}

func printEdges(w io.Writer, edges []telemetry.Edge) {
	if len(edges) == 0 {
		fmt.Fprintln(w, "  (none)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tWORKLOAD\tPROTOCOL\tIN WINDOW")
	for _, e := range edges {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Caller(), e.Dest, e.Protocol, volume(e))
	}
	_ = tw.Flush()
}

// verify re-reads the namespace's policies: each planned one is there, in
// the planned mode, allowing exactly the planned callers.
func (m *migration) verify(dyn dynamic.Interface) pipeline.VerifyStep {
	return pipeline.VerifyStep{
		Name:    "authorization policies",
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, progress pipeline.Progress) error {
			list, err := dyn.Resource(mesh.AuthorizationPolicies).Namespace(m.o.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			live := map[string]policy{}
			for i := range list.Items {
				p := parsePolicy(&list.Items[i])
				live[p.Name] = p
			}
			for _, want := range m.planned {
				got, ok := live[want.Obj.GetName()]
				if !ok {
					return fmt.Errorf("AuthorizationPolicy %s/%s is missing after the apply", m.o.Namespace, want.Obj.GetName())
				}
				if got.DryRun != (m.o.Stage == StageAudit) {
					return fmt.Errorf("AuthorizationPolicy %s/%s: istio.io/dry-run is %v, planned %v", m.o.Namespace, got.Name, got.DryRun, m.o.Stage == StageAudit)
				}
				var ps, nss []string
				for _, r := range got.Rules {
					ps, nss = append(ps, r.Principals...), append(nss, r.Namespaces...)
				}
				if !slices.Equal(sortedUnique(ps), want.Principals) || !slices.Equal(sortedUnique(nss), want.Namespaces) {
					return fmt.Errorf("AuthorizationPolicy %s/%s allows %v %v, planned %v %v: it changed meanwhile", m.o.Namespace, got.Name, ps, nss, want.Principals, want.Namespaces)
				}
			}
			progress("%d policies in place, %s", len(m.planned), map[bool]string{true: "dry-run (audit)", false: "enforced"}[m.o.Stage == StageAudit])
			return nil
		},
	}
}

func sortedUnique(ss []string) []string {
	out := slices.Clone(ss)
	sort.Strings(out)
	return slices.Compact(out)
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func toAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
