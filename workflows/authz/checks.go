package authz

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Check IDs, for --accept.
const (
	CheckNotStrict     = "AUTHZ-NOT-STRICT"
	CheckPlaintext     = "AUTHZ-PLAINTEXT"
	CheckWouldDeny     = "AUTHZ-WOULD-DENY"
	CheckNoTraffic     = "AUTHZ-NO-TRAFFIC"
	CheckNoSidecar     = "AUTHZ-NO-SIDECAR"
	CheckProbes        = "AUTHZ-PROBE-REWRITE"
	CheckStale         = "AUTHZ-STALE-PRINCIPAL"
	CheckInconclusive  = "AUTHZ-INCONCLUSIVE"
	CheckShadowDenied  = "AUTHZ-SHADOW-DENIED"
	CheckAuditTooShort = "AUTHZ-AUDIT-SHORT"
	CheckRelax         = "AUTHZ-RELAX"
	docAuthz           = "https://istio.io/latest/docs/reference/config/security/authorization-policy/"
	docDryRun          = "https://istio.io/latest/docs/tasks/security/authorization/authz-dry-run/"
	docMTLS            = "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"
	docProbes          = "https://istio.io/latest/docs/ops/configuration/mesh/app-health-check/"
	docMetrics         = "https://istio.io/latest/docs/ops/integrations/prometheus/"
	annotationRewrite  = "sidecar.istio.io/rewriteAppHTTPProbers"
)

// checks runs every check of the stage. What would block enforce is shown
// in audit as a warning "before enforce": dry-run policies deny nothing.
// Missing evidence blocks both stages: the policies are built from it.
func (m *migration) checks() []pipeline.Check {
	var out []pipeline.Check
	out = append(out, m.checkEvidence()...)
	for _, f := range []func() []pipeline.Check{m.checkStrict, m.checkDenied, m.checkProbes, m.checkShadow} {
		for _, c := range f() {
			if m.o.Stage == StageAudit && c.Severity == pipeline.Error {
				c.Severity, c.Message = pipeline.Warning, "before enforce: "+c.Message
			}
			out = append(out, c)
		}
	}
	out = append(out, m.checkNoTraffic()...)
	out = append(out, m.checkStale()...)
	out = append(out, m.checkAuditAge()...)
	out = append(out, m.checkRelax()...)
	return out
}

// checkRelax: an audit over enforced policies puts them back in dry-run,
// which enforces nothing.
func (m *migration) checkRelax() []pipeline.Check {
	if m.o.Stage != StageAudit {
		return nil
	}
	var refs []string
	for _, p := range m.o.snap.audit() {
		if !p.DryRun {
			refs = append(refs, p.Ref())
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckRelax, Severity: pipeline.Error, Objects: refs,
		Message: "these policies are enforced: the audit stage puts them back in dry-run, and the namespace then enforces nothing",
		Hint:    "to add callers keep them enforced (--stage enforce --allow-from …); accept with --accept " + CheckRelax + " to go back to audit",
		URL:     docDryRun,
	}}
}

// checkEvidence: no Istio traffic at all, or data that does not reach back
// over the window, is no evidence: inconclusive, never a pass.
func (m *migration) checkEvidence() []pipeline.Check {
	ns, win := m.o.Namespace, m.o.window
	if len(m.ev.Edges) == 0 {
		return []pipeline.Check{{
			ID: CheckInconclusive, Severity: pipeline.Error,
			Message: fmt.Sprintf("Prometheus (%s) has no Istio traffic into namespace %s over the last %s: both queries came back empty (%s)", m.ev.Where, ns, m.o.Window, strings.Join(telemetry.EdgeQueries(ns, win), " ; ")),
			Hint:    "check that Prometheus scrapes the sidecars (istio_requests_total with reporter=destination), or widen --window",
			URL:     docMetrics,
		}}
	}
	if !m.ev.Covers {
		sev := pipeline.Error
		msg := "inconclusive: "
		if m.o.Stage == StageAudit {
			sev, msg = pipeline.Warning, "before enforce: "
		}
		return []pipeline.Check{{
			ID: CheckInconclusive, Severity: sev,
			Message: msg + fmt.Sprintf("Prometheus's Istio data for namespace %s does not reach back %s (the window is longer than the data; this query came back empty: %s)", ns, m.o.Window, telemetry.CoverageQuery(ns, win)),
			Hint:    "wait until the data covers the window, or pass a shorter --window knowingly (rare callers may be missed)",
			URL:     docMetrics,
		}}
	}
	return nil
}

// checkStrict: principals are only as trustworthy as mTLS; a port that
// accepts plaintext has callers with no identity to allow.
func (m *migration) checkStrict() []pipeline.Check {
	s := m.o.snap
	var bad []string
	for _, w := range s.Workloads {
		if w.Injected() == 0 {
			continue
		}
		pod := w.Pods[0].Object
		chain := mesh.ChainFor(s.Root, s.PAs, s.Namespace, pod.Labels)
		for _, port := range append([]uint32{0}, containerPorts(pod)...) {
			mode, by := chain.Mode(port)
			if mode == mesh.ModeStrict {
				continue
			}
			if by == "" {
				by = "Istio's default"
			}
			where := "every port"
			if port != 0 {
				where = fmt.Sprintf("port %d", port)
			}
			bad = append(bad, fmt.Sprintf("%s -n %s %s is %s (%s)", w.Ref(), w.Namespace, where, mode, by))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckNotStrict, Severity: pipeline.Error, Objects: bad,
		Message: "workloads accept plaintext: a caller's principal cannot be trusted (or is absent) where mTLS is not STRICT",
		Hint:    fmt.Sprintf("move the namespace to STRICT first: kubectl mesh migrate-mtls -n %s", s.Namespace),
		URL:     docMTLS,
	}}
}

// checkDenied names the observed callers the enforced policies would refuse.
func (m *migration) checkDenied() []pipeline.Check {
	plaintext, identities := m.denied()
	var out []pipeline.Check
	if len(plaintext) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckPlaintext, Severity: pipeline.Error, Objects: plaintext,
			Message: fmt.Sprintf("%d plaintext caller(s) seen over the last %s (source_principal unknown): they have no identity to allow and will be denied", len(plaintext), m.o.Window),
			Hint:    "inject the callers (kubectl mesh inject) so they carry an identity, then re-run the audit",
			URL:     docAuthz,
		})
	}
	if len(identities) > 0 {
		hint := "re-run the audit stage to include them (kubectl mesh migrate-authz --stage audit), or allow them with --allow-from"
		out = append(out, pipeline.Check{
			ID: CheckWouldDeny, Severity: pipeline.Error, Objects: identities,
			Message: fmt.Sprintf("%d caller(s) seen over the last %s are not allowed by the planned rules and would be denied", len(identities), m.o.Window),
			Hint:    hint, URL: docAuthz,
		})
	}
	return out
}

// checkProbes: with probe rewriting off, the kubelet's probes reach the
// sidecar as plaintext calls without identity, and allow-nothing denies them.
func (m *migration) checkProbes() []pipeline.Check {
	var refs []string
	for _, w := range m.o.snap.Workloads {
		pod := w.Pods[0].Object
		if w.Injected() == 0 || pod.Annotations[annotationRewrite] != "false" || !hasNetworkProbe(pod) {
			continue
		}
		refs = append(refs, w.Ref()+" -n "+w.Namespace)
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckProbes, Severity: pipeline.Error, Objects: refs,
		Message: "probes are not rewritten by the sidecar (" + annotationRewrite + ": \"false\"): the kubelet's probes would be denied and the pods restarted",
		Hint:    "remove the annotation so the sidecar answers the probes", URL: docProbes,
	}}
}

func hasNetworkProbe(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && (p.HTTPGet != nil || p.TCPSocket != nil || p.GRPC != nil) {
				return true
			}
		}
	}
	return false
}

// checkShadow counts what the proxies' shadow rules (the dry-run policies)
// would have denied, where they export those metrics.
func (m *migration) checkShadow() []pipeline.Check {
	var pods []string
	for pod, n := range m.ev.Shadow {
		if n > 0 {
			pods = append(pods, fmt.Sprintf("%s: %.0f requests", pod, n))
		}
	}
	if len(pods) == 0 || m.o.Stage == StageAudit && len(m.o.snap.audit()) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckShadowDenied, Severity: pipeline.Error, Objects: sortedUnique(pods),
		Message: fmt.Sprintf("the proxies' shadow rules (the dry-run policies) would have denied requests over the last %s", m.o.Window),
		Hint:    "find the callers in the proxies' debug logs (rbac shadow denied), then re-run the audit or allow them with --allow-from",
		URL:     docDryRun,
	}}
}

// checkNoTraffic: a workload nobody was seen calling accepts nothing once
// the namespace denies by default.
func (m *migration) checkNoTraffic() []pipeline.Check {
	var quiet, bare []string
	for _, w := range m.o.snap.Workloads {
		if w.Injected() == 0 {
			bare = append(bare, w.Ref()+" -n "+w.Namespace)
			continue
		}
		if !admittedByAnyone(m.after, m.o.snap, w) {
			quiet = append(quiet, w.Ref()+" -n "+w.Namespace)
		}
	}
	var out []pipeline.Check
	if len(quiet) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckNoTraffic, Severity: pipeline.Warning, Objects: quiet,
			Message: fmt.Sprintf("no caller of these workloads was seen over the last %s: once enforced they accept nothing", m.o.Window),
			Hint:    "if something calls them rarely, allow it with --allow-from", URL: docAuthz,
		})
	}
	if len(bare) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckNoSidecar, Severity: pipeline.Warning, Objects: bare,
			Message: "these workloads have no sidecar: AuthorizationPolicies are enforced by the sidecar and do not protect them",
			Hint:    "inject them (kubectl mesh inject --restart)", URL: docAuthz,
		})
	}
	return out
}

func admittedByAnyone(after []policy, s *snapshot, w mesh.Workload) bool {
	for _, p := range after {
		if p.Action == "ALLOW" && p.selects(s.Namespace, w.Pods[0].Object.Labels, s.Root) && len(p.Rules) > 0 {
			return true
		}
	}
	return false
}

// checkStale: a principal of a service account that no longer exists is
// a caller that cannot come back under that name.
func (m *migration) checkStale() []pipeline.Check {
	var stale []string
	for _, p := range m.planned {
		for _, pr := range p.Principals {
			parts := strings.Split(pr, "/")
			if len(parts) == 5 && !m.o.snap.ServiceAccounts[parts[2]+"/"+parts[4]] {
				stale = append(stale, pr+" (allowed into "+p.Workload+")")
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckStale, Severity: pipeline.Warning, Objects: sortedUnique(stale),
		Message: "these principals name service accounts that no longer exist: the rule allows an identity nobody has (or a future account of that name)",
		Hint:    "drop them by re-running the audit once the window no longer shows them", URL: docAuthz,
	}}
}

// checkAuditAge: enforce after a soak shorter than the window has not seen
// the rare callers the window holds.
func (m *migration) checkAuditAge() []pipeline.Check {
	if m.o.Stage != StageEnforce {
		return nil
	}
	var oldest time.Time
	for _, p := range m.o.snap.audit() {
		t, err := time.Parse(time.RFC3339, p.Since)
		if err != nil {
			return []pipeline.Check{{ID: CheckAuditTooShort, Severity: pipeline.Warning, Objects: []string{p.Ref()},
				Message: "cannot tell how long this policy has been in audit (no " + annotationSince + " annotation)"}}
		}
		if oldest.IsZero() || t.After(oldest) {
			oldest = t // the newest policy: the audit as a whole is that old
		}
	}
	age := duration.HumanDuration(m.now.Sub(oldest))
	if m.now.Sub(oldest) >= m.o.window {
		return []pipeline.Check{{ID: CheckAuditTooShort, Severity: pipeline.Info,
			Message: fmt.Sprintf("the audit stage has been in place for %s (since %s), longer than the window", age, oldest.Format(time.RFC3339))}}
	}
	return []pipeline.Check{{
		ID: CheckAuditTooShort, Severity: pipeline.Warning,
		Message: fmt.Sprintf("the audit stage has been in place for only %s (since %s), less than the %s window", age, oldest.Format(time.RFC3339), m.o.Window),
		Hint:    "let the dry-run policies soak for the whole window, so that weekly callers show up",
		URL:     docDryRun,
	}}
}

func containerPorts(pod *corev1.Pod) []uint32 {
	var out []uint32
	for _, c := range pod.Spec.Containers {
		if c.Name == mesh.ProxyContainerName {
			continue
		}
		for _, p := range c.Ports {
			out = append(out, uint32(p.ContainerPort))
		}
	}
	return out
}
