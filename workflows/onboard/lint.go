package onboard

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Lint check IDs.
const (
	LintAllowAll   = "AUTHZ-ALLOW-ALL"
	LintOrNotAnd   = "AUTHZ-OR-NOT-AND"
	LintDenyL7     = "AUTHZ-DENY-L7-ON-TCP"
	LintPeerStrict = "AUTHZ-PEER-WITHOUT-STRICT"
	LintUncovered  = "AUTHZ-UNCOVERED-WORKLOADS"
	docAuthz       = "https://istio.io/latest/docs/reference/config/security/authorization-policy/"
	docBestPract   = "https://istio.io/latest/docs/ops/best-practices/security/#safer-authorization-policy-patterns"
)

// existingPolicies are the namespace's AuthorizationPolicies the bundle
// does not replace, linted together with the planned ones.
func (o *Options) existingPolicies(ctx context.Context, c *cli.Context) ([]*unstructured.Unstructured, error) {
	if o.live == nil {
		return nil, nil
	}
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	list, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.AuthorizationPolicies, Namespace: o.Namespace})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	planned := map[string]bool{}
	for _, p := range o.authorizationPolicies() {
		planned[p.GetName()] = true
	}
	var out []*unstructured.Unstructured
	for _, u := range list {
		if !planned[u.GetName()] {
			out = append(out, u)
		}
	}
	return out, nil
}

// http-only fields: on a TCP connection Istio cannot evaluate them.
var httpSource = []string{"requestPrincipals", "notRequestPrincipals"}
var httpOperation = []string{"methods", "notMethods", "paths", "notPaths", "hosts", "notHosts"}

// lint reviews AuthorizationPolicies of ns: allow-all rules, OR written
// where AND was meant, L7-only DENY rules that also deny raw TCP, peer
// identity rules while mTLS is not STRICT, and workloads no ALLOW policy
// covers. workloads are the label sets of the namespace's pods.
func lint(ns, mode string, policies []*unstructured.Unstructured, workloads []map[string]string) []pipeline.Check {
	var allowAll, orAnd, denyL7, denyL7Scoped, peer []string
	var allowSelectors []labels.Selector
	hasAllow := false
	for _, p := range policies {
		ref := "AuthorizationPolicy/" + p.GetName() + " -n " + p.GetNamespace()
		action, _, _ := unstructured.NestedString(p.Object, "spec", "action")
		if action == "" {
			action = "ALLOW"
		}
		rules, hasRules, _ := unstructured.NestedSlice(p.Object, "spec", "rules")
		sel, _, _ := unstructured.NestedStringMap(p.Object, "spec", "selector", "matchLabels")
		if action == "ALLOW" && hasRules {
			hasAllow = true
			allowSelectors = append(allowSelectors, labels.SelectorFromSet(sel))
		}
		if action == "ALLOW" && !hasRules {
			hasAllow = true // allow-nothing: makes every uncovered workload unreachable
		}
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			from, _, _ := unstructured.NestedSlice(rule, "from")
			to, _, _ := unstructured.NestedSlice(rule, "to")
			_, hasWhen := rule["when"]
			if action == "ALLOW" && len(from) == 0 && len(to) == 0 && !hasWhen {
				allowAll = append(allowAll, ref)
			}
			if splitFields(from, "source") || splitFields(to, "operation") {
				orAnd = append(orAnd, ref)
			}
			if action == "DENY" && usesHTTP(rule) {
				if scoped(from) {
					denyL7Scoped = append(denyL7Scoped, ref)
				} else {
					denyL7 = append(denyL7, ref)
				}
			}
			if action == "ALLOW" && mode != mesh.ModeStrict && peerFields(from) {
				peer = append(peer, ref)
			}
		}
	}
	var out []pipeline.Check
	add := func(id string, sev pipeline.Severity, refs []string, msg, hint, url string) {
		if len(refs) > 0 {
			out = append(out, pipeline.Check{ID: id, Severity: sev, Objects: uniq(refs), Message: msg, Hint: hint, URL: url})
		}
	}
	add(LintAllowAll, pipeline.Error, allowAll, "an ALLOW rule with no from, to or when allows every request: it cancels the namespace's deny-by-default",
		"list the callers (principals, namespaces) or operations the rule is for", docBestPract)
	add(LintOrNotAnd, pipeline.Warning, orAnd, "separate from/to entries are OR-ed: a request matching any one of them is allowed; fields inside one entry are AND-ed",
		"put fields that must all hold into one from (or to) entry", docAuthz)
	add(LintDenyL7, pipeline.Warning, denyL7, "DENY rules with HTTP-only fields (paths, methods, hosts, request principals) deny every connection to TCP ports of the selected workloads",
		"scope the DENY rule to HTTP ports (to.operation.ports) or to the callers it is meant for", docAuthz)
	add(LintDenyL7, pipeline.Info, denyL7Scoped, "DENY rules with HTTP-only fields deny all TCP connections of the named callers (their requests are expected to be HTTP)", "", docAuthz)
	add(LintPeerStrict, pipeline.Warning, peer, fmt.Sprintf("ALLOW rules match on principals or namespaces while the namespace is %s: callers without a sidecar carry no identity and are denied", mode),
		"move the namespace to STRICT with kubectl mesh migrate-mtls once callers are in the mesh", docAuthz)
	if hasAllow {
		var uncovered []string
		for _, w := range workloads {
			covered := false
			for _, s := range allowSelectors {
				if s.Matches(labels.Set(w)) {
					covered = true
					break
				}
			}
			if !covered {
				uncovered = append(uncovered, describe(w))
			}
		}
		add(LintUncovered, pipeline.Warning, uncovered, "no ALLOW policy covers these workloads: with deny-by-default in place they accept no request",
			"add them to an ALLOW policy (or its selector)", docAuthz)
	}
	return out
}

// splitFields reports OR-ed entries that each name a different field,
// the shape of "namespaces AND principals" written as two entries.
func splitFields(entries []any, key string) bool {
	if len(entries) < 2 {
		return false
	}
	kinds := map[string]bool{}
	for _, e := range entries {
		m, _, _ := unstructured.NestedMap(e.(map[string]any), key)
		if len(m) != 1 {
			return false
		}
		for k := range m {
			kinds[k] = true
		}
	}
	return len(kinds) > 1
}

func usesHTTP(rule map[string]any) bool {
	from, _, _ := unstructured.NestedSlice(rule, "from")
	to, _, _ := unstructured.NestedSlice(rule, "to")
	if names(from, "source", httpSource...) || names(to, "operation", httpOperation...) {
		return true
	}
	when, _, _ := unstructured.NestedSlice(rule, "when")
	for _, w := range when {
		key, _, _ := unstructured.NestedString(w.(map[string]any), "key")
		if strings.HasPrefix(key, "request.") {
			return true
		}
	}
	return false
}

// names reports whether any entry's field (source, operation) sets one of keys.
func names(entries []any, field string, keys ...string) bool {
	for _, e := range entries {
		m, _, _ := unstructured.NestedMap(e.(map[string]any), field)
		for _, k := range keys {
			if _, ok := m[k]; ok {
				return true
			}
		}
	}
	return false
}

// scoped: the rule names the callers it applies to.
func scoped(from []any) bool { return names(from, "source", "principals") }

func peerFields(from []any) bool { return names(from, "source", "principals", "namespaces") }

func describe(l map[string]string) string {
	var kv []string
	for k, v := range l {
		if k == "pod-template-hash" || k == "controller-revision-hash" || k == "pod-template-generation" {
			continue
		}
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return "pods " + strings.Join(kv, ",")
}

func uniq(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
