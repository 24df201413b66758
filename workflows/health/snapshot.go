// Package health is `kubectl mesh check` and `kubectl mesh status`: the
// mesh's health and posture from one concurrent pass of list calls.
package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

// cluster is what check and status read.
type cluster struct {
	Version     string
	IstioCRDs   []string
	ShippedCRDs []string // the CRDs of the Istio release this binary embeds
	// GatewayCRDs are the Gateway API CRDs by name: bundle version and channel.
	GatewayCRDs map[string][2]string
	Planes      []mesh.ControlPlane
	Deployments []appsv1.Deployment
	PDBs        []policyv1.PodDisruptionBudget
	Services    map[string]bool // "ns/name"
	Mutating    []admissionv1.MutatingWebhookConfiguration
	Validating  []admissionv1.ValidatingWebhookConfiguration
	Namespaces  []corev1.Namespace
	Workloads   []mesh.Workload
	PAs         []mesh.PeerAuth
	AuthZ       []*unstructured.Unstructured
	VSs         []*unstructured.Unstructured
	DRs         []*unstructured.Unstructured
	// MeshRetryOn is the mesh's defaultHttpRetryPolicy.retryOn ("" for Istio's default).
	MeshRetryOn string
	// Analysis is the analyzers' snapshot, taken in the same pass when
	// asked for; nil when not asked or Denied.
	Analysis *analysis.Snapshot
	// Denied names the analyzer inputs the user may not list.
	Denied *analysis.DeniedError
}

// step reports progress on one line of stderr.
type step func(what string)

// istioConfig are the Istio kinds check and status read, every revision's.
var istioConfig = []schema.GroupVersionResource{
	mesh.PeerAuthentications, mesh.AuthorizationPolicies, mesh.VirtualServices, mesh.DestinationRules,
}

var pdbs = policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets")

// read lists everything concurrently through the command's reader;
// namespace "" is every namespace. With analyze, the LISTs Istio's
// analyzers need are started first and everything they cover (pods,
// Services, Namespaces, Deployments, webhooks, CRDs, the Istio
// configuration and the mesh config) is served from them: about a dozen
// list calls without analysis, and only a few more than the analyzers'
// own with it, whatever the size of the cluster. When the user may not
// read every analyzer input, the analysis is skipped (Denied) and the
// rest is read as without it.
func read(ctx context.Context, c *cli.Context, namespace string, progress step, analyze bool) (*cluster, error) {
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	progress("reading the cluster")
	sv, err := cl.Kube.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("cannot reach the API server: %w", err)
	}
	s := &cluster{Version: sv.GitVersion, Services: map[string]bool{}, GatewayCRDs: map[string][2]string{}}
	if s.ShippedCRDs, err = shippedCRDNames(); err != nil {
		return nil, err
	}
	opts := analysis.Options{Namespace: namespace, IstioNamespace: c.Engine.IstioNamespace}
	if analyze {
		rd.Prefetch(ctx, analysis.Requests(opts)...)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		l, err := rd.Metadata(ctx, reads.Request{Resource: mesh.CRDs})
		if err != nil {
			return fmt.Errorf("listing CRDs: %w", err)
		}
		for _, it := range l {
			if strings.HasSuffix(it.GetName(), ".istio.io") {
				s.IstioCRDs = append(s.IstioCRDs, it.GetName())
			}
			if strings.HasSuffix(it.GetName(), ".gateway.networking.k8s.io") {
				a := it.GetAnnotations()
				s.GatewayCRDs[it.GetName()] = [2]string{a[mesh.AnnotationGatewayAPIVersion], a[mesh.AnnotationGatewayAPIChannel]}
			}
		}
		return nil
	})
	g.Go(func() (err error) { s.Planes, err = mesh.Revisions(ctx, rd); return err })
	g.Go(func() (err error) {
		s.Deployments, err = values[appsv1.Deployment](ctx, rd, reads.Request{Resource: mesh.Deployments, Namespace: namespace})
		return err
	})
	g.Go(func() (err error) {
		s.PDBs, err = values[policyv1.PodDisruptionBudget](ctx, rd, reads.Request{Resource: pdbs})
		return err
	})
	g.Go(func() error {
		l, err := rd.Metadata(ctx, reads.Request{Resource: mesh.Services})
		if err != nil {
			return err
		}
		for _, it := range l {
			s.Services[it.GetNamespace()+"/"+it.GetName()] = true
		}
		return nil
	})
	g.Go(func() (err error) {
		s.Mutating, err = values[admissionv1.MutatingWebhookConfiguration](ctx, rd, reads.Request{Resource: mesh.MutatingWebhooks})
		return err
	})
	g.Go(func() (err error) {
		s.Validating, err = values[admissionv1.ValidatingWebhookConfiguration](ctx, rd, reads.Request{Resource: mesh.ValidatingWebhooks})
		return err
	})
	g.Go(func() (err error) {
		s.Namespaces, err = values[corev1.Namespace](ctx, rd, reads.Request{Resource: mesh.Namespaces})
		return err
	})
	g.Go(func() (err error) {
		s.Workloads, err = mesh.Inventory(ctx, rd, namespace)
		return err
	})
	if analyze {
		g.Go(func() error {
			snap, err := analysis.Read(ctx, rd, opts)
			if err == nil {
				s.Analysis = snap
				return nil
			}
			if !errors.As(err, &s.Denied) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		s.MeshRetryOn = resilience.MeshRetryOn(ctx, rd, c.Engine.IstioNamespace)
		return nil
	})
	lists := make([][]*unstructured.Unstructured, len(istioConfig))
	for i, gvr := range istioConfig {
		g.Go(func() error {
			l, err := rd.Unstructured(ctx, reads.Request{Resource: gvr})
			if apierrors.IsNotFound(err) {
				return nil // no Istio CRDs: the CRD check says so
			} else if err != nil {
				return fmt.Errorf("listing %s: %w", gvr.Resource, err)
			}
			lists[i] = l
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, gvr := range istioConfig {
		if err := s.add(gvr, lists[i]); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// values are the objects q selects as values of their Go type (the shared
// objects are read only; the copies are shallow).
func values[T any, P interface {
	*T
	runtime.Object
}](ctx context.Context, rd *reads.Reader, q reads.Request) ([]T, error) {
	objs, err := reads.List[P](ctx, rd, q)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", q, err)
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = *o
	}
	return out, nil
}

// add files the objects of one Istio kind.
func (s *cluster) add(gvr schema.GroupVersionResource, objs []*unstructured.Unstructured) error {
	switch gvr {
	case mesh.AuthorizationPolicies:
		s.AuthZ = objs
	case mesh.VirtualServices:
		s.VSs = objs
	case mesh.DestinationRules:
		s.DRs = objs
	case mesh.PeerAuthentications:
		for _, u := range objs {
			p, err := mesh.ParsePeerAuth(u)
			if err != nil {
				return err
			}
			s.PAs = append(s.PAs, p)
		}
	}
	return nil
}

// injection is the revision or tag the namespace selects, "" when none.
func injection(ns corev1.Namespace) string { return mesh.InjectedFrom(ns.Labels) }

// istiod is the Deployment serving a control plane, nil when none matches.
func (s *cluster) istiod(cp mesh.ControlPlane) *appsv1.Deployment {
	for i, d := range s.Deployments {
		rev := d.Labels[mesh.LabelRev]
		if rev == "" {
			rev = mesh.DefaultRevision
		}
		if d.Labels["app"] == "istiod" && d.Namespace == cp.Namespace && rev == cp.Revision {
			return &s.Deployments[i]
		}
	}
	return nil
}

// imageTag is the tag of a Deployment's first container, "?" when unknown.
func imageTag(d *appsv1.Deployment) string {
	if d != nil {
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
			if i := strings.LastIndex(cs[0].Image, ":"); i >= 0 {
				return cs[0].Image[i+1:]
			}
		}
	}
	return "?"
}

// shippedCRDNames decodes the embedded CRDs once per process (check --wait
// reads the cluster again and again).
var shippedCRDNames = sync.OnceValues(func() ([]string, error) {
	crds, err := mesh.ShippedCRDs()
	var names []string
	for _, c := range crds {
		names = append(names, c.GetName())
	}
	return names, err
})
