package mtls

import (
	"context"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

var apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Backend is something the API server calls through a Service: an
// admission webhook or an aggregated API. The API server has no sidecar, so
// it cannot speak Istio mTLS to it.
type Backend struct {
	Ref                string // "ValidatingWebhookConfiguration/name"
	Namespace, Service string
	Port               int32 // Service port (443 when unset)
}

// Snapshot is everything the migration reads, in one pass of list calls.
type Snapshot struct {
	Root       string                       // Istio root namespace: its namespace-wide policy is mesh-wide
	Namespaces map[string]map[string]string // name → labels
	PAs        []mesh.PeerAuth              // every namespace
	Workloads  []mesh.Workload              // in the namespaces the change reaches
	Services   []corev1.Service             // same namespaces
	DRs        []*unstructured.Unstructured // every namespace: clients anywhere may use them
	AuthZ      []*unstructured.Unstructured // every namespace
	Backends   []Backend
}

// read lists what the checks need, concurrently, through the command's
// reader: namespaces, Istio security and networking config everywhere,
// and pods (with their controllers) and Services in ns ("" for every
// namespace). Webhooks and API services are cluster-scoped. About ten
// list calls, whatever the size, and fewer when the plan's analysis lists
// the same kinds.
func read(ctx context.Context, c *cli.Context, root, ns string) (*Snapshot, error) {
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Root: root, Namespaces: map[string]map[string]string{}}
	g, ctx := errgroup.WithContext(ctx)
	list := func(gvr schema.GroupVersionResource, namespace string, into *[]*unstructured.Unstructured) {
		g.Go(func() (err error) {
			if *into, err = rd.Unstructured(ctx, reads.Request{Resource: gvr, Namespace: namespace}); err != nil {
				return fmt.Errorf("listing %s: %w", gvr.Resource, err)
			}
			return nil
		})
	}
	var pas, apisvcs []*unstructured.Unstructured
	list(mesh.PeerAuthentications, "", &pas)
	list(mesh.DestinationRules, "", &s.DRs)
	list(mesh.AuthorizationPolicies, "", &s.AuthZ)
	list(apiServices, "", &apisvcs)
	g.Go(func() error {
		l, err := rd.Metadata(ctx, reads.Request{Resource: mesh.Namespaces})
		if err != nil {
			return fmt.Errorf("listing namespaces: %w", err)
		}
		for _, n := range l {
			s.Namespaces[n.GetName()] = n.GetLabels()
		}
		return nil
	})
	g.Go(func() error {
		var err error
		s.Workloads, err = mesh.Inventory(ctx, rd, ns)
		return err
	})
	g.Go(func() error {
		l, err := reads.List[*corev1.Service](ctx, rd, reads.Request{Resource: mesh.Services, Namespace: ns})
		if err != nil {
			return fmt.Errorf("listing services: %w", err)
		}
		for _, svc := range l {
			s.Services = append(s.Services, *svc)
		}
		return nil
	})
	var hooks []Backend
	g.Go(func() error {
		v, err := reads.List[*admissionv1.ValidatingWebhookConfiguration](ctx, rd, reads.Request{Resource: mesh.ValidatingWebhooks})
		if err != nil {
			return fmt.Errorf("listing validating webhooks: %w", err)
		}
		m, err := reads.List[*admissionv1.MutatingWebhookConfiguration](ctx, rd, reads.Request{Resource: mesh.MutatingWebhooks})
		if err != nil {
			return fmt.Errorf("listing mutating webhooks: %w", err)
		}
		for _, h := range v {
			for _, w := range h.Webhooks {
				if sr := w.ClientConfig.Service; sr != nil {
					hooks = append(hooks, backend("ValidatingWebhookConfiguration/"+h.Name, sr.Namespace, sr.Name, sr.Port))
				}
			}
		}
		for _, h := range m {
			for _, w := range h.Webhooks {
				if sr := w.ClientConfig.Service; sr != nil {
					hooks = append(hooks, backend("MutatingWebhookConfiguration/"+h.Name, sr.Namespace, sr.Name, sr.Port))
				}
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, a := range apisvcs {
		ns, _, _ := unstructured.NestedString(a.Object, "spec", "service", "namespace")
		name, _, _ := unstructured.NestedString(a.Object, "spec", "service", "name")
		port, found, _ := unstructured.NestedInt64(a.Object, "spec", "service", "port")
		if name == "" {
			continue
		}
		var p *int32
		if found {
			v := int32(port)
			p = &v
		}
		hooks = append(hooks, backend("APIService/"+a.GetName(), ns, name, p))
	}
	s.Backends = hooks
	for _, u := range pas {
		p, err := mesh.ParsePeerAuth(u)
		if err != nil {
			return nil, err
		}
		s.PAs = append(s.PAs, p)
	}
	sort.Slice(s.PAs, func(i, j int) bool {
		return s.PAs[i].Namespace+"/"+s.PAs[i].Name < s.PAs[j].Namespace+"/"+s.PAs[j].Name
	})
	return s, nil
}

func backend(ref, ns, name string, port *int32) Backend {
	b := Backend{Ref: ref, Namespace: ns, Service: name, Port: 443}
	if port != nil {
		b.Port = *port
	}
	return b
}
