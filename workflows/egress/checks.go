package egress

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Check IDs, for --accept.
const (
	CheckInconclusive  = "EGRESS-INCONCLUSIVE"
	CheckUnregistered  = "EGRESS-UNREGISTERED"
	CheckNoHost        = "EGRESS-TCP-NO-HOST"
	CheckSharedPort    = "EGRESS-TCP-SHARED-PORT"
	CheckWildcard      = "EGRESS-WILDCARD"
	CheckSidecarImport = "EGRESS-SIDECAR-IMPORT"
	CheckExportTo      = "EGRESS-EXPORTTO"
	CheckAlreadyLocked = "EGRESS-ALREADY-LOCKED"
	CheckMetadata      = "EGRESS-CLOUD-METADATA"
	CheckRefused       = "EGRESS-REFUSED"
	CheckGateway       = "EGRESS-GATEWAY-NETPOL"
	docServiceEntry    = "https://istio.io/latest/docs/reference/config/networking/service-entry/"
	docEgress          = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"
	docEgressGateway   = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/"
	docSidecar         = "https://istio.io/latest/docs/reference/config/networking/sidecar/"
	docDNS             = "https://istio.io/latest/docs/ops/configuration/traffic-management/dns-proxy/"
	docMetrics         = "https://istio.io/latest/docs/ops/integrations/prometheus/"
	metadataAddress    = "169.254.169.254"
)

// checks runs every check of the stage. What would block the lockdown is
// a warning "before lockdown" in the registry stage, which refuses nothing.
func (m *migration) checks() []pipeline.Check {
	out := m.checkEvidence()
	for _, f := range []func() []pipeline.Check{m.checkUnregistered, m.checkNoHost, m.checkSidecarImport} {
		for _, c := range f() {
			if m.o.Stage == StageRegistry && c.Severity == pipeline.Error {
				c.Severity, c.Message = pipeline.Warning, "before lockdown: "+c.Message
			}
			out = append(out, c)
		}
	}
	for _, f := range []func() []pipeline.Check{m.checkSharedPorts, m.checkWildcards, m.checkExportTo, m.checkLocked, m.checkMetadata, m.checkRefused, m.checkGateway} {
		out = append(out, f()...)
	}
	return out
}

// checkEvidence: proxies that report nothing, or data that does not reach
// back over the window, are no evidence that nothing else leaves.
func (m *migration) checkEvidence() []pipeline.Check {
	src := m.o.sources()
	if !m.ev.Any {
		return []pipeline.Check{{
			ID: CheckInconclusive, Severity: pipeline.Error,
			Message: fmt.Sprintf("Prometheus (%s) has no source-reported Istio traffic from %s over the last %s: this query came back empty: %s", m.ev.Where, strings.TrimPrefix(m.o.scopeFlag(), "-n "), m.o.Window, telemetry.SourceTrafficQuery(src, m.o.window)),
			Hint:    "check that Prometheus scrapes the sidecars (reporter=source series), or widen --window",
			URL:     docMetrics,
		}}
	}
	if m.ev.Covers {
		return nil
	}
	c := pipeline.Check{
		ID: CheckInconclusive, Severity: pipeline.Error,
		Message: fmt.Sprintf("inconclusive: the Istio data does not reach back %s (the window is longer than the data; this query came back empty: %s)", m.o.Window, telemetry.SourceCoverageQuery(src, m.o.window)),
		Hint:    "wait until the data covers the window, or pass a shorter --window knowingly (rare destinations may be missed)",
		URL:     docMetrics,
	}
	if m.o.Stage == StageRegistry {
		c.Severity, c.Message = pipeline.Warning, "before lockdown: "+strings.TrimPrefix(c.Message, "inconclusive: ")
	}
	return []pipeline.Check{c}
}

func (m *migration) checkUnregistered() []pipeline.Check {
	if m.o.Stage == StageRegistry {
		return nil // the registry stage registers them
	}
	missing := m.unregistered()
	if len(missing) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckUnregistered, Severity: pipeline.Error, Objects: missing,
		Message: fmt.Sprintf("traffic over the last %s went to %d host:port(s) nothing registers: REGISTRY_ONLY would refuse it", m.o.Window, len(missing)),
		Hint:    fmt.Sprintf("register them: kubectl mesh migrate-egress %s --stage registry (or --allow HOST:PORT/PROTOCOL)", m.o.scopeFlag()),
		URL:     docEgress,
	}}
}

// checkNoHost: TCP connections without a host or address cannot be turned
// into a ServiceEntry; after --allow registers the destination, only the
// user can say it was that one.
func (m *migration) checkNoHost() []pipeline.Check {
	var lines []string
	for _, e := range m.ev.Exits {
		if e.Host == "" && !e.Blocked {
			lines = append(lines, fmt.Sprintf("%s → %s (%.0f connections; %s)", e.Ref(), e.Dest(), e.Count, e.Evidence()))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	var tcp []string
	for _, h := range m.o.extra {
		if h.Protocol == "TCP" {
			tcp = append(tcp, h.String())
		}
	}
	msg := fmt.Sprintf("%d TCP destination(s) without a host name were reached: no ServiceEntry can be derived from them", len(lines))
	if len(tcp) > 0 {
		msg += fmt.Sprintf("; --allow registers %s, but the telemetry cannot confirm that these connections went there", strings.Join(tcp, ", "))
	}
	return []pipeline.Check{{
		ID: CheckNoHost, Severity: pipeline.Error, Objects: lines,
		Message: msg,
		Hint:    "register each with --allow HOST:PORT/TCP, then accept with --accept " + CheckNoHost,
		URL:     docServiceEntry,
	}}
}

// checkSidecarImport: a namespace Sidecar that does not import the
// entries' namespace hides them from its proxies, and lockdown then
// refuses the hosts they register.
func (m *migration) checkSidecarImport() []pipeline.Check {
	if len(m.entries) == 0 && !m.o.registryRan() {
		return nil
	}
	ns := m.o.scopeNamespace()
	var refs []string
	for _, sc := range m.o.snap.Sidecars {
		if sc.Namespace == m.o.Namespace && !sc.imports(ns, sc.Namespace) {
			refs = append(refs, sc.Ref()+" (egress hosts "+strings.Join(sc.Hosts, ", ")+")")
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckSidecarImport, Severity: pipeline.Error, Objects: refs,
		Message: fmt.Sprintf("these Sidecars do not import namespace %s, where the ServiceEntries are: their proxies will not see the registered hosts", ns),
		Hint:    fmt.Sprintf("add \"%s/*\" (or \"./*\") to the Sidecar's egress hosts", ns), URL: docSidecar,
	}}
}

// checkSharedPorts: TCP entries without addresses on one port are told
// apart only by address: istiod needs DNS capture with auto-allocation.
func (m *migration) checkSharedPorts() []pipeline.Check {
	byPort := map[uint32][]string{}
	add := func(name string, ports map[uint32]string, addresses int) {
		for n, proto := range ports {
			if proto == "TCP" && addresses == 0 {
				byPort[n] = append(byPort[n], name)
			}
		}
	}
	for _, p := range m.entries {
		add(p.Host, p.Ports, 0)
	}
	for _, e := range m.o.snap.Entries {
		if e.visibleIn(m.o.scopeNamespace()) {
			add(strings.Join(e.Hosts, ","), e.Ports, len(e.Addresses))
		}
	}
	var lines []string
	for n, hosts := range byPort {
		if len(hosts) > 1 {
			sort.Strings(hosts)
			lines = append(lines, fmt.Sprintf("port %d: %s", n, strings.Join(hosts, ", ")))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	sort.Strings(lines)
	sev, state := pipeline.Warning, "the mesh config lacks "
	var missing []string
	if !m.o.snap.DNSCapture {
		missing = append(missing, "ISTIO_META_DNS_CAPTURE")
	}
	if !m.o.snap.DNSAutoAllocate {
		missing = append(missing, "ISTIO_META_DNS_AUTO_ALLOCATE (or istiod's address allocation)")
	}
	if len(missing) == 0 {
		sev, state = pipeline.Info, "the mesh config has DNS capture with auto-allocation, which gives each entry an address"
	} else {
		state += strings.Join(missing, " and ")
	}
	return []pipeline.Check{{
		ID: CheckSharedPort, Severity: sev, Objects: lines,
		Message: "several TCP ServiceEntries without addresses share a port (IST0134): the proxy can tell them apart only by address; " + state,
		Hint:    "enable DNS capture and auto-allocation in the mesh's proxy config, or give the entries addresses", URL: docDNS,
	}}
}

func (m *migration) checkWildcards() []pipeline.Check {
	var hosts []string
	for _, p := range m.entries {
		if strings.HasPrefix(p.Host, "*") {
			hosts = append(hosts, p.Host)
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckWildcard, Severity: pipeline.Warning, Objects: hosts,
		Message: "wildcard hosts cannot be resolved (resolution NONE) and get no address: HTTP and TLS work by Host/SNI, plain TCP does not",
		URL:     docServiceEntry,
	}}
}

// checkExportTo: an entry that registers a host but is not exported to the
// namespace does not count.
func (m *migration) checkExportTo() []pipeline.Check {
	seen := map[string]bool{}
	var lines []string
	for _, e := range m.ev.Exits {
		if e.Host == "" || seen[e.Host] || m.o.snap.covering(e.Host, e.Port, m.o.Namespace) != "" {
			continue // registered already by an entry its proxies see
		}
		seen[e.Host] = true
		for _, ref := range m.o.snap.hidden(e.Host, m.o.Namespace) {
			lines = append(lines, ref+" registers "+e.Host)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckExportTo, Severity: pipeline.Warning, Objects: lines,
		Message: fmt.Sprintf("these ServiceEntries are not exported to %s (exportTo): its proxies do not see them, so the plan registers the hosts again for the namespace", m.o.Namespace),
		URL:     docServiceEntry,
	}}
}

func (m *migration) checkLocked() []pipeline.Check {
	var why []string
	if m.o.snap.MeshRegistryOnly {
		why = append(why, "the mesh config's outboundTrafficPolicy")
	}
	for _, sc := range m.o.snap.Sidecars {
		if sc.Mode == registryOnly && (sc.Namespace == m.o.scopeNamespace() || sc.Namespace == m.o.root) {
			why = append(why, sc.Ref())
		}
	}
	if len(why) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckAlreadyLocked, Severity: pipeline.Info, Objects: why,
		Message: "outbound traffic is already REGISTRY_ONLY here: unregistered destinations show up as BlackHoleCluster traffic, refused today",
		URL:     docEgress,
	}}
}

func (m *migration) checkMetadata() []pipeline.Check {
	var from []string
	for _, e := range m.ev.Exits {
		if e.Host == metadataAddress || e.IP == metadataAddress {
			from = append(from, e.Ref())
		}
	}
	if len(from) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckMetadata, Severity: pipeline.Warning, Objects: from,
		Message: "the cloud metadata address " + metadataAddress + " was reached: REGISTRY_ONLY refuses it unless registered, and cloud SDKs then lose the instance's credentials and identity (which also stops the workloads reading them, often the point)",
		Hint:    "register it with --allow " + metadataAddress + ":80/HTTP only for the workloads that need it, or move them to workload identity",
		URL:     docEgress,
	}}
}

func (m *migration) checkRefused() []pipeline.Check {
	var lines []string
	for _, e := range m.ev.Exits {
		if e.Blocked {
			lines = append(lines, fmt.Sprintf("%s → %s (%.0f %s)", e.Ref(), e.Dest(), e.Count, unit(e)))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckRefused, Severity: pipeline.Warning, Objects: lines,
		Message: "these calls were refused (BlackHoleCluster) over the window: something already blocks them; register them with --allow if they are wanted",
		URL:     docEgress,
	}}
}

func (m *migration) checkGateway() []pipeline.Check {
	if len(m.gateways) == 0 {
		return nil
	}
	return []pipeline.Check{{
		ID: CheckGateway, Severity: pipeline.Info,
		Message: "the egress gateway is a security control only with a NetworkPolicy that stops the namespace's pods from reaching the hosts directly (port " + strconv.Itoa(443) + "/80 to anywhere but the gateway)",
		URL:     docEgressGateway,
	}}
}
