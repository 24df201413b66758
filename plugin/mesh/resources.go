package mesh

import (
	"io/fs"

	"istio.io/istio/manifests"
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
