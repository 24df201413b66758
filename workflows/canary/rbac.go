package canary

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned for every canary subcommand:
// the Service and its pods, the routing objects (Istio's, or an HTTPRoute
// and the per-version Services of a Gateway API canary), and Prometheus
// found and reached through the API server for the gate.
func (o *common) Permissions(string) ([]pipeline.Permission, error) {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("", false, pipeline.Read, "pods")...)
	p = append(p, pipeline.Grant("", false, pipeline.Write, "services")...)
	p = append(p, pipeline.Grant("networking.istio.io", false, pipeline.Write, "destinationrules", "virtualservices")...)
	p = append(p, pipeline.Grant("gateway.networking.k8s.io", false, pipeline.Write, "httproutes")...)
	p = append(p, pipeline.Grant("", true, []string{"list"}, "services")...)
	p = append(p, pipeline.Grant("", true, []string{"get", "create"}, "services/proxy")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *common) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.VirtualService.Kubernetes(), gvk.DestinationRule.Kubernetes()}
}
