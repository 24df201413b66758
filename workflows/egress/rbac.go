package egress

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned: ServiceEntries, Sidecars
// and (with --via-egress-gateway) the routing objects in the namespace;
// ServiceEntries everywhere (one exported here counts), the root
// namespace's mesh config and egress gateway, and Prometheus through the
// API server. --mesh-wide writes in the root namespace: grant it there.
func (o *Options) Permissions(string) ([]pipeline.Permission, error) {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("networking.istio.io", false, pipeline.Write, "serviceentries", "sidecars", "gateways", "virtualservices", "destinationrules")...)
	p = append(p, pipeline.Grant("networking.istio.io", true, pipeline.Read, "serviceentries", "sidecars")...)
	p = append(p, pipeline.Grant("", true, pipeline.Read, "namespaces", "services", "configmaps")...)
	p = append(p, pipeline.Grant("", true, []string{"get", "create"}, "services/proxy")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.ServiceEntry.Kubernetes(), gvk.Sidecar.Kubernetes()}
}
