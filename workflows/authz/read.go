package authz

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Marks on the policies this workflow writes.
const (
	// annotationFor says which workload a generated policy is for ("*" for allow-nothing).
	annotationFor = "kubectl-mesh.io/migrate-authz"
	// annotationSince is when the policy went into audit.
	annotationSince = "kubectl-mesh.io/audit-since"
	// annotationUnobserved lists --allow-from callers, allowed without evidence.
	annotationUnobserved = "kubectl-mesh.io/allowed-without-evidence"
	annotationDryRun     = "istio.io/dry-run"
	allowNothingName     = "allow-nothing"
)

// snapshot is everything the migration reads, in one pass of list calls.
type snapshot struct {
	Root            string
	Namespace       string
	NamespaceExists bool
	PAs             []mesh.PeerAuth // every namespace (the chain reaches the root)
	Policies        []policy        // in the namespace and the root namespace
	Workloads       []mesh.Workload // in the namespace
	// Selectors are the controllers' matchLabels, by "Kind/name".
	Selectors map[string]map[string]string
	// ServiceAccounts are "namespace/name" of every service account.
	ServiceAccounts map[string]bool
}

var controllers = map[string]schema.GroupVersionResource{
	"Deployment":  {Group: "apps", Version: "v1", Resource: "deployments"},
	"StatefulSet": {Group: "apps", Version: "v1", Resource: "statefulsets"},
	"DaemonSet":   {Group: "apps", Version: "v1", Resource: "daemonsets"},
}

var serviceAccounts = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}

// read lists, concurrently, what the plan and its checks need: a fixed
// number of list calls whatever the cluster's size.
func read(ctx context.Context, c *cli.Context, root, ns string) (*snapshot, error) {
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	s := &snapshot{Root: root, Namespace: ns, Selectors: map[string]map[string]string{}, ServiceAccounts: map[string]bool{}}
	g, ctx := errgroup.WithContext(ctx)
	var pas, aps, rootAPs []*unstructured.Unstructured
	list := func(gvr schema.GroupVersionResource, namespace string, into *[]*unstructured.Unstructured) {
		g.Go(func() (err error) {
			if *into, err = rd.Unstructured(ctx, reads.Request{Resource: gvr, Namespace: namespace}); err != nil {
				return fmt.Errorf("listing %s: %w", gvr.Resource, err)
			}
			return nil
		})
	}
	list(mesh.PeerAuthentications, "", &pas)
	list(mesh.AuthorizationPolicies, ns, &aps)
	if root != ns {
		list(mesh.AuthorizationPolicies, root, &rootAPs)
	}
	ctrls := make([][]*unstructured.Unstructured, 0, len(controllers))
	kinds := make([]string, 0, len(controllers))
	for kind := range controllers {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for range kinds {
		ctrls = append(ctrls, nil)
	}
	for i, kind := range kinds {
		list(controllers[kind], ns, &ctrls[i])
	}
	g.Go(func() error {
		var err error
		if s.NamespaceExists, err = rd.Exists(ctx, reads.Request{Resource: mesh.Namespaces}, ns); err != nil {
			return fmt.Errorf("listing namespaces: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		var err error
		s.Workloads, err = mesh.Inventory(ctx, rd, ns)
		return err
	})
	g.Go(func() error {
		l, err := rd.Metadata(ctx, reads.Request{Resource: serviceAccounts})
		if err != nil {
			return fmt.Errorf("listing service accounts: %w", err)
		}
		for _, sa := range l {
			s.ServiceAccounts[sa.GetNamespace()+"/"+sa.GetName()] = true
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, kind := range kinds {
		for _, u := range ctrls[i] {
			sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
			if exprs, _, _ := unstructured.NestedSlice(u.Object, "spec", "selector", "matchExpressions"); len(exprs) == 0 && len(sel) > 0 {
				s.Selectors[kind+"/"+u.GetName()] = sel
			}
		}
	}
	for _, u := range pas {
		p, err := mesh.ParsePeerAuth(u)
		if err != nil {
			return nil, err
		}
		s.PAs = append(s.PAs, p)
	}
	for _, u := range append(aps, rootAPs...) {
		s.Policies = append(s.Policies, parsePolicy(u))
	}
	return s, nil
}

// policy is what an AuthorizationPolicy decides on, as far as callers go.
type policy struct {
	Name, Namespace string
	Action          string // ALLOW, DENY, CUSTOM, AUDIT
	Selector        map[string]string
	DryRun          bool
	// Rules are the callers each rule admits; a rule with conditions this
	// workflow cannot evaluate (to, when, not-sources) admits nobody here,
	// so that a request is only counted as allowed when it surely is.
	Rules  []rule
	NoSpec bool // no rules at all: an ALLOW policy that allows nothing
	For    string
	Since  string
	Obj    *unstructured.Unstructured
}

// rule is one ALLOW rule's callers; Any when it names none.
type rule struct {
	Principals, Namespaces []string
	Any                    bool
}

func parsePolicy(u *unstructured.Unstructured) policy {
	p := policy{Name: u.GetName(), Namespace: u.GetNamespace(), Obj: u, Action: "ALLOW",
		DryRun: u.GetAnnotations()[annotationDryRun] == "true",
		For:    u.GetAnnotations()[annotationFor], Since: u.GetAnnotations()[annotationSince]}
	if a, _, _ := unstructured.NestedString(u.Object, "spec", "action"); a != "" {
		p.Action = a
	}
	p.Selector, _, _ = unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	rules, found, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	p.NoSpec = !found || len(rules) == 0
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		if _, ok := rm["to"]; ok {
			p.Rules = append(p.Rules, rule{})
			continue
		}
		if _, ok := rm["when"]; ok {
			p.Rules = append(p.Rules, rule{})
			continue
		}
		from, _, _ := unstructured.NestedSlice(rm, "from")
		if len(from) == 0 {
			p.Rules = append(p.Rules, rule{Any: true})
			continue
		}
		var out rule
		for _, f := range from {
			src, _, _ := unstructured.NestedMap(f.(map[string]any), "source")
			if len(src) == 0 {
				out.Any = true
			}
			principals, _, _ := unstructured.NestedStringSlice(src, "principals")
			namespaces, _, _ := unstructured.NestedStringSlice(src, "namespaces")
			if len(principals)+len(namespaces) == 0 || len(src) > len(principalKeys(src)) {
				continue // other source conditions (ipBlocks, not*): not evaluated
			}
			out.Principals = append(out.Principals, principals...)
			out.Namespaces = append(out.Namespaces, namespaces...)
		}
		p.Rules = append(p.Rules, out)
	}
	return p
}

func principalKeys(src map[string]any) []string {
	var out []string
	for _, k := range []string{"principals", "namespaces"} {
		if _, ok := src[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// Ref names the policy as kubectl does.
func (p policy) Ref() string { return "AuthorizationPolicy/" + p.Name + " -n " + p.Namespace }

// selects reports whether the policy applies to a pod with these labels in ns.
func (p policy) selects(ns string, podLabels map[string]string, root string) bool {
	if p.Namespace != ns && p.Namespace != root {
		return false
	}
	for k, v := range p.Selector {
		if podLabels[k] != v {
			return false
		}
	}
	return true
}

// admits reports whether an ALLOW rule of p lets principal in.
func (p policy) admits(principal string) bool {
	for _, r := range p.Rules {
		if r.Any {
			return true
		}
		if principal == "" {
			continue // plaintext: no identity to match
		}
		if slices.Contains(r.Principals, principal) || slices.Contains(r.Principals, "*") {
			return true
		}
		for _, ns := range r.Namespaces {
			if ns == "*" || ns == principalNamespace(principal) {
				return true
			}
		}
	}
	return false
}

// denyByDefault is an ALLOW policy for a whole namespace that allows nothing.
func (p policy) denyByDefault() bool {
	return p.Action == "ALLOW" && len(p.Selector) == 0 && p.NoSpec
}

// audit returns the policies an earlier run of this workflow wrote in the namespace.
func (s *snapshot) audit() []policy {
	var out []policy
	for _, p := range s.Policies {
		if p.Namespace == s.Namespace && p.For != "" {
			out = append(out, p)
		}
	}
	return out
}

// principalNamespace is NS of cluster.local/ns/NS/sa/SA, "" otherwise.
func principalNamespace(p string) string {
	if parts := strings.Split(p, "/"); len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" {
		return parts[2]
	}
	return ""
}
