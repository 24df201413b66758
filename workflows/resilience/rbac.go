package resilience

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned: the Service, its pods,
// the VirtualServices and DestinationRules of the namespace, the mesh
// config (for the lint of implicit retries) and Prometheus through the API server.
func (o *Options) Permissions(string) ([]pipeline.Permission, error) {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("networking.istio.io", false, pipeline.Write, "virtualservices", "destinationrules")...)
	p = append(p, pipeline.Grant("", false, pipeline.Read, "services", "pods")...)
	p = append(p, pipeline.Grant("", true, pipeline.Read, "configmaps", "services")...)
	p = append(p, pipeline.Grant("", true, []string{"get", "create"}, "services/proxy")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.VirtualService.Kubernetes(), gvk.DestinationRule.Kubernetes()}
}
