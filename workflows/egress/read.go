package egress

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

var (
	serviceEntries = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	sidecars       = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"}
)

// snapshot is everything the migration reads, in a fixed number of calls.
type snapshot struct {
	Root, Namespace string
	NamespaceExists bool
	Entries         []entry   // every namespace: an entry anywhere may be exported here
	Sidecars        []sidecar // in the namespace and the root namespace
	// Mesh config (the istio ConfigMap in the root namespace).
	MeshRegistryOnly bool
	DNSCapture       bool
	DNSAutoAllocate  bool
	EgressGateway    bool // an istio=egressgateway Service in the root namespace
}

// entry is the part of a ServiceEntry coverage depends on.
type entry struct {
	Name, Namespace string
	Hosts           []string
	Ports           map[uint32]string // number → protocol
	ExportTo        []string
	Addresses       []string
	Resolution      string
	Ours            bool
}

func (e entry) Ref() string { return "ServiceEntry/" + e.Name + " -n " + e.Namespace }

// visibleIn reports whether the entry is exported to ns.
func (e entry) visibleIn(ns string) bool {
	if len(e.ExportTo) == 0 {
		return true
	}
	for _, x := range e.ExportTo {
		if x == "*" || x == ns || x == "." && e.Namespace == ns {
			return true
		}
	}
	return false
}

// matches reports whether one of the entry's hosts names h (wildcards included).
func (e entry) matches(h string) bool {
	for _, eh := range e.Hosts {
		if eh == h || strings.HasPrefix(eh, "*.") && strings.HasSuffix(h, eh[1:]) {
			return true
		}
	}
	return false
}

// sidecar is a Sidecar resource's egress side.
type sidecar struct {
	Name, Namespace string
	Selector        bool
	Hosts           []string // egress hosts, "ns/host"
	Mode            string   // outboundTrafficPolicy.mode
	Obj             *unstructured.Unstructured
}

func (s sidecar) Ref() string { return "Sidecar/" + s.Name + " -n " + s.Namespace }

// imports reports whether the Sidecar's egress hosts let the namespace's
// proxies see config from ns.
func (s sidecar) imports(ns, own string) bool {
	if len(s.Hosts) == 0 {
		return true
	}
	for _, h := range s.Hosts {
		hns, _, _ := strings.Cut(h, "/")
		if hns == "*" || hns == ns || hns == "." && ns == own {
			return true
		}
	}
	return false
}

func read(ctx context.Context, c *cli.Context, root, ns string) (*snapshot, error) {
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	s := &snapshot{Root: root, Namespace: ns}
	var ses, scs, rootScs []*unstructured.Unstructured
	g, ctx := errgroup.WithContext(ctx)
	list := func(gvr schema.GroupVersionResource, namespace string, into *[]*unstructured.Unstructured) {
		g.Go(func() (err error) {
			if *into, err = rd.Unstructured(ctx, reads.Request{Resource: gvr, Namespace: namespace}); err != nil {
				return fmt.Errorf("listing %s: %w", gvr.Resource, err)
			}
			return nil
		})
	}
	list(serviceEntries, "", &ses)
	list(sidecars, ns, &scs)
	if root != ns {
		list(sidecars, root, &rootScs)
	}
	g.Go(func() error {
		var err error
		if s.NamespaceExists, err = rd.Exists(ctx, reads.Request{Resource: mesh.Namespaces}, ns); err != nil {
			return fmt.Errorf("listing namespaces: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		cm, err := reads.ConfigMap(ctx, rd, root, "istio")
		if err != nil {
			return fmt.Errorf("reading the mesh config: %w", err)
		} else if cm == nil {
			return nil // Istio's defaults: ALLOW_ANY, no DNS capture
		}
		var mc struct {
			OutboundTrafficPolicy struct{ Mode string } `json:"outboundTrafficPolicy"`
			DefaultConfig         struct {
				ProxyMetadata map[string]string `json:"proxyMetadata"`
			} `json:"defaultConfig"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["mesh"]), &mc); err != nil {
			return fmt.Errorf("reading the mesh config: %w", err)
		}
		s.MeshRegistryOnly = mc.OutboundTrafficPolicy.Mode == "REGISTRY_ONLY"
		s.DNSCapture = mc.DefaultConfig.ProxyMetadata["ISTIO_META_DNS_CAPTURE"] == "true"
		s.DNSAutoAllocate = mc.DefaultConfig.ProxyMetadata["ISTIO_META_DNS_AUTO_ALLOCATE"] == "true"
		return nil
	})
	g.Go(func() error {
		l, err := rd.Metadata(ctx, reads.Request{Resource: mesh.Services, Namespace: root, Labels: "istio=egressgateway"})
		if err != nil {
			return fmt.Errorf("listing the egress gateway: %w", err)
		}
		s.EgressGateway = len(l) > 0
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, u := range ses {
		s.Entries = append(s.Entries, parseEntry(u))
	}
	for _, u := range append(scs, rootScs...) {
		s.Sidecars = append(s.Sidecars, parseSidecar(u))
	}
	return s, nil
}

func parseEntry(u *unstructured.Unstructured) entry {
	e := entry{Name: u.GetName(), Namespace: u.GetNamespace(), Ports: map[uint32]string{}, Ours: u.GetAnnotations()[annotationFor] != ""}
	e.Hosts, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "hosts")
	e.ExportTo, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "exportTo")
	e.Addresses, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "addresses")
	e.Resolution, _, _ = unstructured.NestedString(u.Object, "spec", "resolution")
	ports, _, _ := unstructured.NestedSlice(u.Object, "spec", "ports")
	for _, p := range ports {
		pm, _ := p.(map[string]any)
		n, _, _ := unstructured.NestedInt64(pm, "number")
		proto, _, _ := unstructured.NestedString(pm, "protocol")
		e.Ports[uint32(n)] = strings.ToUpper(proto)
	}
	return e
}

func parseSidecar(u *unstructured.Unstructured) sidecar {
	sc := sidecar{Name: u.GetName(), Namespace: u.GetNamespace(), Obj: u}
	_, sc.Selector, _ = unstructured.NestedMap(u.Object, "spec", "workloadSelector")
	sc.Mode, _, _ = unstructured.NestedString(u.Object, "spec", "outboundTrafficPolicy", "mode")
	egress, _, _ := unstructured.NestedSlice(u.Object, "spec", "egress")
	for _, e := range egress {
		hosts, _, _ := unstructured.NestedStringSlice(e.(map[string]any), "hosts")
		sc.Hosts = append(sc.Hosts, hosts...)
	}
	return sc
}

// covering names an entry visible in ns that registers host:port ("" if none).
func (s *snapshot) covering(h string, port uint32, ns string) string {
	for _, e := range s.Entries {
		if !e.visibleIn(ns) || !e.matches(h) {
			continue
		}
		if _, ok := e.Ports[port]; ok || port == 0 {
			return e.Ref()
		}
	}
	return ""
}

// hidden names entries that register host but are not exported to ns.
func (s *snapshot) hidden(h, ns string) []string {
	var out []string
	for _, e := range s.Entries {
		if e.matches(h) && !e.visibleIn(ns) {
			out = append(out, e.Ref())
		}
	}
	slices.Sort(out)
	return out
}

// namespaceSidecar is the Sidecar without a workload selector that Istio
// uses for ns (the oldest when several), or nil.
func (s *snapshot) namespaceSidecar(ns string) *sidecar {
	for i := range s.Sidecars {
		if sc := &s.Sidecars[i]; sc.Namespace == ns && !sc.Selector {
			return sc
		}
	}
	return nil
}
