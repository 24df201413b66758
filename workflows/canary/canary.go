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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
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
	StableSubset string `json:"stableSubset"`
	CanarySubset string `json:"canarySubset"`
	Weight       int    `json:"weight"`
	Steps        []int  `json:"steps"`
	Header       string `json:"header,omitempty"`
	Mirror       int    `json:"mirror,omitempty"`
	Route        string `json:"route"`
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

Argo CD users: the weights change outside Git while a canary runs; add an
ignoreDifferences entry for /spec/http of the VirtualService, or export the
plan with -o yaml / --output-dir and commit it instead.`,
	}
}

// Workflows implements pipeline.Group.
func (Group) Workflows() []pipeline.Workflow {
	return []pipeline.Workflow{newStart(), newStep(), newPromote(), newAbort(), newStatus()}
}

// target is the Service and what routes to it, read once.
type target struct {
	Namespace, Service string
	Selector           map[string]string
	Versions           map[string]int // version label value → pods
	Unlabelled         int
	DR, VS             *unstructured.Unstructured // nil when there is none
	State              *State                     // nil when no canary is in progress
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
	cl, err := c.Clients()
	if err != nil {
		return err
	}
	svc, err := cl.Kube.CoreV1().Services(ns).Get(ctx, o.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return exitcode.Usagef("service %q not found in namespace %s", o.Service, ns)
	} else if err != nil {
		return err
	}
	if len(svc.Spec.Selector) == 0 {
		return exitcode.Usagef("service %s has no selector: a canary splits the pods it selects", o.Service)
	}
	t := &target{Namespace: ns, Service: o.Service, Selector: svc.Spec.Selector, Versions: map[string]int{}}
	pods, err := cl.Metadata.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(ns).List(ctx,
		metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if v := p.Labels[o.VersionLabel]; v != "" {
			t.Versions[v]++
		} else {
			t.Unlabelled++
		}
	}
	if len(pods.Items) == 0 {
		return exitcode.Usagef("service %s selects no pods: deploy the stable and canary versions first", o.Service)
	}
	if len(t.Versions) == 0 {
		return exitcode.Usagef("the pods of service %s have no %q label: label the versions, or name the label with --version-label", o.Service, o.VersionLabel)
	}
	for _, kind := range []struct {
		gvr  schema.GroupVersionResource
		into **unstructured.Unstructured
		host func(*unstructured.Unstructured) []string
	}{
		{mesh.DestinationRules, &t.DR, func(u *unstructured.Unstructured) []string {
			h, _, _ := unstructured.NestedString(u.Object, "spec", "host")
			return []string{h}
		}},
		{mesh.VirtualServices, &t.VS, func(u *unstructured.Unstructured) []string {
			h, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "hosts")
			return h
		}},
	} {
		list, err := cl.Dynamic.Resource(kind.gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing %s: %w", kind.gvr.Resource, err)
		}
		var found []string
		for i := range list.Items {
			for _, h := range kind.host(&list.Items[i]) {
				if t.hostMatches(h) {
					*kind.into = &list.Items[i]
					found = append(found, list.Items[i].GetName())
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
	o.t = t
	return parseState(o)
}

// parseState reads the canary's state from the VirtualService, if any.
func parseState(o *common) error {
	t := o.t
	t.State = nil
	if t.VS == nil {
		return nil
	}
	raw := t.VS.GetAnnotations()[AnnotationState]
	if raw == "" {
		return nil
	}
	t.State = &State{}
	if err := json.Unmarshal([]byte(raw), t.State); err != nil || t.State.StableSubset == "" || t.State.CanarySubset == "" {
		return exitcode.New(exitcode.DataErr, fmt.Errorf("VirtualService %s has an unreadable %s annotation: fix or remove it", t.VS.GetName(), AnnotationState))
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

// change is the engine operation for an object we built or edited.
func change(u *unstructured.Unstructured, existed bool) pipeline.Change {
	if existed {
		return pipeline.Change{Op: pipeline.Replace, Object: u}
	}
	return pipeline.Change{Op: pipeline.Apply, Object: u}
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
