package egress

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Marks on the objects this workflow writes.
const (
	annotationFor        = "kubectl-mesh.io/migrate-egress"
	annotationUnobserved = "kubectl-mesh.io/registered-without-evidence"
	registryOnly         = "REGISTRY_ONLY"
)

// evidence is what Prometheus says about the scope's outbound traffic.
type evidence struct {
	Exits  []telemetry.Exit
	Where  string
	Any    bool // the proxies report any traffic at all
	Covers bool // the data reaches back over the whole window
}

func (o *Options) sources() []string {
	if o.MeshWide {
		return []string{".+"}
	}
	return []string{o.Namespace}
}

func (o *Options) observe(ctx context.Context, c *cli.Context) (*evidence, error) {
	prom, err := telemetry.Require(ctx, c, o.PrometheusURL, o.root, "read outbound traffic from")
	if err != nil {
		return nil, err
	}
	ev := &evidence{Where: prom.Where}
	now, src := c.Now(), o.sources()
	if ev.Exits, err = prom.Exits(ctx, src, o.window, now); err != nil {
		return nil, err
	}
	if v, ok, err := prom.Scalar(ctx, telemetry.SourceTrafficQuery(src, o.window), now); err != nil {
		return nil, err
	} else {
		ev.Any = ok && v > 0
	}
	if _, ev.Covers, err = prom.Scalar(ctx, telemetry.SourceCoverageQuery(src, o.window), now); err != nil {
		return nil, err
	}
	return ev, nil
}

// migration is one planned stage.
type migration struct {
	o        *Options
	ev       *evidence
	entries  []planned // ServiceEntries to write
	covered  map[string]string
	sidecar  *unstructured.Unstructured
	partial  bool // the Sidecar is the team's: only the mode is applied
	gateways []*unstructured.Unstructured
}

// planned is one ServiceEntry of the plan.
type planned struct {
	Host       string
	Ports      map[uint32]string
	Unobserved bool
	Obj        *unstructured.Unstructured
}

// Plan implements pipeline.Workflow.
func (o *Options) Plan(_ context.Context, c *cli.Context) (*pipeline.Plan, error) {
	if o.ViaEgressGateway && !o.snap.EgressGateway {
		return nil, exitcode.Usagef("--via-egress-gateway: no egress gateway (a Service labelled istio=egressgateway) in %s: install one (kubectl mesh install --egress) or drop the flag", o.root)
	}
	m := o.build()
	if o.Stage == StageLockdown && !o.registryRan() {
		if missing := m.unregistered(); len(missing) > 0 {
			return nil, exitcode.Usagef("lockdown before registry: %d observed host(s) have no ServiceEntry (%s); run kubectl mesh migrate-egress %s --stage registry first", len(missing), strings.Join(missing, ", "), o.scopeFlag())
		}
	}
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	return m.plan(cl.Dynamic), nil
}

// registryRan reports whether an earlier registry stage wrote entries here.
func (o *Options) registryRan() bool {
	for _, e := range o.snap.Entries {
		if e.Ours && e.Namespace == o.scopeNamespace() {
			return true
		}
	}
	return false
}

// scopeNamespace is where the objects go: the namespace, or the root for --mesh-wide.
func (o *Options) scopeNamespace() string {
	if o.MeshWide {
		return o.root
	}
	return o.Namespace
}

// build computes the stage's objects from the snapshot and the evidence.
func (o *Options) build() *migration {
	s := o.snap
	m := &migration{o: o, ev: o.ev, covered: map[string]string{}}
	ns := o.scopeNamespace()
	byHost := map[string]*planned{}
	add := func(h string, port uint32, proto string, unobserved bool) {
		key := h + ":" + strconv.Itoa(int(port))
		if ref := s.covering(h, port, ns); ref != "" {
			m.covered[key] = ref
			return
		}
		p := byHost[h]
		if p == nil {
			p = &planned{Host: h, Ports: map[uint32]string{}, Unobserved: unobserved}
			byHost[h] = p
		}
		if _, ok := p.Ports[port]; !ok {
			p.Ports[port] = proto
		}
		p.Unobserved = p.Unobserved && unobserved
	}
	if o.Stage == StageRegistry {
		for _, e := range o.ev.Exits {
			if e.Host != "" && !e.Blocked {
				add(e.Host, e.Port, e.Protocol, false)
			}
		}
	}
	for _, h := range o.extra {
		add(h.Name, h.Port, h.Protocol, true)
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		p := byHost[h]
		p.Obj = m.serviceEntry(p)
		m.entries = append(m.entries, *p)
	}
	if o.ViaEgressGateway {
		for _, p := range m.entries {
			m.gateways = append(m.gateways, m.viaGateway(p)...)
		}
	}
	if o.Stage == StageLockdown {
		m.sidecar, m.partial = m.lockdownSidecar()
	}
	return m
}

func objectName(h string) string {
	return "egress-" + strings.NewReplacer("*", "wildcard", ".", "-").Replace(h)
}

func newObject(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// serviceEntry registers one external host with the ports and protocols seen.
func (m *migration) serviceEntry(p *planned) *unstructured.Unstructured {
	u := newObject("networking.istio.io/v1", "ServiceEntry", m.o.scopeNamespace(), objectName(p.Host))
	ann := map[string]string{annotationFor: p.Host}
	if p.Unobserved {
		ann[annotationUnobserved] = "added with --allow, not seen in the telemetry window"
	}
	u.SetAnnotations(ann)
	nums := make([]uint32, 0, len(p.Ports))
	for n := range p.Ports {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	var ports []any
	for _, n := range nums {
		proto := p.Ports[n]
		ports = append(ports, map[string]any{"number": int64(n), "name": strings.ToLower(proto) + "-" + strconv.Itoa(int(n)), "protocol": proto})
	}
	resolution := "DNS"
	if strings.HasPrefix(p.Host, "*") {
		resolution = "NONE" // a wildcard cannot be resolved
	}
	exportTo := "."
	if m.o.MeshWide {
		exportTo = "*"
	}
	u.Object["spec"] = map[string]any{
		"hosts": []any{p.Host}, "location": "MESH_EXTERNAL", "resolution": resolution,
		"ports": ports, "exportTo": []any{exportTo},
	}
	return u
}

// viaGateway routes a host's HTTP and TLS ports through the egress gateway,
// as Istio's egress-gateway task does.
func (m *migration) viaGateway(p planned) []*unstructured.Unstructured {
	ns, name := m.o.scopeNamespace(), objectName(p.Host)
	gwSvc := "istio-egressgateway." + m.o.root + ".svc.cluster.local"
	subset := strings.ReplaceAll(strings.ReplaceAll(p.Host, ".", "-"), "*", "wildcard")
	var servers, httpRoutes, tlsRoutes []any
	for port, proto := range p.Ports {
		n := int64(port)
		switch proto {
		case "HTTP":
			servers = append(servers, map[string]any{"port": map[string]any{"number": int64(80), "name": "http-" + subset, "protocol": "HTTP"}, "hosts": []any{p.Host}})
			httpRoutes = append(httpRoutes,
				map[string]any{"match": []any{map[string]any{"gateways": []any{"mesh"}, "port": n}}, "route": []any{map[string]any{"destination": map[string]any{"host": gwSvc, "subset": subset, "port": map[string]any{"number": int64(80)}}}}},
				map[string]any{"match": []any{map[string]any{"gateways": []any{name}, "port": int64(80)}}, "route": []any{map[string]any{"destination": map[string]any{"host": p.Host, "port": map[string]any{"number": n}}}}})
		case "TLS", "HTTPS":
			servers = append(servers, map[string]any{"port": map[string]any{"number": int64(443), "name": "tls-" + subset, "protocol": "TLS"}, "hosts": []any{p.Host}, "tls": map[string]any{"mode": "PASSTHROUGH"}})
			tlsRoutes = append(tlsRoutes,
				map[string]any{"match": []any{map[string]any{"gateways": []any{"mesh"}, "port": n, "sniHosts": []any{p.Host}}}, "route": []any{map[string]any{"destination": map[string]any{"host": gwSvc, "subset": subset, "port": map[string]any{"number": int64(443)}}}}},
				map[string]any{"match": []any{map[string]any{"gateways": []any{name}, "port": int64(443), "sniHosts": []any{p.Host}}}, "route": []any{map[string]any{"destination": map[string]any{"host": p.Host, "port": map[string]any{"number": n}}}}})
		}
	}
	if len(servers) == 0 {
		return nil // TCP only: the gateway needs a host to route on
	}
	gw := newObject("networking.istio.io/v1", "Gateway", ns, name)
	gw.Object["spec"] = map[string]any{"selector": map[string]any{"istio": "egressgateway"}, "servers": servers}
	vs := newObject("networking.istio.io/v1", "VirtualService", ns, name)
	vspec := map[string]any{"hosts": []any{p.Host}, "gateways": []any{"mesh", name}, "exportTo": []any{"."}}
	if m.o.MeshWide {
		vspec["exportTo"] = []any{"*"}
	}
	if len(httpRoutes) > 0 {
		vspec["http"] = httpRoutes
	}
	if len(tlsRoutes) > 0 {
		vspec["tls"] = tlsRoutes
	}
	vs.Object["spec"] = vspec
	dr := newObject("networking.istio.io/v1", "DestinationRule", ns, name)
	dr.Object["spec"] = map[string]any{"host": gwSvc, "subsets": []any{map[string]any{"name": subset}}}
	for _, u := range []*unstructured.Unstructured{gw, vs, dr} {
		u.SetAnnotations(map[string]string{annotationFor: p.Host})
	}
	return []*unstructured.Unstructured{dr, gw, vs}
}

// lockdownSidecar sets REGISTRY_ONLY on the scope's namespace-wide Sidecar:
// only that field of the team's own (its egress hosts kept), or a new
// "default" one.
func (m *migration) lockdownSidecar() (*unstructured.Unstructured, bool) {
	ns := m.o.scopeNamespace()
	name, partial := "default", false
	if sc := m.o.snap.namespaceSidecar(ns); sc != nil {
		name, partial = sc.Name, sc.Obj.GetAnnotations()[annotationFor] == ""
	}
	u := newObject("networking.istio.io/v1", "Sidecar", ns, name)
	if !partial {
		u.SetAnnotations(map[string]string{annotationFor: "lockdown"})
	}
	u.Object["spec"] = map[string]any{"outboundTrafficPolicy": map[string]any{"mode": registryOnly}}
	return u, partial
}

// unregistered are the observed host:port destinations nothing registers
// once the plan is applied.
func (m *migration) unregistered() []string {
	planned := map[string]bool{}
	for _, p := range m.entries {
		for port := range p.Ports {
			planned[p.Host+":"+strconv.Itoa(int(port))] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range m.ev.Exits {
		if e.Host == "" || e.Blocked {
			continue
		}
		key := e.Host + ":" + strconv.Itoa(int(e.Port))
		if planned[key] || m.o.snap.covering(e.Host, e.Port, m.o.scopeNamespace()) != "" || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, fmt.Sprintf("%s (from %s, %.0f %s)", e.Dest(), e.Ref(), e.Count, unit(e)))
	}
	sort.Strings(out)
	return out
}

func unit(e telemetry.Exit) string {
	if e.Protocol == "HTTP" {
		return "requests"
	}
	return "connections"
}

// plan lays the migration out.
func (m *migration) plan(dyn dynamic.Interface) *pipeline.Plan {
	o := m.o
	scope := "namespace " + o.Namespace
	if o.MeshWide {
		scope = "the mesh"
	}
	plan := &pipeline.Plan{Title: fmt.Sprintf("migrate-egress %s: %s", scope, o.Stage)}
	var entries, routes []pipeline.Change
	for _, p := range m.entries {
		entries = append(entries, pipeline.Change{Op: pipeline.Apply, Object: p.Obj})
	}
	for _, u := range m.gateways {
		routes = append(routes, pipeline.Change{Op: pipeline.Apply, Object: u})
	}
	if len(entries) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "register external hosts", Changes: entries})
	}
	if len(routes) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "route through the egress gateway", Changes: routes})
	}
	// Last, once everything seen is registered: the lockdown.
	if m.sidecar != nil {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "REGISTRY_ONLY", Changes: []pipeline.Change{{Op: pipeline.Apply, Object: m.sidecar, Partial: m.partial}}})
	}
	plan.Checks = m.checks()
	plan.Report = m.report
	plan.Verify = []pipeline.VerifyStep{m.verify(dyn)}
	if o.Stage == StageRegistry {
		plan.Notes = append(plan.Notes, fmt.Sprintf("registry: outbound traffic still may go anywhere; once nothing unregistered shows up over --window (%s), run kubectl mesh migrate-egress %s --stage lockdown", o.Window, o.scopeFlag()))
	}
	return plan
}

func (o *Options) scopeFlag() string {
	if o.MeshWide {
		return "--mesh-wide"
	}
	return "-n " + o.Namespace
}

// inventory prints what left the scope through the passthrough path.
func (o *Options) inventory(w io.Writer) {
	fmt.Fprintf(w, "Outbound traffic of %s outside the registry over the last %s (Prometheus: %s):\n", strings.TrimPrefix(o.scopeFlag(), "-n "), o.Window, o.ev.Where)
	if len(o.ev.Exits) == 0 {
		fmt.Fprintln(w, "  (none)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tIN WINDOW\tEVIDENCE\tSTATUS")
	for _, e := range o.ev.Exits {
		status := "passthrough"
		switch {
		case e.Blocked:
			status = "refused (BlackHoleCluster)"
		case e.Host != "":
			if ref := o.snap.covering(e.Host, e.Port, o.scopeNamespace()); ref != "" {
				status = "covered by " + ref
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f %s\t%s\t%s\n", e.Ref(), e.Dest(), e.Count, unit(e), e.Evidence(), status)
	}
	_ = tw.Flush()
}

func (m *migration) report(w io.Writer) {
	if !m.o.shown {
		m.o.inventory(w)
	}
	for _, p := range m.entries {
		var ports []string
		for n, proto := range p.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", n, proto))
		}
		sort.Strings(ports)
		how := "seen in the window"
		if p.Unobserved {
			how = "--allow"
		}
		fmt.Fprintf(w, "register %s %s (%s)\n", p.Host, strings.Join(ports, ","), how)
	}
	if m.sidecar != nil {
		fmt.Fprintf(w, "lock down: %s outboundTrafficPolicy %s\n", pipeline.Ref(m.sidecar), registryOnly)
	}
}

// verify re-reads what the plan wrote.
func (m *migration) verify(dyn dynamic.Interface) pipeline.VerifyStep {
	ns := m.o.scopeNamespace()
	return pipeline.VerifyStep{
		Name:    "egress registry",
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, progress pipeline.Progress) error {
			for _, p := range m.entries {
				u, err := dyn.Resource(serviceEntries).Namespace(ns).Get(ctx, p.Obj.GetName(), metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("ServiceEntry %s/%s after the apply: %w", ns, p.Obj.GetName(), err)
				}
				if e := parseEntry(u); !e.matches(p.Host) {
					return fmt.Errorf("ServiceEntry %s/%s no longer registers %s: it changed meanwhile", ns, u.GetName(), p.Host)
				}
			}
			if m.sidecar != nil {
				u, err := dyn.Resource(sidecars).Namespace(ns).Get(ctx, m.sidecar.GetName(), metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("Sidecar %s/%s after the apply: %w", ns, m.sidecar.GetName(), err)
				}
				if mode := parseSidecar(u).Mode; mode != registryOnly {
					return fmt.Errorf("Sidecar %s/%s has outboundTrafficPolicy %q, not %s: it changed meanwhile", ns, u.GetName(), mode, registryOnly)
				}
				progress("outbound traffic of %s is %s", strings.TrimPrefix(m.o.scopeFlag(), "-n "), registryOnly)
			}
			progress("%d ServiceEntries in place", len(m.entries))
			return nil
		},
	}
}
