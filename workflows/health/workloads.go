package health

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// permissiveTooLong is when an explicit PERMISSIVE policy counts as a
// migration that stalled.
const permissiveTooLong = 30 * 24 * time.Hour

func checkNamespaces(rep *Report, s *cluster, only string) {
	const cat = "injection"
	names := mesh.Names(s.Planes)
	for _, ns := range s.Namespaces {
		if only != "" && ns.Name != only {
			continue
		}
		rev, inj := ns.Labels[mesh.LabelRev], ns.Labels[mesh.LabelInjection]
		switch {
		case rev != "" && inj != "":
			rep.add(cat, "namespace "+ns.Name+" has one injection label", pipeline.Check{ID: "CHECK-INJECTION-LABELS", Severity: pipeline.Error,
				Message: fmt.Sprintf("both istio-injection=%s and istio.io/rev=%s (IST0123): which one wins depends on the webhooks", inj, rev),
				Hint:    "kubectl mesh inject -n " + ns.Name + " --revision R keeps exactly one",
				URL:     "https://istio.io/latest/docs/reference/config/analysis/ist0123/"})
		case rev != "" && !slices.Contains(names, rev):
			rep.add(cat, "namespace "+ns.Name+" selects an installed revision", pipeline.Check{ID: "CHECK-INJECTION-REVISION", Severity: pipeline.Error,
				Message: "istio.io/rev=" + rev + " matches no revision or tag: new pods get no sidecar",
				Hint:    "kubectl mesh inject -n " + ns.Name + " --revision " + strings.Join(names, "|")})
		case rev != "" || inj == "enabled":
			rep.pass(cat, "CHECK-INJECTION-REVISION", "namespace "+ns.Name+" → "+injection(ns))
		}
	}
}

func injectedNamespaces(s *cluster, only string) map[string]string {
	out := map[string]string{}
	for _, ns := range s.Namespaces {
		if r := injection(ns); r != "" && (only == "" || ns.Name == only) {
			out[ns.Name] = r
		}
	}
	return out
}

func checkSidecars(rep *Report, s *cluster, only string) {
	const cat = "sidecars"
	injected := injectedNamespaces(s, only)
	byNS := map[string][]mesh.Workload{}
	for _, w := range s.Workloads {
		byNS[w.Namespace] = append(byNS[w.Namespace], w)
	}
	for _, ns := range sortedKeys(injected) {
		ws := byNS[ns]
		want := injected[ns]
		if cp, ok := mesh.Resolve(s.Planes, want); ok {
			want = cp.Revision
		}
		var missing, skew, unlimited []string
		for _, w := range ws {
			for _, p := range w.Pods {
				switch {
				case !p.HasSidecar && !p.OptOut && !p.HostNetwork:
					missing = append(missing, w.Ref())
				case p.HasSidecar && p.Revision != want:
					skew = append(skew, fmt.Sprintf("%s (%s)", w.Ref(), p.Revision))
				}
				if p.HasSidecar && proxyUnlimited(p.Object) {
					unlimited = append(unlimited, w.Ref())
				}
			}
		}
		cov := mesh.Coverage(ws)
		if len(missing) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: every pod has a sidecar (%s)", ns, cov), pipeline.Check{ID: "CHECK-SIDECAR-COVERAGE", Severity: pipeline.Warning,
				Message: "without a sidecar: " + short(missing),
				Hint:    "kubectl mesh inject -n " + ns + " --restart"})
		} else {
			rep.pass(cat, "CHECK-SIDECAR-COVERAGE", fmt.Sprintf("namespace %s: every pod has a sidecar (%s)", ns, cov))
		}
		if len(skew) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: proxies match revision %s", ns, want), pipeline.Check{ID: "CHECK-PROXY-SKEW", Severity: pipeline.Warning,
				Message: "older proxies (IST0158): " + short(skew),
				Hint:    "kubectl mesh inject -n " + ns + " --restart",
				URL:     "https://istio.io/latest/docs/reference/config/analysis/ist0158/"})
		}
		if len(unlimited) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: sidecars have resource limits", ns), pipeline.Check{ID: "CHECK-PROXY-LIMITS", Severity: pipeline.Warning,
				Message: "istio-proxy without limits: " + short(unlimited),
				Hint:    "set sidecar.istio.io/proxyMemoryLimit and proxyCPULimit, or global.proxy.resources",
				URL:     "https://istio.io/latest/docs/reference/config/annotations/"})
		}
	}
}

func proxyUnlimited(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == mesh.ProxyContainerName {
			return len(c.Resources.Limits) == 0
		}
	}
	return false
}

func checkPosture(rep *Report, s *cluster, root, only string, now time.Time) {
	const cat = "mtls"
	for _, ns := range sortedKeys(injectedNamespaces(s, only)) {
		mode, source := mesh.ChainFor(root, s.PAs, ns, nil).Mode(0)
		name := fmt.Sprintf("namespace %s is STRICT", ns)
		switch mode {
		case mesh.ModeStrict:
			rep.pass(cat, "CHECK-MTLS-STRICT", name)
		case mesh.ModePermissive:
			msg := "PERMISSIVE (Istio's default): plaintext is accepted"
			if source != "" {
				msg = "PERMISSIVE (" + source + "): plaintext is accepted"
				for _, p := range mesh.NamespaceWide(s.PAs, ns) {
					if age := now.Sub(p.Created); p.Mode == mesh.ModePermissive && age > permissiveTooLong {
						msg += fmt.Sprintf("; left PERMISSIVE for %d days", int(age.Hours()/24))
					}
					break
				}
			}
			rep.add(cat, name, pipeline.Check{ID: "CHECK-MTLS-STRICT", Severity: pipeline.Warning,
				Message: msg,
				Hint:    "kubectl mesh migrate-mtls -n " + ns,
				URL:     "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"})
		default:
			rep.add(cat, name, pipeline.Check{ID: "CHECK-MTLS-STRICT", Severity: pipeline.Warning,
				Message: mode + " (" + source + ")",
				Hint:    "kubectl mesh migrate-mtls -n " + ns + " --stage permissive"})
		}
	}
}

func checkAntiPatterns(rep *Report, s *cluster, only string) {
	const cat = "anti-patterns"
	var allowAll []string
	for _, ap := range s.AuthZ {
		if only != "" && ap.GetNamespace() != only {
			continue
		}
		action, _, _ := unstructured.NestedString(ap.Object, "spec", "action")
		rules, _, _ := unstructured.NestedSlice(ap.Object, "spec", "rules")
		if action != "" && action != "ALLOW" {
			continue
		}
		for _, r := range rules {
			if m, ok := r.(map[string]any); ok && len(m) == 0 {
				allowAll = append(allowAll, ap.GetNamespace()+"/"+ap.GetName())
				break
			}
		}
	}
	if len(allowAll) > 0 {
		rep.add(cat, "no allow-all AuthorizationPolicy", pipeline.Check{ID: "CHECK-ALLOW-ALL", Severity: pipeline.Warning,
			Message: "rules: [{}] allows every request: " + short(allowAll),
			Hint:    "allow named principals, namespaces or paths instead",
			URL:     "https://istio.io/latest/docs/ops/best-practices/security/#use-allow-with-positive-matching-and-deny-with-negative-match"})
	} else {
		rep.pass(cat, "CHECK-ALLOW-ALL", "no allow-all AuthorizationPolicy")
	}
	injected := injectedNamespaces(s, only)
	var noProbes []string
	for _, d := range s.Deployments {
		if _, ok := injected[d.Namespace]; !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != mesh.ProxyContainerName && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
				noProbes = append(noProbes, d.Namespace+"/"+d.Name)
				break
			}
		}
	}
	if len(noProbes) > 0 {
		rep.add(cat, "mesh workloads have readiness and liveness probes", pipeline.Check{ID: "CHECK-PROBES", Severity: pipeline.Warning,
			Message: "missing on: " + short(noProbes),
			Hint:    "without probes traffic reaches pods before they (and their sidecar) are ready",
			URL:     "https://istio.io/latest/docs/ops/configuration/mesh/app-health-check/"})
	} else if len(injected) > 0 {
		rep.pass(cat, "CHECK-PROBES", "mesh workloads have readiness and liveness probes")
	}
}
