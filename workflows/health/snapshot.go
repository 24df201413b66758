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
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

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
var istioConfig = []struct {
	gvr schema.GroupVersionResource
	gvk config.GroupVersionKind
}{
	{mesh.PeerAuthentications, gvk.PeerAuthentication},
	{mesh.AuthorizationPolicies, gvk.AuthorizationPolicy},
	{mesh.VirtualServices, gvk.VirtualService},
	{mesh.DestinationRules, gvk.DestinationRule},
}

// read lists everything concurrently; namespace "" is every namespace.
// About a dozen list calls whatever the size of the cluster. With analyze,
// Istio's analyzers' snapshot is taken in the same pass, and the Istio
// configuration and mesh config come from its LISTs instead of lists of
// their own; when the user may not read every analyzer input, the
// analysis is skipped (Denied) and those kinds are listed here as before.
func read(ctx context.Context, c *cli.Context, namespace string, progress step, analyze bool) (*cluster, error) {
	cl, err := c.Clients()
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
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		l, err := cl.Metadata.Resource(crds).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing CRDs: %w", err)
		}
		for _, it := range l.Items {
			if strings.HasSuffix(it.Name, ".istio.io") {
				s.IstioCRDs = append(s.IstioCRDs, it.Name)
			}
			if strings.HasSuffix(it.Name, ".gateway.networking.k8s.io") {
				s.GatewayCRDs[it.Name] = [2]string{it.Annotations[mesh.AnnotationGatewayAPIVersion], it.Annotations[mesh.AnnotationGatewayAPIChannel]}
			}
		}
		return nil
	})
	g.Go(func() (err error) { s.Planes, err = mesh.Revisions(ctx, cl.Kube); return err })
	g.Go(func() error {
		l, err := cl.Kube.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			s.Deployments = l.Items
		}
		return err
	})
	g.Go(func() error {
		l, err := cl.Kube.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil {
			s.PDBs = l.Items
		}
		return err
	})
	g.Go(func() error {
		l, err := cl.Metadata.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, it := range l.Items {
			s.Services[it.Namespace+"/"+it.Name] = true
		}
		return nil
	})
	g.Go(func() error {
		m, err := cl.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		v, err := cl.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		s.Mutating, s.Validating = m.Items, v.Items
		return nil
	})
	g.Go(func() error {
		l, err := cl.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err == nil {
			s.Namespaces = l.Items
		}
		return err
	})
	g.Go(func() (err error) {
		s.Workloads, err = mesh.Inventory(ctx, cl.Kube, cl.Metadata, namespace)
		return err
	})
	g.Go(func() error {
		if analyze {
			var keep []config.GroupVersionKind
			for _, k := range istioConfig {
				keep = append(keep, k.gvk)
			}
			snap, err := analysis.Read(ctx, cl.Kube, analysis.Options{Namespace: namespace, IstioNamespace: c.Engine.IstioNamespace, Keep: keep})
			if err == nil {
				s.Analysis = snap
				return s.fromSnapshot(snap)
			}
			if !errors.As(err, &s.Denied) {
				return err
			}
		}
		s.MeshRetryOn = resilience.MeshRetryOn(ctx, cl.Kube, c.Engine.IstioNamespace)
		return s.listIstioConfig(ctx, cl.Dynamic)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s, nil
}

// fromSnapshot takes the Istio configuration the analyzers' snapshot kept.
func (s *cluster) fromSnapshot(snap *analysis.Snapshot) error {
	s.MeshRetryOn = resilience.MeshRetryOnYAML(snap.MeshConfig())
	for _, k := range istioConfig {
		objs, err := snap.Objects(k.gvk, "")
		if err != nil {
			return err
		}
		if err := s.add(k.gvr, objs); err != nil {
			return err
		}
	}
	return nil
}

// listIstioConfig lists the Istio configuration, one kind per request.
func (s *cluster) listIstioConfig(ctx context.Context, dyn dynamic.Interface) error {
	lists := make([][]*unstructured.Unstructured, len(istioConfig))
	g, ctx := errgroup.WithContext(ctx)
	for i, k := range istioConfig {
		g.Go(func() error {
			list, err := dyn.Resource(k.gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				return nil // no Istio CRDs: the CRD check says so
			}
			if err != nil {
				return fmt.Errorf("listing %s: %w", k.gvr.Resource, err)
			}
			for j := range list.Items {
				lists[i] = append(lists[i], &list.Items[j])
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, k := range istioConfig {
		if err := s.add(k.gvr, lists[i]); err != nil {
			return err
		}
	}
	return nil
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
