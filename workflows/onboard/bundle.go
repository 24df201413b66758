package onboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// AnnotationDryRun is Istio's switch for logging instead of enforcing an
// AuthorizationPolicy.
const AnnotationDryRun = "istio.io/dry-run"

// Plan implements pipeline.Workflow.
func (o *Options) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	existing, err := o.existingPolicies(ctx, c)
	if err != nil {
		return nil, err
	}
	return o.build(c.Now(), existing), nil
}

func obj(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := manifest.New(apiVersion, kind, ns, name)
	u.Object["spec"] = spec
	return u
}

func strs(ss ...string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// build is the pure part of Plan: the bundle in make-before-break order —
// namespace, then identity and policy objects, then routing; the
// allow-nothing policy goes in the same phase as the ALLOW rules so there
// is never a moment where the team is locked out.
func (o *Options) build(now time.Time, existing []*unstructured.Unstructured) *pipeline.Plan {
	ns := o.Namespace
	plan := &pipeline.Plan{Title: fmt.Sprintf("onboard team %s into namespace %s", o.Team, ns)}

	// Namespace: labels for the team and injection, options for re-runs.
	var nsObj *unstructured.Unstructured
	existed := o.live != nil
	if existed {
		nsObj = pipeline.Edit(o.live)
	} else {
		nsObj = manifest.New("v1", "Namespace", "", ns)
	}
	labels := nsObj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	delete(labels, mesh.LabelRev)
	delete(labels, mesh.LabelInjection)
	for k, v := range mesh.InjectionLabels(o.Revision) {
		labels[k] = v
	}
	labels[LabelTeam] = o.Team
	nsObj.SetLabels(labels)
	ann := nsObj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	cfg, _ := json.Marshal(o)
	ann[AnnotationConfig] = string(cfg)
	nsObj.SetAnnotations(ann)
	nsChange := pipeline.Change{Op: pipeline.Apply, Object: nsObj}
	if existed {
		nsChange.Op = pipeline.Replace
	}
	plan.Phases = append(plan.Phases, pipeline.Phase{Name: "namespace", Changes: []pipeline.Change{nsChange}})

	// Security: mTLS, then deny-by-default with explicit callers.
	nsPolicy, _ := mesh.NamespacePolicy(o.pas, ns, o.MTLS, now)
	security := []pipeline.Change{nsPolicy}
	policies := o.authorizationPolicies()
	for _, p := range policies {
		security = append(security, pipeline.Change{Op: pipeline.Apply, Object: p})
	}
	if o.JWTIssuer != "" {
		rule := map[string]any{"issuer": o.JWTIssuer, "jwksUri": o.JWKSURI}
		if len(o.JWTAudiences) > 0 {
			rule["audiences"] = strs(o.JWTAudiences...)
		}
		security = append(security, pipeline.Change{Op: pipeline.Apply, Object: obj("security.istio.io/v1", "RequestAuthentication", ns, "jwt", map[string]any{"jwtRules": []any{rule}})})
	}
	egress := append([]string{"./*", o.root + "/*"}, prefixAll(o.EgressTo)...)
	security = append(security, pipeline.Change{Op: pipeline.Apply, Object: obj("networking.istio.io/v1", "Sidecar", ns, "default",
		map[string]any{"egress": []any{map[string]any{"hosts": strs(egress...)}}})})
	plan.Phases = append(plan.Phases, pipeline.Phase{Name: "security", Changes: security})

	// Access: an external host, and the team's right to edit routing.
	var access []pipeline.Change
	if o.Host != "" {
		svc, port, _ := strings.Cut(o.HostService, ":")
		var portNum int64
		fmt.Sscanf(port, "%d", &portNum)
		gw := obj("networking.istio.io/v1", "Gateway", ns, o.Team+"-external", map[string]any{
			"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": int64(443), "name": "https", "protocol": "HTTPS"},
				"hosts": strs(o.Host),
				"tls":   map[string]any{"mode": "SIMPLE", "credentialName": o.tlsSecret()},
			}},
		})
		vs := obj("networking.istio.io/v1", "VirtualService", ns, o.Team+"-external", map[string]any{
			"hosts":    strs(o.Host),
			"gateways": strs(o.Team + "-external"),
			"http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{
				"host": svc + "." + ns + ".svc.cluster.local", "port": map[string]any{"number": portNum}}}}}},
		})
		access = append(access, pipeline.Change{Op: pipeline.Apply, Object: gw}, pipeline.Change{Op: pipeline.Apply, Object: vs})
	}
	if o.TeamGroup != "" {
		role := manifest.New("rbac.authorization.k8s.io/v1", "Role", ns, "istio-networking-editor")
		role.Object["rules"] = []any{map[string]any{
			"apiGroups": strs("networking.istio.io"),
			"resources": strs("virtualservices", "destinationrules", "serviceentries", "gateways", "sidecars"),
			"verbs":     strs("get", "list", "watch", "create", "update", "patch", "delete"),
		}}
		rb := manifest.New("rbac.authorization.k8s.io/v1", "RoleBinding", ns, o.Team+"-istio-networking")
		rb.Object["roleRef"] = map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "istio-networking-editor"}
		rb.Object["subjects"] = []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": o.TeamGroup}}
		access = append(access, pipeline.Change{Op: pipeline.Apply, Object: role}, pipeline.Change{Op: pipeline.Apply, Object: rb})
	}
	if len(access) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "access", Changes: access})
	}

	plan.Checks = append(plan.Checks, o.mtlsChecks...)
	plan.Checks = append(plan.Checks, o.inputChecks()...)
	plan.Checks = append(plan.Checks, lint(ns, o.MTLS, append(existing, policies...), o.workloadLabels)...)
	plan.Notes = o.notes()
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) { o.summary(w) }
	return plan
}

func prefixAll(nss []string) []string {
	out := make([]string, len(nss))
	for i, n := range nss {
		out[i] = n + "/*"
	}
	return out
}

// authorizationPolicies: allow-nothing (an empty spec denies everything
// not allowed elsewhere) and one ALLOW policy with a positive rule per kind
// of caller; with JWT, a DENY with a negative match for requests from the
// ingress gateway that carry no valid token.
func (o *Options) authorizationPolicies() []*unstructured.Unstructured {
	ns := o.Namespace
	var namespaces, principals []string
	for _, a := range o.AllowFrom {
		c, _ := parseCaller(a)
		switch c.kind {
		case "same-namespace":
			namespaces = append(namespaces, ns)
		case "namespace":
			namespaces = append(namespaces, c.value)
		case "ingress":
			principals = append(principals, o.ingressSA)
		case "sa":
			nsName, sa, _ := strings.Cut(c.value, "/")
			principals = append(principals, fmt.Sprintf("cluster.local/ns/%s/sa/%s", nsName, sa))
		}
	}
	var rules []any
	if len(namespaces) > 0 {
		rules = append(rules, map[string]any{"from": []any{map[string]any{"source": map[string]any{"namespaces": strs(namespaces...)}}}})
	}
	if len(principals) > 0 {
		rules = append(rules, map[string]any{"from": []any{map[string]any{"source": map[string]any{"principals": strs(principals...)}}}})
	}
	out := []*unstructured.Unstructured{
		obj("security.istio.io/v1", "AuthorizationPolicy", ns, "allow-nothing", map[string]any{}),
		obj("security.istio.io/v1", "AuthorizationPolicy", ns, "allow-callers", map[string]any{"action": "ALLOW", "rules": rules}),
	}
	if o.JWTIssuer != "" {
		source := map[string]any{"notRequestPrincipals": strs("*")}
		if len(principals) > 0 && strings.Contains(strings.Join(o.AllowFrom, ","), "ingress") {
			source["principals"] = strs(o.ingressSA)
		}
		out = append(out, obj("security.istio.io/v1", "AuthorizationPolicy", ns, "require-jwt", map[string]any{
			"action": "DENY", "rules": []any{map[string]any{"from": []any{map[string]any{"source": source}}}},
		}))
	}
	if o.AuthzDryRun {
		for _, p := range out {
			p.SetAnnotations(map[string]string{AnnotationDryRun: "true"})
		}
	}
	return out
}

// inputChecks are the warnings about inputs that are valid but will not
// work yet: a missing TLS secret, an unreachable JWKS endpoint.
func (o *Options) inputChecks() []pipeline.Check {
	var out []pipeline.Check
	if o.Host != "" && !o.secret {
		out = append(out, pipeline.Check{ID: "ONBOARD-TLS-SECRET", Severity: pipeline.Warning,
			Message: fmt.Sprintf("TLS Secret %s is missing in %s, where the ingress gateway reads it: %s will not serve HTTPS until it exists", o.tlsSecret(), o.root, o.Host),
			Hint:    fmt.Sprintf("kubectl create secret tls %s -n %s --cert=CERT.pem --key=KEY.pem", o.tlsSecret(), o.root),
			URL:     "https://istio.io/latest/docs/tasks/traffic-management/ingress/secure-ingress/"})
	}
	if o.jwksErr != nil {
		out = append(out, pipeline.Check{ID: "ONBOARD-JWKS-UNREACHABLE", Severity: pipeline.Warning,
			Message: fmt.Sprintf("cannot fetch %s from here (%v): istiod must reach it, or every request with a token fails", o.JWKSURI, oneLine(o.jwksErr)),
			URL:     "https://istio.io/latest/docs/reference/config/security/jwt/"})
	}
	return out
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (o *Options) notes() []string {
	var n []string
	if o.running > 0 && o.MTLS == mesh.ModePermissive {
		n = append(n, fmt.Sprintf("namespace %s runs %d pod(s): it starts PERMISSIVE; move it to STRICT with kubectl mesh migrate-mtls -n %s once the checks below are clear", o.Namespace, o.running, o.Namespace))
	}
	if o.running > 0 {
		n = append(n, fmt.Sprintf("running pods get their sidecar when restarted: kubectl mesh inject -n %s --restart", o.Namespace))
	}
	if o.AuthzDryRun {
		n = append(n, fmt.Sprintf("authorization policies are in dry-run (logged, not enforced); enforce with kubectl mesh onboard %s -n %s --enforce", o.Team, o.Namespace))
	}
	n = append(n, "allow-nothing is applied together with the ALLOW rules, so the named callers never lose access")
	return n
}

func (o *Options) summary(w io.Writer) {
	fmt.Fprintf(w, "Team %s is onboarded in namespace %s:\n", o.Team, o.Namespace)
	fmt.Fprintf(w, "  injection from %s; mTLS %s\n", o.Revision, o.MTLS)
	mode := "enforced"
	if o.AuthzDryRun {
		mode = "dry-run"
	}
	fmt.Fprintf(w, "  callers allowed (%s): %s\n", mode, strings.Join(o.AllowFrom, ", "))
	fmt.Fprintf(w, "  proxies see config from: %s\n", strings.Join(append([]string{o.Namespace, o.root}, o.EgressTo...), ", "))
	if o.JWTIssuer != "" {
		fmt.Fprintf(w, "  JWTs from %s required on requests from the ingress gateway\n", o.JWTIssuer)
	}
	if o.Host != "" {
		fmt.Fprintf(w, "  https://%s → %s\n", o.Host, o.HostService)
	}
	if o.TeamGroup != "" {
		fmt.Fprintf(w, "  group %s may edit Istio networking objects in %s\n", o.TeamGroup, o.Namespace)
	}
}
