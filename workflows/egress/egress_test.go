package egress

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "api.stripe.com:443", want: "api.stripe.com:443/TLS"},
		{in: "httpbin.org:80", want: "httpbin.org:80/HTTP"},
		{in: "db.example.com:5432/tcp", want: "db.example.com:5432/TCP"},
		{in: "*.googleapis.com:443/TLS", want: "*.googleapis.com:443/TLS"},
		{in: "db.example.com", err: "no port"},
		{in: "db.example.com:0", err: "port must be a number"},
		{in: "db.example.com:99999", err: "port must be a number"},
		{in: "db_example:5432", err: "not a host name"},
		{in: "db.example.com:5432/SQL", err: "protocol must be one of"},
	} {
		h, err := parseHost(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || h.String() != tc.want):
			t.Errorf("%q: %v %v, want %s", tc.in, h, err, tc.want)
		}
	}
}

func se(name, ns string, hosts []string, port uint32, proto string, exportTo []string, ours bool) entry {
	return entry{Name: name, Namespace: ns, Hosts: hosts, Ports: map[uint32]string{port: proto}, ExportTo: exportTo, Ours: ours}
}

func shop() *snapshot {
	return &snapshot{Root: "istio-system", Namespace: "shop", NamespaceExists: true, Entries: []entry{
		se("covered", "shop", []string{"covered.example.com"}, 443, "TLS", []string{"."}, false),
		se("hidden", "other", []string{"hidden.example.com"}, 443, "TLS", []string{"."}, false),
	}}
}

func exits() []telemetry.Exit {
	return []telemetry.Exit{
		{Source: "web", SourceNamespace: "shop", Host: "httpbin.org", Port: 80, Protocol: "HTTP", Count: 120},
		{Source: "web", SourceNamespace: "shop", Host: "api.stripe.com", Port: 443, Protocol: "TLS", Count: 40},
		{Source: "api", SourceNamespace: "shop", Host: "covered.example.com", Port: 443, Protocol: "TLS", Count: 9},
		{Source: "api", SourceNamespace: "shop", Host: "hidden.example.com", Port: 443, Protocol: "TLS", Count: 3},
		{Source: "billing", SourceNamespace: "shop", Protocol: "TCP", Count: 15},
	}
}

func build(t *testing.T, o *Options, s *snapshot, ev *evidence) *migration {
	t.Helper()
	o.Namespace, o.root, o.snap, o.ev = s.Namespace, s.Root, s, ev
	if o.Window == "" {
		o.Window = "7d"
	}
	if err := o.parse(); err != nil {
		t.Fatal(err)
	}
	return o.build()
}

func check(cs []pipeline.Check, id string) *pipeline.Check {
	for i := range cs {
		if cs[i].ID == id {
			return &cs[i]
		}
	}
	return nil
}

func hosts(m *migration) []string {
	var out []string
	for _, p := range m.entries {
		out = append(out, p.Host)
	}
	return out
}

func TestRegistryEntriesFromEvidence(t *testing.T) {
	m := build(t, &Options{Stage: StageRegistry}, shop(), &evidence{Exits: exits(), Any: true, Covers: true})
	if got := hosts(m); !slices.Equal(got, []string{"api.stripe.com", "hidden.example.com", "httpbin.org"}) {
		t.Fatalf("entries for %v: a covered host registered again, or a hidden one not", got)
	}
	if m.sidecar != nil {
		t.Fatal("the registry stage locks down")
	}
	spec := m.entries[2].Obj.Object["spec"].(map[string]any)
	if spec["location"] != "MESH_EXTERNAL" || spec["resolution"] != "DNS" || !slices.Equal(spec["exportTo"].([]any), []any{"."}) {
		t.Errorf("httpbin.org entry: %v", spec)
	}
	if p := spec["ports"].([]any)[0].(map[string]any); p["number"] != int64(80) || p["protocol"] != "HTTP" || p["name"] != "http-80" {
		t.Errorf("port %v", p)
	}
	cs := m.checks()
	if c := check(cs, CheckNoHost); c == nil || c.Severity != pipeline.Warning || !strings.HasPrefix(c.Message, "before lockdown:") || !strings.Contains(c.Objects[0], "shop/billing") {
		t.Errorf("TCP without a host in registry: %+v", c)
	}
	if c := check(cs, CheckExportTo); c == nil || c.Objects[0] != "ServiceEntry/hidden -n other registers hidden.example.com" {
		t.Errorf("exportTo: %+v", c)
	}
	for _, c := range cs {
		if c.Severity == pipeline.Error {
			t.Errorf("registry blocks on %s", c.ID)
		}
	}
}

// registered: the entries of a registry stage exist.
func registered(t *testing.T) *snapshot {
	s := shop()
	m := build(t, &Options{Stage: StageRegistry}, shop(), &evidence{Exits: exits(), Any: true, Covers: true})
	for _, p := range m.entries {
		s.Entries = append(s.Entries, parseEntry(p.Obj))
	}
	return s
}

func TestLockdownGate(t *testing.T) {
	s := registered(t)
	ev := &evidence{Exits: exits(), Any: true, Covers: true}
	m := build(t, &Options{Stage: StageLockdown}, s, ev)
	if m.sidecar == nil || m.sidecar.GetName() != "default" || m.partial {
		t.Fatalf("lockdown Sidecar %v (partial %v)", m.sidecar, m.partial)
	}
	if mode, _, _ := unstructured.NestedString(m.sidecar.Object, "spec", "outboundTrafficPolicy", "mode"); mode != "REGISTRY_ONLY" {
		t.Fatalf("mode %q", mode)
	}
	cs := m.checks()
	if c := check(cs, CheckUnregistered); c != nil {
		t.Errorf("everything seen is registered, yet %+v", c)
	}
	if c := check(cs, CheckNoHost); c == nil || c.Severity != pipeline.Error {
		t.Errorf("TCP without a host does not block the lockdown: %+v", c)
	}
	// A host seen since the registry stage blocks, named.
	ev.Exits = append(ev.Exits, telemetry.Exit{Source: "web", SourceNamespace: "shop", Host: "new.example.com", Port: 443, Protocol: "TLS", Count: 2})
	m = build(t, &Options{Stage: StageLockdown}, s, ev)
	if c := check(m.checks(), CheckUnregistered); c == nil || c.Severity != pipeline.Error || !slices.Equal(c.Objects, []string{"new.example.com:443/TLS (from shop/web, 2 connections)"}) {
		t.Errorf("unregistered host: %+v", c)
	}
	// --allow registers it in the lockdown plan itself.
	m = build(t, &Options{Stage: StageLockdown, Allow: []string{"new.example.com:443"}}, s, ev)
	if c := check(m.checks(), CheckUnregistered); c != nil || !slices.Equal(hosts(m), []string{"new.example.com"}) {
		t.Errorf("--allow at lockdown: %v %+v", hosts(m), c)
	}
	if m.entries[0].Obj.GetAnnotations()[annotationUnobserved] == "" {
		t.Error("an --allow'ed host is not recorded as registered without evidence")
	}
}

func TestLockdownMergesIntoTheTeamSidecar(t *testing.T) {
	s := registered(t)
	team := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
		"spec": map[string]any{"egress": []any{map[string]any{"hosts": []any{"./*", "istio-system/*"}}}}}}
	team.SetName("team")
	team.SetNamespace("shop")
	s.Sidecars = []sidecar{parseSidecar(team)}
	m := build(t, &Options{Stage: StageLockdown}, s, &evidence{Exits: exits()[:4], Any: true, Covers: true})
	if m.sidecar.GetName() != "team" || !m.partial {
		t.Fatalf("lockdown does not merge into the team's Sidecar: %s partial=%v", m.sidecar.GetName(), m.partial)
	}
	if _, found, _ := unstructured.NestedSlice(m.sidecar.Object, "spec", "egress"); found {
		t.Error("the merge rewrites the team's egress hosts")
	}
	// A Sidecar that does not import the namespace hides the entries.
	team.Object["spec"] = map[string]any{"egress": []any{map[string]any{"hosts": []any{"istio-system/*"}}}}
	s.Sidecars = []sidecar{parseSidecar(team)}
	m = build(t, &Options{Stage: StageLockdown}, s, &evidence{Exits: exits()[:4], Any: true, Covers: true})
	if c := check(m.checks(), CheckSidecarImport); c == nil || c.Severity != pipeline.Error {
		t.Errorf("sidecar import: %+v", c)
	}
}

func TestEgressChecks(t *testing.T) {
	s := shop()
	ev := &evidence{Exits: append(exits(), telemetry.Exit{Source: "web", SourceNamespace: "shop", Host: "169.254.169.254", Port: 80, Protocol: "HTTP", Count: 4}), Any: true, Covers: true}
	m := build(t, &Options{Stage: StageRegistry, Allow: []string{"db-a.example.com:5432/TCP", "db-b.example.com:5432/TCP", "*.googleapis.com:443"}}, s, ev)
	cs := m.checks()
	if c := check(cs, CheckSharedPort); c == nil || c.Severity != pipeline.Warning || !strings.Contains(c.Message, "lacks ISTIO_META_DNS_CAPTURE") || c.Objects[0] != "port 5432: db-a.example.com, db-b.example.com" {
		t.Errorf("shared TCP port: %+v", c)
	}
	s.DNSCapture, s.DNSAutoAllocate = true, true
	if c := check(build(t, &Options{Stage: StageRegistry, Allow: []string{"db-a.example.com:5432/TCP", "db-b.example.com:5432/TCP"}}, s, ev).checks(), CheckSharedPort); c == nil || c.Severity != pipeline.Info {
		t.Errorf("shared TCP port with DNS auto-allocation: %+v", c)
	}
	if c := check(cs, CheckWildcard); c == nil || c.Objects[0] != "*.googleapis.com" {
		t.Errorf("wildcard: %+v", c)
	}
	if c := check(cs, CheckMetadata); c == nil || c.Objects[0] != "shop/web" {
		t.Errorf("metadata address: %+v", c)
	}
	if c := check(build(t, &Options{Stage: StageRegistry}, shop(), &evidence{}).checks(), CheckInconclusive); c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Message, `reporter="source", source_workload_namespace=~"shop"`) {
		t.Errorf("no metrics: %+v", c)
	}
	if c := check(build(t, &Options{Stage: StageLockdown}, registered(t), &evidence{Exits: exits()[:4], Any: true}).checks(), CheckInconclusive); c == nil || c.Severity != pipeline.Error || !strings.Contains(c.Message, "offset 1w") {
		t.Errorf("lockdown on data shorter than the window: %+v", c)
	}
}

func TestViaEgressGateway(t *testing.T) {
	s := shop()
	s.EgressGateway = true
	m := build(t, &Options{Stage: StageRegistry, ViaEgressGateway: true}, s, &evidence{Exits: exits()[:2], Any: true, Covers: true})
	var kinds []string
	for _, u := range m.gateways {
		kinds = append(kinds, u.GetKind()+"/"+u.GetName())
	}
	want := []string{"DestinationRule/egress-api-stripe-com", "Gateway/egress-api-stripe-com", "VirtualService/egress-api-stripe-com", "DestinationRule/egress-httpbin-org", "Gateway/egress-httpbin-org", "VirtualService/egress-httpbin-org"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("gateway objects %v, want %v", kinds, want)
	}
	if c := check(m.checks(), CheckGateway); c == nil || !strings.Contains(c.Message, "NetworkPolicy") {
		t.Errorf("no word on the NetworkPolicy: %+v", c)
	}
}

func TestGoldenPlans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     *Options
		snap  func() *snapshot
		exits []telemetry.Exit
	}{
		{"registry", &Options{Stage: StageRegistry}, shop, exits()},
		{"lockdown", &Options{Stage: StageLockdown, Allow: []string{"db.example.com:5432/TCP"}}, func() *snapshot { return registered(t) }, exits()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, tc.o, tc.snap(), &evidence{Exits: tc.exits, Any: true, Covers: true, Where: "http://prometheus:9090"}).plan(nil)
			plantest.Golden(t, filepath.Join("testdata", tc.name+".golden"), plantest.Render(p))
		})
	}
}

func TestMeshWide(t *testing.T) {
	s := shop()
	s.Namespace = "istio-system"
	o := &Options{Stage: StageLockdown, MeshWide: true, Allow: []string{"api.stripe.com:443"}}
	m := build(t, o, s, &evidence{Any: true, Covers: true})
	if got := o.sources(); !slices.Equal(got, []string{".+"}) {
		t.Errorf("mesh-wide reads the traffic of %v", got)
	}
	e := m.entries[0].Obj
	if e.GetNamespace() != "istio-system" || !slices.Equal(e.Object["spec"].(map[string]any)["exportTo"].([]any), []any{"*"}) {
		t.Errorf("mesh-wide entry in %s exported to %v", e.GetNamespace(), e.Object["spec"].(map[string]any)["exportTo"])
	}
	if m.sidecar.GetNamespace() != "istio-system" || m.sidecar.GetName() != "default" {
		t.Errorf("mesh-wide lockdown on %s", pipeline.Ref(m.sidecar))
	}
}
