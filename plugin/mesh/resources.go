package mesh

import (
	"io/fs"

	"istio.io/istio/manifests"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
)

// The Istio config kinds workflows read and write, at the served version.
var (
	PeerAuthentications   = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	AuthorizationPolicies = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	DestinationRules      = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
	VirtualServices       = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
)

// The Kubernetes kinds several packages read.
var (
	Namespaces         = corev1.SchemeGroupVersion.WithResource("namespaces")
	Pods               = corev1.SchemeGroupVersion.WithResource("pods")
	Services           = corev1.SchemeGroupVersion.WithResource("services")
	Deployments        = appsv1.SchemeGroupVersion.WithResource("deployments")
	MutatingWebhooks   = admissionv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
	ValidatingWebhooks = admissionv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations")
	CRDs               = apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
)

// The embedded Istio release (the pinned istio.io/istio module's charts)
// and the oldest Kubernetes it is installed on (Istio 1.31 supports 1.31
// to 1.36 and is tested back to 1.28).
const (
	IstioRelease  = "1.31.0"
	MinKubernetes = "1.28.0"
)

// Marks kubectl mesh leaves on objects, read by other commands (status).
const (
	// LabelTeam is the team a namespace was onboarded for.
	LabelTeam = "kubectl-mesh.io/team"
	// AnnotationCanary holds a canary's state on its VirtualService.
	AnnotationCanary = "canary.kubectl-mesh.io/state"
)

// ShippedCRDs are the CRDs of the Istio release embedded in this binary
// (the base chart's crd-all).
func ShippedCRDs() ([]*unstructured.Unstructured, error) {
	raw, err := fs.ReadFile(manifests.BuiltinOrDir(""), "charts/base/files/crd-all.gen.yaml")
	if err != nil {
		return nil, err
	}
	return manifest.Decode(raw)
}
