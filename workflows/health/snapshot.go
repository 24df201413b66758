// Package health is `kubectl mesh check` and `kubectl mesh status`: the
// mesh's health and posture from one concurrent pass of list calls.
package health

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

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
}

// step reports progress on one line of stderr.
type step func(what string)

// read lists everything concurrently; namespace "" is every namespace.
// About a dozen list calls whatever the size of the cluster.
func read(ctx context.Context, c *cli.Context, namespace string, progress step) (*cluster, error) {
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
		s.MeshRetryOn = resilience.MeshRetryOn(ctx, cl.Kube, c.Engine.IstioNamespace)
		return nil
	})
	for _, l := range []struct {
		gvr  schema.GroupVersionResource
		into *[]*unstructured.Unstructured
	}{{mesh.PeerAuthentications, nil}, {mesh.AuthorizationPolicies, &s.AuthZ}, {mesh.VirtualServices, &s.VSs}, {mesh.DestinationRules, &s.DRs}} {
		g.Go(func() error {
			list, err := cl.Dynamic.Resource(l.gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				return nil // no Istio CRDs: the CRD check says so
			}
			if err != nil {
				return fmt.Errorf("listing %s: %w", l.gvr.Resource, err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				if l.into != nil {
					*l.into = append(*l.into, u)
					continue
				}
				p, err := mesh.ParsePeerAuth(u)
				if err != nil {
					return err
				}
				s.PAs = append(s.PAs, p)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s, nil
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
