package onboard

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned. The namespace may not exist
// yet, so the bundle's kinds are granted cluster-wide; the namespace itself
// only by name (create cannot be narrowed by name). Creating the team's
// Role needs the networking grants it hands out (RBAC escalation checks).
func (o *Options) Permissions(ns string) ([]pipeline.Permission, error) {
	p := []pipeline.Permission{
		{Resource: "namespaces", Verbs: []string{"create", "list"}, ClusterWide: true},
		{Resource: "namespaces", Verbs: []string{"get", "update", "patch", "delete"}, ClusterWide: true, ResourceNames: []string{ns}},
	}
	p = append(p, pipeline.Grant("security.istio.io", true, pipeline.Write, "peerauthentications", "authorizationpolicies", "requestauthentications")...)
	p = append(p, pipeline.Grant("networking.istio.io", true, pipeline.Write, "sidecars", "gateways", "virtualservices", "destinationrules", "serviceentries")...)
	p = append(p, pipeline.Grant("networking.istio.io", true, []string{"watch"}, "sidecars", "gateways", "virtualservices", "destinationrules", "serviceentries")...)
	p = append(p, pipeline.Grant("rbac.authorization.k8s.io", true, pipeline.Write, "roles", "rolebindings")...)
	p = append(p, pipeline.Grant("", true, pipeline.Read, "pods", "services")...)
	p = append(p, pipeline.Grant("apps", true, pipeline.Read, "deployments", "replicasets")...)
	p = append(p, pipeline.Grant("batch", true, pipeline.Read, "jobs")...)
	p = append(p, pipeline.Grant("admissionregistration.k8s.io", true, pipeline.Read, "mutatingwebhookconfigurations", "validatingwebhookconfigurations")...)
	p = append(p, pipeline.Grant("apiregistration.k8s.io", true, pipeline.Read, "apiservices")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.Namespace.Kubernetes(), gvk.PeerAuthentication.Kubernetes(), gvk.AuthorizationPolicy.Kubernetes(), gvk.Sidecar.Kubernetes()}
}
