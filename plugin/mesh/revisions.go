// Package mesh reads what Istio put in a cluster: control-plane revisions
// and tags, and which pods carry a sidecar. Workflows share it.
package mesh

import (
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Labels Istio uses for injection and revisions.
const (
	LabelRev           = "istio.io/rev"
	LabelTag           = "istio.io/tag"
	LabelInjection     = "istio-injection"
	AnnotationStatus   = "sidecar.istio.io/status"
	AnnotationInject   = "sidecar.istio.io/inject"
	LabelInjectPod     = "sidecar.istio.io/inject"
	DefaultRevision    = "default"
	ProxyContainerName = "istio-proxy"
)

// ControlPlane is one installed istiod revision.
type ControlPlane struct {
	Revision  string
	Namespace string
	Tags      []string // revision tags pointing at it
}

// Revisions lists istiod Deployments (label app=istiod) and the revision
// tags (injector webhooks labelled istio.io/tag): metadata is enough. Two
// list calls, or none when the command lists these kinds anyway.
func Revisions(ctx context.Context, r *reads.Reader) ([]ControlPlane, error) {
	deps, err := r.Metadata(ctx, reads.Request{Resource: Deployments, Labels: "app=istiod"})
	if err != nil {
		return nil, err
	}
	byRev := map[string]*ControlPlane{}
	var out []*ControlPlane
	for _, d := range deps {
		rev := d.GetLabels()[LabelRev]
		if rev == "" {
			rev = DefaultRevision
		}
		if byRev[rev] == nil {
			cp := &ControlPlane{Revision: rev, Namespace: d.GetNamespace()}
			byRev[rev] = cp
			out = append(out, cp)
		}
	}
	hooks, err := r.Metadata(ctx, reads.Request{Resource: MutatingWebhooks, Labels: LabelTag})
	if err != nil {
		return nil, err
	}
	for _, h := range hooks {
		tag, rev := h.GetLabels()[LabelTag], h.GetLabels()[LabelRev]
		if cp := byRev[rev]; cp != nil && tag != "" {
			cp.Tags = append(cp.Tags, tag)
		}
	}
	res := make([]ControlPlane, len(out))
	for i, cp := range out {
		sort.Strings(cp.Tags)
		res[i] = *cp
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Revision < res[j].Revision })
	return res, nil
}

// Resolve maps a revision or tag name to the control plane serving it.
func Resolve(cps []ControlPlane, name string) (ControlPlane, bool) {
	for _, cp := range cps {
		if cp.Revision == name {
			return cp, true
		}
		for _, t := range cp.Tags {
			if t == name {
				return cp, true
			}
		}
	}
	return ControlPlane{}, false
}

// Names lists every revision and tag a namespace can be labelled with.
func Names(cps []ControlPlane) []string {
	var n []string
	for _, cp := range cps {
		n = append(n, cp.Revision)
		n = append(n, cp.Tags...)
	}
	sort.Strings(n)
	return n
}

// InjectionLabels returns the namespace labels that select name for
// injection: istio-injection=enabled for the default revision (or the
// "default" tag), istio.io/rev=<name> otherwise. Never both (IST0123).
func InjectionLabels(name string) map[string]string {
	if name == DefaultRevision {
		return map[string]string{LabelInjection: "enabled"}
	}
	return map[string]string{LabelRev: name}
}

// NamespaceNames lists the cluster's namespaces, for prompts.
func NamespaceNames(ctx context.Context, r *reads.Reader) ([]string, error) {
	list, err := r.Metadata(ctx, reads.Request{Resource: Namespaces})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list))
	for _, n := range list {
		names = append(names, n.GetName())
	}
	return names, nil
}

// AskNamespace asks which namespace to work on, among the cluster's, with
// def preselected.
func AskNamespace(ctx context.Context, r *reads.Reader, p prompt.Prompter, question, def string) (string, error) {
	names, err := NamespaceNames(ctx, r)
	if err != nil {
		return "", err
	}
	return p.Select(question, names, def)
}

// InjectedFrom is the revision or tag a namespace's labels select for
// injection ("default" for istio-injection=enabled), "" when none. The
// revision label wins, as it does in Istio's webhooks.
func InjectedFrom(labels map[string]string) string {
	if r := labels[LabelRev]; r != "" {
		return r
	}
	if labels[LabelInjection] == "enabled" {
		return DefaultRevision
	}
	return ""
}

// RevisionQuestion is PickRevision's question on p, or nil (never ask)
// when there is no terminal to ask on.
func RevisionQuestion(p prompt.Prompter) func(names []string) (string, error) {
	if p == nil {
		return nil
	}
	return func(names []string) (string, error) {
		return p.Select("Revision or tag to inject from:", names, names[0])
	}
}

// PickRevision returns the revision or tag to inject from: requested when
// it is installed, the only one installed, or the answer of ask (nil when
// nobody can be asked).
func PickRevision(planes []ControlPlane, requested string, ask func(names []string) (string, error)) (string, error) {
	names := Names(planes)
	if len(planes) == 0 {
		return "", exitcode.New(exitcode.Unavailable, errors.New("no Istio control plane found (no istiod Deployment labelled app=istiod): install one first with kubectl mesh install"))
	}
	if requested == "" {
		switch {
		case len(names) == 1:
			return names[0], nil
		case ask != nil:
			return ask(names)
		default:
			return "", exitcode.Usagef("several control-plane revisions and tags are installed (%v): pick one with --revision", names)
		}
	}
	if !slices.Contains(names, requested) {
		return "", exitcode.Usagef("revision %q is not installed: use one of %v", requested, names)
	}
	return requested, nil
}
