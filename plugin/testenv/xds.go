package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	// Registers every Envoy extension type, so typed configs unmarshal.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// xDS type URLs.
const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Proxy is a test data plane: it connects to a real istiod over ADS as the
// sidecar of a pod in the cluster (what Envoy would do, with the node
// identity and metadata the injected istio-proxy sends) and keeps the latest
// listeners, clusters and routes istiod sent it. Envoy is not available
// here; what istiod generates is what the tests assert on.
type Proxy struct {
	ID string

	conn   *grpc.ClientConn
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	noAck  bool

	mu        sync.Mutex
	sendMu    sync.Mutex
	resources map[string]map[string]*anypb.Any // type → name → resource
	pushes    int
	err       error
}

// ProxyOptions tune the test proxy.
type ProxyOptions struct {
	// NoAck never acknowledges a response: istiod reports the proxy STALE.
	NoAck bool
}

// ConnectProxy connects a test proxy for pod (which must exist, with its
// IP, so istiod finds its Services) and waits for its first listeners.
func (d *Istiod) ConnectProxy(ctx context.Context, pod *corev1.Pod, opts ProxyOptions) (*Proxy, error) {
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("testenv: pod %s/%s has no IP yet", pod.Namespace, pod.Name)
	}
	conn, err := grpc.NewClient(d.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("testenv: ADS stream to istiod %s: %w", d.Revision, err)
	}
	p := &Proxy{
		ID:   fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", pod.Status.PodIP, pod.Name, pod.Namespace, pod.Namespace),
		conn: conn, stream: stream, cancel: cancel, noAck: opts.NoAck,
		resources: map[string]map[string]*anypb.Any{},
	}
	node, err := proxyNode(p.ID, pod)
	if err != nil {
		p.Close()
		return nil, err
	}
	go p.receive()
	for _, t := range []string{typeCluster, typeListener} {
		if err := p.send(&discovery.DiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			p.Close()
			return nil, err
		}
		node = nil // the node is sent once per stream, as Envoy does
	}
	if err := p.WaitFor(ctx, func(p *Proxy) bool { return len(p.resources[typeListener]) > 0 }); err != nil {
		p.Close()
		return nil, fmt.Errorf("testenv: no listeners from istiod %s for %s: %w", d.Revision, p.ID, err)
	}
	return p, nil
}

// proxyNode is the node an injected istio-proxy announces (pilot-agent
// sends these metadata fields).
func proxyNode(id string, pod *corev1.Pod) (*core.Node, error) {
	labels := map[string]any{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	var ports []any
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			ports = append(ports, map[string]any{"name": p.Name, "containerPort": float64(p.ContainerPort), "protocol": string(p.Protocol)})
		}
	}
	portsJSON, _ := json.Marshal(ports)
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         pod.Namespace,
		"NAME":              pod.Name,
		"LABELS":            labels,
		"ISTIO_VERSION":     "1.31.0",
		"CLUSTER_ID":        "Kubernetes",
		"MESH_ID":           "cluster.local",
		"SERVICE_ACCOUNT":   sa,
		"INSTANCE_IPS":      pod.Status.PodIP,
		"INTERCEPTION_MODE": "REDIRECT",
		"POD_PORTS":         string(portsJSON),
		"WORKLOAD_NAME":     pod.Labels["app"],
	})
	if err != nil {
		return nil, err
	}
	return &core.Node{Id: id, Cluster: pod.Labels["app"] + "." + pod.Namespace, Metadata: md,
		UserAgentName: "envoy"}, nil
}

func (p *Proxy) send(r *discovery.DiscoveryRequest) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	return p.stream.Send(r)
}

func (p *Proxy) receive() {
	for {
		resp, err := p.stream.Recv()
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		byName := map[string]*anypb.Any{}
		var names []string
		for _, r := range resp.Resources {
			n := resourceName(resp.TypeUrl, r)
			byName[n] = r
			names = append(names, n)
		}
		p.mu.Lock()
		p.resources[resp.TypeUrl] = byName
		p.pushes++
		p.mu.Unlock()
		if p.noAck {
			continue
		}
		var requested []string
		if resp.TypeUrl == typeRoute || resp.TypeUrl == typeEndpoint {
			requested = names
		}
		_ = p.send(&discovery.DiscoveryRequest{TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo,
			ResponseNonce: resp.Nonce, ResourceNames: requested})
		// Like Envoy: routes named by the listeners, endpoints of EDS clusters.
		switch resp.TypeUrl {
		case typeListener:
			_ = p.send(&discovery.DiscoveryRequest{TypeUrl: typeRoute, ResourceNames: p.routeNames()})
		case typeCluster:
			_ = p.send(&discovery.DiscoveryRequest{TypeUrl: typeEndpoint, ResourceNames: p.edsNames()})
		}
	}
}

func resourceName(typeURL string, r *anypb.Any) string {
	var m interface{ GetName() string }
	switch typeURL {
	case typeListener:
		m = &listener.Listener{}
	case typeCluster:
		m = &cluster.Cluster{}
	case typeRoute:
		m = &route.RouteConfiguration{}
	case typeEndpoint:
		cla := &endpoint.ClusterLoadAssignment{}
		if r.UnmarshalTo(cla) != nil {
			return ""
		}
		return cla.ClusterName
	default:
		return r.TypeUrl
	}
	if err := r.UnmarshalTo(m.(proto.Message)); err != nil {
		return ""
	}
	return m.GetName()
}

func (p *Proxy) routeNames() []string {
	var out []string
	for _, l := range p.Listeners() {
		for _, fc := range l.FilterChains {
			if m := httpManager(fc); m != nil && m.GetRds() != nil {
				out = append(out, m.GetRds().RouteConfigName)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (p *Proxy) edsNames() []string {
	var out []string
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, r := range p.resources[typeCluster] {
		c := &cluster.Cluster{}
		if r.UnmarshalTo(c) == nil && c.GetType() == cluster.Cluster_EDS {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Close ends the stream; istiod forgets the proxy.
func (p *Proxy) Close() {
	p.cancel()
	p.conn.Close()
}

// WaitFor polls until cond holds for the latest configuration (each call
// sees a consistent copy) or ctx ends.
func (p *Proxy) WaitFor(ctx context.Context, cond func(p *Proxy) bool) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		p.mu.Lock()
		err := p.err
		p.mu.Unlock()
		if err != nil {
			return false, fmt.Errorf("ADS stream ended: %w", err)
		}
		return cond(p), nil
	})
}

func (p *Proxy) all(typeURL string) []*anypb.Any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for n := range p.resources[typeURL] {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*anypb.Any, 0, len(names))
	for _, n := range names {
		out = append(out, p.resources[typeURL][n])
	}
	return out
}

// Listeners istiod sent last.
func (p *Proxy) Listeners() []*listener.Listener {
	var out []*listener.Listener
	for _, r := range p.all(typeListener) {
		l := &listener.Listener{}
		if r.UnmarshalTo(l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// ClusterNames lists the clusters istiod sent last.
func (p *Proxy) ClusterNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.resources[typeCluster]))
}

// OutboundCatchAll is the cluster the virtualOutbound listener sends
// traffic to that matches no service: PassthroughCluster under ALLOW_ANY,
// BlackHoleCluster under REGISTRY_ONLY ("" before istiod sent one).
func (p *Proxy) OutboundCatchAll() string {
	for _, l := range p.Listeners() {
		if l.Name != "virtualOutbound" {
			continue
		}
		for _, fc := range l.FilterChains {
			if fc.Name != "virtualOutbound-catchall-tcp" {
				continue
			}
			for _, f := range fc.Filters {
				var tp tcpproxy.TcpProxy
				if f.GetTypedConfig().UnmarshalTo(&tp) == nil {
					return tp.GetCluster()
				}
			}
		}
	}
	return ""
}

// RouteNames lists the route configurations istiod sent last.
func (p *Proxy) RouteNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.resources[typeRoute]))
}

// Route is the route configuration called name ("9080" for an outbound
// HTTP port), or nil.
func (p *Proxy) Route(name string) *route.RouteConfiguration {
	p.mu.Lock()
	r := p.resources[typeRoute][name]
	p.mu.Unlock()
	if r == nil {
		return nil
	}
	rc := &route.RouteConfiguration{}
	if r.UnmarshalTo(rc) != nil {
		return nil
	}
	return rc
}

// InboundChain is one filter chain of the inbound listener for a port.
type InboundChain struct {
	Name string
	// TransportProtocol is "tls" (mTLS) or "raw_buffer" (plaintext).
	TransportProtocol string
	// RBAC is the JSON of the chain's RBAC filters (HTTP or network), empty
	// when the chain has none.
	RBAC []string
}

// InboundChains lists the filter chains of the "virtualInbound" listener
// that match destination port.
func (p *Proxy) InboundChains(port uint32) []InboundChain {
	var out []InboundChain
	for _, l := range p.Listeners() {
		if l.Name != "virtualInbound" {
			continue
		}
		for _, fc := range l.FilterChains {
			m := fc.FilterChainMatch
			if m == nil || m.DestinationPort == nil || m.DestinationPort.Value != port {
				continue
			}
			ch := InboundChain{Name: fc.Name, TransportProtocol: m.TransportProtocol}
			for _, f := range fc.Filters {
				if strings.Contains(f.Name, "rbac") {
					ch.RBAC = append(ch.RBAC, jsonOf(f.GetTypedConfig()))
				}
			}
			if h := httpManager(fc); h != nil {
				for _, f := range h.HttpFilters {
					if strings.Contains(f.Name, "rbac") {
						ch.RBAC = append(ch.RBAC, jsonOf(f.GetTypedConfig()))
					}
				}
			}
			out = append(out, ch)
		}
	}
	return out
}

func jsonOf(a *anypb.Any) string {
	b, err := protojson.Marshal(a)
	if err != nil {
		return ""
	}
	return string(b)
}

func httpManager(fc *listener.FilterChain) *hcm.HttpConnectionManager {
	for _, f := range fc.Filters {
		if f.Name != "envoy.filters.network.http_connection_manager" {
			continue
		}
		m := &hcm.HttpConnectionManager{}
		if f.GetTypedConfig().UnmarshalTo(m) == nil {
			return m
		}
	}
	return nil
}

// DefaultRoute is the last (catch-all) route of the virtual host istiod
// names vhost ("reviews.bookinfo.svc.cluster.local:9080") in route
// configuration routeName, or nil.
func (p *Proxy) DefaultRoute(routeName, vhost string) *route.Route {
	rc := p.Route(routeName)
	if rc == nil {
		return nil
	}
	for _, vh := range rc.VirtualHosts {
		if vh.Name == vhost && len(vh.Routes) > 0 {
			return vh.Routes[len(vh.Routes)-1]
		}
	}
	return nil
}

// Routes are the routes of vhost in route configuration routeName, in order.
func (p *Proxy) Routes(routeName, vhost string) []*route.Route {
	rc := p.Route(routeName)
	if rc == nil {
		return nil
	}
	for _, vh := range rc.VirtualHosts {
		if vh.Name == vhost {
			return vh.Routes
		}
	}
	return nil
}

// WeightedClusters returns cluster → weight of DefaultRoute; a
// single-cluster route is weight 100.
func (p *Proxy) WeightedClusters(routeName, vhost string) map[string]uint32 {
	a := p.DefaultRoute(routeName, vhost).GetRoute()
	if a == nil {
		return nil
	}
	out := map[string]uint32{}
	if c := a.GetCluster(); c != "" {
		out[c] = 100
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out[wc.Name] = wc.Weight.GetValue()
	}
	return out
}
