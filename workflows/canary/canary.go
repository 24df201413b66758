// Package canary is `kubectl mesh canary`: weighted and header-routed
// canary releases of a Service's versions, merged into the team's own
// DestinationRule and VirtualService, stepped with a Prometheus gate. No
// controller: the canary's state lives in an annotation on the
// VirtualService, so any teammate can continue it.
package canary

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Annotations: the canary's state on the VirtualService, and on the
// DestinationRule the subsets canaries added (removed once no route uses
// them, even by a later canary; the team's own subsets are never removed).
const (
	AnnotationState   = mesh.AnnotationCanary
	AnnotationSubsets = "canary.kubectl-mesh.io/added-subsets"
)

// State is what a teammate needs to continue the canary.
type State struct {
	Service      string `json:"service"`
	VersionLabel string `json:"versionLabel"`
	Stable       string `json:"stable"`
	Canary       string `json:"canary"`
	StableSubset string `json:"stableSubset,omitempty"`
	CanarySubset string `json:"canarySubset,omitempty"`
	Weight       int    `json:"weight"`
	Steps        []int  `json:"steps"`
	Header       string `json:"header,omitempty"`
	Mirror       int    `json:"mirror,omitempty"`
	Route        string `json:"route"`
	// Gateway API canaries (api "gateway") split between per-version
	// Services instead of subsets.
	API           string `json:"api,omitempty"`
	StableService string `json:"stableService,omitempty"`
	CanaryService string `json:"canaryService,omitempty"`
}

// gateway reports a canary routed by an HTTPRoute.
func (s *State) gateway() bool { return s.API == APIGateway }

// backends are the names the routes use for the two versions: subsets, or
// per-version Services.
func (s *State) backends() (stable, canary string) {
	if s.gateway() {
		return s.StableService, s.CanaryService
	}
	return s.StableSubset, s.CanarySubset
}

// Group is `kubectl mesh canary`.
type Group struct{}

// New returns the canary command group.
func New() *Group { return &Group{} }

// Command implements pipeline.Group.
func (Group) Command() *cobra.Command {
	return &cobra.Command{
		Use:   "canary",
		Short: "Weighted and header-routed canary releases with a metric gate, no controller",
		Long: `Splits a Service's traffic between a stable and a canary version (pods told
apart by a version label) by merging DestinationRule subsets and VirtualService
routes into what the team already has: other routes, match order, retries,
timeouts and the DestinationRule's traffic policy are kept. Subsets exist
before any route uses them and go away after the last one stops.

The canary's state is an annotation on the VirtualService (` + AnnotationState + `),
so anyone can continue it. Before each step a gate reads the canary's success
rate and p99 latency from Prometheus (--prometheus-url, or a Prometheus
Service in the cluster through the API server); too little traffic is
inconclusive, not a pass.

On the Gateway API (an HTTPRoute routes the Service, or --api gateway when
nothing does yet) each version gets a Service of its own, <service>-<version>,
created before the route sends to it and deleted after its last use; the split
is the backendRef weights of the one rule that carries the Service (--rule),
and every other rule, filter, timeout and parentRef stays as it is. The state
annotation is then on the HTTPRoute. A VirtualService and an HTTPRoute for one
Service are refused: Istio does not support mixing them.

Argo CD users: the weights change outside Git while a canary runs; add an
ignoreDifferences entry for /spec/http of the VirtualService (/spec/rules of
the HTTPRoute), or export the plan with -o yaml / --output-dir and commit it
instead.`,
	}
}

// Subcommands implements pipeline.Group.
func (Group) Subcommands() []pipeline.Command {
	return []pipeline.Command{newStart(), newStep(), newPromote(), newAbort(), newStatus()}
}

// target is the Service and what routes to it, read once.
type target struct {
	Namespace, Service string
	Selector           map[string]string
	Ports              []corev1.ServicePort
	Versions           map[string]int // version label value → pods
	Unlabelled         int
	DR, VS             *unstructured.Unstructured // nil when there is none
	// HR is the HTTPRoute that routes the Service (nil when none); HRs are
	// several that could, for start to choose from (--route).
	HR         *unstructured.Unstructured
	HRs        []*unstructured.Unstructured
	GatewayAPI bool                       // the cluster serves HTTPRoutes
	Services   map[string]*corev1.Service // the namespace's Services
	State      *State                     // nil when no canary is in progress
	// listed holds "Kind/name" of every DestinationRule, VirtualService and
	// HTTPRoute in the namespace (nil for a kind not listed): a name not
	// in it is known to be free.
	listed map[string]map[string]bool
}

// gateway reports that the Gateway API routes the Service.
func (t *target) gateway() bool { return t.HR != nil }

// routeObject is the object that carries the routes and the state.
func (t *target) routeObject() *unstructured.Unstructured {
	if t.gateway() {
		return t.HR
	}
	return t.VS
}

// isBackend reports whether a Service name stands for the Service: itself,
// or a per-version Service of it.
func (t *target) isBackend(name string) bool {
	if name == "" {
		return false
	}
	if name == t.Service {
		return true
	}
	if svc := t.Services[name]; svc != nil && svc.Labels[LabelVersionOf] == t.Service {
		return true
	}
	for v := range t.Versions {
		if n, err := versionServiceName(t.Service, v); err == nil && n == name {
			return true
		}
	}
	return false
}

// fqdn of the Service.
func (t *target) fqdn() string { return t.Service + "." + t.Namespace + ".svc.cluster.local" }

// hostMatches reports whether a host (as written in the target's
// namespace) names the Service.
func (t *target) hostMatches(h string) bool {
	return h == t.Service || h == t.Service+"."+t.Namespace || h == t.fqdn() || h == t.Service+"."+t.Namespace+".svc"
}

// host is how new destinations name the Service: as the VirtualService
// already does, else the short name.
func (t *target) host() string {
	if t.VS != nil {
		for _, r := range httpRoutes(t.VS) {
			dests, _, _ := unstructured.NestedSlice(r, "route")
			for _, d := range dests {
				h, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
				if t.hostMatches(h) {
					return h
				}
			}
		}
	}
	return t.Service
}

// common are the flags every canary subcommand takes.
type common struct {
	Service      string
	VersionLabel string
	t            *target
}

func (o *common) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.VersionLabel, "version-label", "version", "Pod label that tells versions apart")
}

// load reads the Service, its pods (one labelled list), and the
// DestinationRule and VirtualService for its host in the namespace.
func (o *common) load(ctx context.Context, c *cli.Context, args []string) error {
	ns, _, err := c.Namespace()
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return exitcode.Usagef("name one Service, e.g. kubectl mesh canary status -n NAMESPACE SERVICE")
	}
	o.Service = args[0]
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	svcs, err := reads.List[*corev1.Service](ctx, rd, reads.Request{Resource: mesh.Services, Namespace: ns})
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	services := map[string]*corev1.Service{}
	for _, svc := range svcs {
		services[svc.Name] = svc
	}
	svc := services[o.Service]
	if svc == nil {
		return exitcode.Usagef("service %q not found in namespace %s", o.Service, ns)
	}
	if len(svc.Spec.Selector) == 0 {
		return exitcode.Usagef("service %s has no selector: a canary splits the pods it selects", o.Service)
	}
	t := &target{Namespace: ns, Service: o.Service, Selector: svc.Spec.Selector, Ports: svc.Spec.Ports, Versions: map[string]int{}, Services: services}
	pods, err := rd.Metadata(ctx, reads.Request{Resource: mesh.Pods, Namespace: ns, Labels: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return err
	}
	for _, p := range pods {
		if v := p.GetLabels()[o.VersionLabel]; v != "" {
			t.Versions[v]++
		} else {
			t.Unlabelled++
		}
	}
	if len(pods) == 0 {
		return exitcode.Usagef("service %s selects no pods: deploy the stable and canary versions first", o.Service)
	}
	if len(t.Versions) == 0 {
		return exitcode.Usagef("the pods of service %s have no %q label: label the versions, or name the label with --version-label", o.Service, o.VersionLabel)
	}
	for _, kind := range []struct {
		gvr  schema.GroupVersionResource
		kind string
		into **unstructured.Unstructured
		host func(*unstructured.Unstructured) []string
	}{
		{mesh.DestinationRules, "DestinationRule", &t.DR, func(u *unstructured.Unstructured) []string {
			h, _, _ := unstructured.NestedString(u.Object, "spec", "host")
			return []string{h}
		}},
		{mesh.VirtualServices, "VirtualService", &t.VS, func(u *unstructured.Unstructured) []string {
			h, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "hosts")
			return h
		}},
	} {
		list, err := rd.Unstructured(ctx, reads.Request{Resource: kind.gvr, Namespace: ns})
		if err != nil {
			return fmt.Errorf("listing %s: %w", kind.gvr.Resource, err)
		}
		var found []string
		t.list(kind.kind, list)
		for _, u := range list {
			for _, h := range kind.host(u) {
				if t.hostMatches(h) {
					*kind.into = u
					found = append(found, u.GetName())
					break
				}
			}
		}
		if len(found) > 1 {
			sort.Strings(found)
			return exitcode.Usagef("%d %s route %s (%s): Istio merges them unpredictably (IST0109); keep one, then start the canary",
				len(found), kind.gvr.Resource, o.Service, strings.Join(found, ", "))
		}
	}
	if err := loadHTTPRoutes(ctx, rd, t); err != nil {
		return err
	}
	o.t = t
	return parseState(o)
}

// loadHTTPRoutes finds the HTTPRoutes that route the Service: attached to
// it (mesh) or to a Gateway, with a rule sending to it or to one of its
// version Services. A cluster without the Gateway API has none.
func loadHTTPRoutes(ctx context.Context, rd *reads.Reader, t *target) error {
	list, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.HTTPRoutes, Namespace: t.Namespace})
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("listing httproutes: %w", err)
	}
	t.GatewayAPI = true
	t.list("HTTPRoute", list)
	var withState *unstructured.Unstructured
	for _, hr := range list {
		if attached(hr, t.Service) && routesTo(hr, t.isBackend) {
			t.HRs = append(t.HRs, hr)
			var st State
			if json.Unmarshal([]byte(hr.GetAnnotations()[AnnotationState]), &st) == nil && st.Service == t.Service {
				withState = hr
			}
		}
	}
	if len(t.HRs) > 0 && t.VS != nil {
		return exitcode.Usagef("both VirtualService %s and HTTPRoute %s route service %s: Istio does not support mixing the two APIs for one workload; keep one, then start the canary",
			t.VS.GetName(), t.HRs[0].GetName(), t.Service)
	}
	switch {
	case withState != nil:
		t.HR, t.HRs = withState, nil
	case len(t.HRs) == 1:
		t.HR, t.HRs = t.HRs[0], nil
	}
	return nil
}

// parseState reads the canary's state from the VirtualService or
// HTTPRoute, if any.
func parseState(o *common) error {
	t := o.t
	t.State = nil
	obj := t.routeObject()
	if obj == nil {
		return nil
	}
	raw := obj.GetAnnotations()[AnnotationState]
	if raw == "" {
		return nil
	}
	t.State = &State{}
	err := json.Unmarshal([]byte(raw), t.State)
	if err == nil && t.State.Header != "" {
		_, _, err = parseHeader(t.State.Header)
	}
	if stable, canary := t.State.backends(); err != nil || stable == "" || canary == "" || t.gateway() != t.State.gateway() {
		return exitcode.New(exitcode.DataErr, fmt.Errorf("%s %s has an unreadable %s annotation: fix or remove it", obj.GetKind(), obj.GetName(), AnnotationState))
	}
	return nil
}

// inProgress returns the state or a usage error saying how to start.
func (o *common) inProgress() (*State, error) {
	if o.t.State == nil {
		return nil, exitcode.Usagef("no canary in progress for service %s in namespace %s: start one with kubectl mesh canary start -n %s %s", o.Service, o.t.Namespace, o.t.Namespace, o.Service)
	}
	return o.t.State, nil
}

func versionList(m map[string]int) string {
	var vs []string
	for v := range m {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return strings.Join(vs, ", ")
}

// change writes u: over live, the team's object as the target read it
// (put back whole), or as a new object when live is nil. The Runner's
// diff starts from what the target read when it knows: the live object,
// or a name no object of the kind has.
func (t *target) change(u, live *unstructured.Unstructured) pipeline.Change {
	if live != nil {
		return pipeline.Change{Op: pipeline.Replace, Object: u, Known: true, Live: live}
	}
	names, listed := t.listed[u.GetKind()]
	return pipeline.Change{Op: pipeline.Apply, Object: u, Known: listed && !names[u.GetName()]}
}

// list records the names of the namespace's objects of a kind.
func (t *target) list(kind string, items []*unstructured.Unstructured) {
	if t.listed == nil {
		t.listed = map[string]map[string]bool{}
	}
	names := map[string]bool{}
	for _, u := range items {
		names[u.GetName()] = true
	}
	t.listed[kind] = names
}

func setState(vs *unstructured.Unstructured, s *State) {
	value := ""
	if s != nil {
		b, _ := json.Marshal(s)
		value = string(b)
	}
	setAnnotation(vs, AnnotationState, value)
}

// setAnnotation sets key, or removes it when value is "".
func setAnnotation(u *unstructured.Unstructured, key, value string) {
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	if value == "" {
		delete(a, key)
	} else {
		a[key] = value
	}
	if len(a) == 0 {
		a = nil
	}
	u.SetAnnotations(a)
}

// addedSubsets lists the subsets canaries added to dr.
func addedSubsets(dr *unstructured.Unstructured) []string {
	if dr == nil || dr.GetAnnotations()[AnnotationSubsets] == "" {
		return nil
	}
	return strings.Split(dr.GetAnnotations()[AnnotationSubsets], ",")
}

func setAddedSubsets(dr *unstructured.Unstructured, names []string) {
	setAnnotation(dr, AnnotationSubsets, strings.Join(names, ","))
}
