package mtls

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	istiolabels "istio.io/istio/pkg/config/labels"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Check IDs, for --accept.
const (
	CheckConflict     = "MTLS-PA-CONFLICT"
	CheckNoSidecar    = "MTLS-NO-SIDECAR"
	CheckDestRule     = "MTLS-DR-TLS"
	CheckAPIServer    = "MTLS-APISERVER-BACKEND"
	CheckProbes       = "MTLS-PROBE-REWRITE"
	CheckExcluded     = "MTLS-EXCLUDED-PORTS"
	CheckHeadless     = "MTLS-HEADLESS"
	CheckAuthz        = "MTLS-AUTHZ-PEER"
	CheckPortLevel    = "MTLS-PORT-LEVEL"
	CheckOverride     = "MTLS-WORKLOAD-OVERRIDE"
	CheckPlaintext    = "MTLS-PLAINTEXT"
	CheckNoTraffic    = "MTLS-NO-TRAFFIC"
	CheckNoTelemetry  = "MTLS-TELEMETRY-SKIPPED"
	docPeerAuth       = "https://istio.io/latest/docs/reference/config/security/peer_authentication/"
	docMigration      = "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"
	docProbes         = "https://istio.io/latest/docs/ops/configuration/mesh/app-health-check/"
	docDestRule       = "https://istio.io/latest/docs/ops/configuration/traffic-management/tls-configuration/#auto-mtls"
	docWebhooks       = "https://istio.io/latest/docs/ops/common-problems/injection/"
	docAuthz          = "https://istio.io/latest/docs/reference/config/security/authorization-policy/"
	docHeadless       = "https://istio.io/latest/docs/ops/configuration/traffic-management/traffic-routing/#headless-services"
	clusterDomain     = "svc.cluster.local"
	annotationRewrite = "sidecar.istio.io/rewriteAppHTTPProbers"
	annotationExclude = "traffic.sidecar.istio.io/excludeInboundPorts"
	proxyStatusPort   = 15020
)

// checks runs every preflight check of a move to STRICT.
func (m *migration) checks() []pipeline.Check {
	var out []pipeline.Check
	for _, f := range []func() []pipeline.Check{
		m.checkConflicts, m.checkSidecars, m.checkDestinationRules, m.checkAPIServerBackends, m.checkProbes,
		m.checkExcludedPorts, m.checkHeadless, m.checkAuthz, m.checkPortLevel, m.checkOverrides,
	} {
		out = append(out, f()...)
	}
	return out
}

// strictAfter reports whether pod's port will be STRICT once the plan is applied.
func (m *migration) strictAfter(ns string, pod *corev1.Pod, port uint32) bool {
	mode, _ := mesh.ChainFor(m.snap.Root, m.after, ns, pod.Labels).Mode(port)
	return mode == mesh.ModeStrict
}

// workloads are those the change reaches.
func (m *migration) workloads() []mesh.Workload {
	var out []mesh.Workload
	for _, w := range m.snap.Workloads {
		if m.targets[w.Namespace] && len(w.Pods) > 0 {
			out = append(out, w)
		}
	}
	return out
}

func wref(w mesh.Workload) string { return w.Ref() + " -n " + w.Namespace }

func (m *migration) checkConflicts() []pipeline.Check {
	var out []pipeline.Check
	for _, ns := range append([]string{m.namespace}, m.sortedTargets()...) {
		wide := mesh.NamespaceWide(m.snap.PAs, ns)
		if len(wide) < 2 || (ns != m.namespace && ns == m.snap.Root) {
			continue
		}
		var refs []string
		for _, p := range wide {
			refs = append(refs, p.Ref())
		}
		out = append(out, pipeline.Check{
			ID: CheckConflict, Severity: pipeline.Error, Objects: refs,
			Message: fmt.Sprintf("namespace %s has %d namespace-wide PeerAuthentications; Istio uses only the oldest (%s)", ns, len(wide), wide[0].Name),
			Hint:    "delete the newer ones so what you read is what applies", URL: docPeerAuth,
		})
		break
	}
	return out
}

func (m *migration) checkSidecars() []pipeline.Check {
	var refs []string
	for _, w := range m.workloads() {
		if w.Injected() < len(w.Pods) {
			refs = append(refs, fmt.Sprintf("%s (%d/%d pods)", wref(w), len(w.Pods)-w.Injected(), len(w.Pods)))
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckNoSidecar, Severity: pipeline.Error, Objects: refs,
		Message: fmt.Sprintf("%d workload(s) run pods without a sidecar: they cannot send mTLS, so STRICT peers refuse their calls", len(refs)),
		Hint:    "inject and restart them first: kubectl mesh inject -n NAMESPACE --restart", URL: docMigration,
	}}
}

// hostsOf is every FQDN of the Services in the namespaces the change reaches.
func (m *migration) hostsOf() map[string]bool {
	h := map[string]bool{}
	for _, s := range m.snap.Services {
		if m.targets[s.Namespace] {
			h[s.Name+"."+s.Namespace+"."+clusterDomain] = true
		}
	}
	return h
}

// drHostMatches reports whether a DestinationRule host (short names are
// relative to the rule's namespace; "*" and "*.suffix" are wildcards)
// covers any of hosts or, for wildcards, any host in the target namespaces.
func (m *migration) drHostMatches(host, drNamespace string, hosts map[string]bool) bool {
	if host == "" {
		return false
	}
	if !strings.Contains(host, ".") && host != "*" {
		host = host + "." + drNamespace + "." + clusterDomain
	}
	if strings.HasPrefix(host, "*") {
		suffix := host[1:]
		for ns := range m.targets {
			if strings.HasSuffix("x."+ns+"."+clusterDomain, suffix) {
				return true
			}
		}
		return false
	}
	return hosts[host]
}

// tlsModes returns "where: MODE" for every TLS setting of a DestinationRule
// that is not ISTIO_MUTUAL: DISABLE and SIMPLE send no Istio client
// certificate, and MUTUAL presents one that is not the mesh's.
func tlsModes(dr *unstructured.Unstructured) []string {
	var out []string
	policy := func(where string, tp map[string]any) {
		if tp == nil {
			return
		}
		if mode, _, _ := unstructured.NestedString(tp, "tls", "mode"); mode == "DISABLE" || mode == "SIMPLE" || mode == "MUTUAL" {
			out = append(out, where+": "+mode)
		}
		pls, _, _ := unstructured.NestedSlice(tp, "portLevelSettings")
		for _, pl := range pls {
			plm, _ := pl.(map[string]any)
			mode, _, _ := unstructured.NestedString(plm, "tls", "mode")
			if mode == "DISABLE" || mode == "SIMPLE" || mode == "MUTUAL" {
				port, _, _ := unstructured.NestedFieldNoCopy(plm, "port", "number")
				out = append(out, fmt.Sprintf("%s port %v: %s", where, port, mode))
			}
		}
	}
	tp, _, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy")
	policy("trafficPolicy", tp)
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		sm, _ := s.(map[string]any)
		name, _, _ := unstructured.NestedString(sm, "name")
		stp, _, _ := unstructured.NestedMap(sm, "trafficPolicy")
		policy("subset "+name, stp)
	}
	return out
}

func (m *migration) checkDestinationRules() []pipeline.Check {
	hosts := m.hostsOf()
	var out []pipeline.Check
	for _, dr := range m.snap.DRs {
		exportTo, _, _ := unstructured.NestedStringSlice(dr.Object, "spec", "exportTo")
		if slices.Equal(exportTo, []string{"~"}) {
			continue // visible to no one
		}
		host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		if !m.drHostMatches(host, dr.GetNamespace(), hosts) {
			continue
		}
		modes := tlsModes(dr)
		if len(modes) == 0 {
			continue
		}
		visible := "every namespace"
		if len(exportTo) > 0 && !slices.Contains(exportTo, "*") {
			visible = "namespaces " + strings.ReplaceAll(strings.Join(exportTo, ","), ".", dr.GetNamespace())
		}
		out = append(out, pipeline.Check{
			ID: CheckDestRule, Severity: pipeline.Error, Objects: []string{pipeline.Ref(dr)},
			Message: fmt.Sprintf("DestinationRule for %s sets %s (used by clients in %s): it turns auto-mTLS off, so those clients will be refused under STRICT",
				host, strings.Join(modes, ", "), visible),
			Hint: "set tls.mode: ISTIO_MUTUAL (or remove the tls block) for in-mesh hosts", URL: docDestRule,
		})
	}
	return out
}

// podsOf returns the sidecar pods a Service selects, with the container
// port its port maps to.
func (m *migration) podsOf(ns, name string, port int32) (pods []*corev1.Pod, target uint32, svcFound bool) {
	for i := range m.snap.Services {
		s := &m.snap.Services[i]
		if s.Namespace != ns || s.Name != name {
			continue
		}
		svcFound = true
		if len(s.Spec.Selector) == 0 {
			return nil, 0, true
		}
		for _, w := range m.snap.Workloads {
			for _, p := range w.Pods {
				if w.Namespace == ns && p.HasSidecar && istiolabels.Instance(s.Spec.Selector).SubsetOf(p.Object.Labels) {
					pods = append(pods, p.Object)
				}
			}
		}
		for _, sp := range s.Spec.Ports {
			if sp.Port == port {
				if len(pods) > 0 {
					target = resolveTargetPort(sp.TargetPort, sp.Port, pods[0])
				}
			}
		}
	}
	return pods, target, svcFound
}

// resolveTargetPort maps a Service targetPort (number or container port
// name) to the container port number.
func resolveTargetPort(tp intstr.IntOrString, port int32, pod *corev1.Pod) uint32 {
	switch {
	case tp.Type == intstr.String:
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal {
					return uint32(cp.ContainerPort)
				}
			}
		}
		return 0
	case tp.IntVal != 0:
		return uint32(tp.IntVal)
	}
	return uint32(port)
}

func (m *migration) checkAPIServerBackends() []pipeline.Check {
	var refs []string
	for _, b := range m.snap.Backends {
		if !m.targets[b.Namespace] {
			continue
		}
		pods, port, _ := m.podsOf(b.Namespace, b.Service, b.Port)
		for _, p := range pods {
			if m.strictAfter(b.Namespace, p, port) {
				refs = append(refs, fmt.Sprintf("%s → service %s/%s (container port %d)", b.Ref, b.Namespace, b.Service, port))
				break
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	sort.Strings(refs)
	return []pipeline.Check{{
		ID: CheckAPIServer, Severity: pipeline.Error, Objects: refs,
		Message: "the API server calls these webhooks/APIs without a sidecar: under STRICT every call fails (and a failing webhook can block deployments cluster-wide)",
		Hint:    "keep their port PERMISSIVE with --exception WORKLOAD:PORT", URL: docWebhooks,
	}}
}

func isProxy(c corev1.Container) bool { return c.Name == mesh.ProxyContainerName }

func appPorts(pod *corev1.Pod) []uint32 {
	var out []uint32
	for _, c := range pod.Spec.Containers {
		if isProxy(c) {
			continue
		}
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				out = append(out, uint32(p.ContainerPort))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (m *migration) checkProbes() []pipeline.Check {
	var http, tcp []string
	for _, w := range m.workloads() {
		var pod *corev1.Pod
		for _, p := range w.Pods {
			if p.HasSidecar {
				pod = p.Object
				break
			}
		}
		if pod == nil {
			continue
		}
		off := pod.Annotations[annotationRewrite] == "false"
		for _, c := range pod.Spec.Containers {
			if isProxy(c) {
				continue
			}
			for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				switch {
				case pr == nil:
				case pr.HTTPGet != nil && (off || pr.HTTPGet.Port.IntValue() != proxyStatusPort):
					http = append(http, wref(w)+" container "+c.Name)
				case pr.TCPSocket != nil:
					tcp = append(tcp, wref(w)+" container "+c.Name)
				}
			}
		}
	}
	var out []pipeline.Check
	if len(http) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckProbes, Severity: pipeline.Error, Objects: compact(http),
			Message: "HTTP probes go straight to the app port (probe rewrite is off for the pod or mesh-wide): the kubelet has no sidecar, so under STRICT they fail and the pods restart",
			Hint:    "remove sidecar.istio.io/rewriteAppHTTPProbers: \"false\" (or turn rewriteAppHTTPProbe back on) and restart", URL: docProbes,
		})
	}
	if len(tcp) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckProbes, Severity: pipeline.Warning, Objects: compact(tcp),
			Message: "TCP probes are answered by the sidecar, not the app: under STRICT they keep passing even when the app is down",
			Hint:    "use HTTP or gRPC probes, which Istio rewrites to the sidecar's health port", URL: docProbes,
		})
	}
	return out
}

func compact(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

func (m *migration) checkExcludedPorts() []pipeline.Check {
	var refs []string
	for _, w := range m.workloads() {
		for _, p := range w.Pods {
			if v := p.Object.Annotations[annotationExclude]; p.HasSidecar && v != "" {
				refs = append(refs, fmt.Sprintf("%s ports %s", wref(w), v))
				break
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckExcluded, Severity: pipeline.Warning, Objects: refs,
		Message: "inbound ports excluded from the sidecar bypass STRICT silently: anyone can still reach them in plaintext",
		Hint:    "remove traffic.sidecar.istio.io/excludeInboundPorts, or use an explicit --exception so the gap is visible", URL: docPeerAuth,
	}}
}

func (m *migration) checkHeadless() []pipeline.Check {
	var refs []string
	for _, s := range m.snap.Services {
		if m.targets[s.Namespace] && s.Spec.ClusterIP == corev1.ClusterIPNone {
			refs = append(refs, "Service/"+s.Name+" -n "+s.Namespace)
		}
	}
	for _, w := range m.workloads() {
		if w.Kind == "StatefulSet" {
			refs = append(refs, wref(w))
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckHeadless, Severity: pipeline.Warning, Objects: refs,
		Message: "headless Services and StatefulSets are called pod to pod; callers outside the mesh (other clusters, VMs, operators) lose access under STRICT",
		Hint:    "check their callers in the telemetry below, or keep their ports PERMISSIVE with --exception", URL: docHeadless,
	}}
}

func (m *migration) checkAuthz() []pipeline.Check {
	var refs []string
	for _, ap := range m.snap.AuthZ {
		if !m.targets[ap.GetNamespace()] && ap.GetNamespace() != m.snap.Root {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(ap.Object, "spec", "rules")
		if usesPeerIdentity(rules) {
			refs = append(refs, pipeline.Ref(ap))
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckAuthz, Severity: pipeline.Info, Objects: refs,
		Message: "these AuthorizationPolicies match on principals or namespaces, which only mTLS carries: plaintext callers are already denied by them today",
		URL:     docAuthz,
	}}
}

func usesPeerIdentity(rules []any) bool {
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		from, _, _ := unstructured.NestedSlice(rm, "from")
		for _, f := range from {
			fm, _ := f.(map[string]any)
			src, _, _ := unstructured.NestedMap(fm, "source")
			for _, k := range []string{"principals", "notPrincipals", "namespaces", "notNamespaces"} {
				if _, ok := src[k]; ok {
					return true
				}
			}
		}
	}
	return false
}

// checkPortLevel finds port exceptions that cannot work: portLevelMtls
// without a selector (istiod ignores it), or on a port no selected
// container listens on (usually a Service port instead of the container's).
func (m *migration) checkPortLevel() []pipeline.Check {
	var out []pipeline.Check
	for i := range m.after {
		p := &m.after[i]
		if len(p.Ports) == 0 || !m.targets[p.Namespace] && p.Namespace != m.namespace {
			continue
		}
		if len(p.Selector) == 0 {
			out = append(out, pipeline.Check{
				ID: CheckPortLevel, Severity: pipeline.Error, Objects: []string{p.Ref()},
				Message: "portLevelMtls on a policy without a workload selector is ignored by istiod",
				Hint:    "move the port settings to a PeerAuthentication with selector.matchLabels", URL: docPeerAuth,
			})
			continue
		}
		listening := map[uint32]bool{}
		for _, w := range m.snap.Workloads {
			for _, pod := range w.Pods {
				if w.Namespace == p.Namespace && p.Selects(pod.Object.Labels) {
					for _, port := range appPorts(pod.Object) {
						listening[port] = true
					}
				}
			}
		}
		var bad []string
		for port := range p.Ports {
			if !listening[port] {
				bad = append(bad, strconv.Itoa(int(port)))
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			out = append(out, pipeline.Check{
				ID: CheckPortLevel, Severity: pipeline.Error, Objects: []string{p.Ref()},
				Message: fmt.Sprintf("portLevelMtls names port(s) %s, which no selected container declares: the exception has no effect (portLevelMtls takes container ports, not Service ports)", strings.Join(bad, ",")),
				Hint:    "use the containerPort (the Service's targetPort)", URL: docPeerAuth,
			})
		}
	}
	return out
}

// checkOverrides reports workload policies that keep workloads out of
// STRICT after the namespace moves (not the exceptions this plan adds).
func (m *migration) checkOverrides() []pipeline.Check {
	var refs []string
	for _, p := range m.snap.PAs {
		if m.targets[p.Namespace] && len(p.Selector) > 0 && (p.Mode == mesh.ModeDisable || p.Mode == mesh.ModePermissive) {
			refs = append(refs, p.Ref()+" ("+p.Mode+")")
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckOverride, Severity: pipeline.Info, Objects: refs,
		Message: "workload policies override the namespace: the workloads they select stay out of STRICT",
		URL:     docPeerAuth,
	}}
}

// trafficChecks turns observed traffic into findings: plaintext callers
// block STRICT unless the destination keeps a port PERMISSIVE; no Istio
// traffic at all means there is no evidence either way.
func (m *migration) trafficChecks(flows []telemetry.Flow, where, window string) []pipeline.Check {
	var plain, covered []string
	total := 0.0
	for _, f := range flows {
		total += f.Requests + f.Connections
		if f.MutualTLS {
			continue
		}
		line := fmt.Sprintf("%s → %s/%s (%s)", f.SourceRef(), f.DestNamespace, f.Dest, volume(f))
		if port := m.permissivePort(f.DestNamespace, f.Dest); port != 0 {
			covered = append(covered, fmt.Sprintf("%s, kept PERMISSIVE on port %d", line, port))
			continue
		}
		plain = append(plain, line)
	}
	var out []pipeline.Check
	if total == 0 {
		out = append(out, pipeline.Check{
			ID: CheckNoTraffic, Severity: pipeline.Warning,
			Message: fmt.Sprintf("Prometheus (%s) has no Istio traffic into the namespace over the last %s: there is no evidence about plaintext callers", where, window),
			Hint:    "check that Prometheus scrapes the sidecars (istio_requests_total), or widen --window",
			URL:     "https://istio.io/latest/docs/ops/integrations/prometheus/",
		})
	}
	if len(plain) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckPlaintext, Severity: pipeline.Error, Objects: plain,
			Message: fmt.Sprintf("%d caller(s) sent plaintext over the last %s (Prometheus: %s): STRICT would refuse them", len(plain), window, where),
			Hint:    "inject the callers (or move them into the mesh), or keep the port they call PERMISSIVE with --exception WORKLOAD:PORT", URL: docMigration,
		})
	}
	if len(covered) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckPlaintext, Severity: pipeline.Info, Objects: covered,
			Message: "plaintext callers of workloads with a PERMISSIVE port exception (telemetry does not say which port they call: make sure it is that one)",
		})
	}
	return out
}

func volume(f telemetry.Flow) string {
	var parts []string
	if f.Requests > 0 {
		parts = append(parts, fmt.Sprintf("%.0f requests", f.Requests))
	}
	if f.Connections > 0 {
		parts = append(parts, fmt.Sprintf("%.0f connections", f.Connections))
	}
	return strings.Join(parts, ", ")
}

// permissivePort returns a port of the named workload that stays
// non-STRICT after the plan, or 0.
func (m *migration) permissivePort(ns, name string) uint32 {
	for _, w := range m.snap.Workloads {
		if w.Namespace != ns || w.Name != name {
			continue
		}
		for _, p := range w.Pods {
			for _, port := range appPorts(p.Object) {
				if !m.strictAfter(ns, p.Object, port) {
					return port
				}
			}
			break
		}
	}
	return 0
}
