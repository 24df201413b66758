package mtls

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned: the namespace's policies
// and workloads, and cluster-wide reads of what reaches into it
// (DestinationRules anywhere, webhooks, API services) plus Prometheus
// through the API server. --mesh-wide also lists pods and services in
// every namespace: grant the namespaced reads cluster-wide for it.
func (o *Options) Permissions(string) ([]pipeline.Permission, error) {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("security.istio.io", false, pipeline.Write, "peerauthentications")...)
	p = append(p, pipeline.Grant("", false, pipeline.Read, "pods")...)
	p = append(p, pipeline.Grant("apps", false, pipeline.Read, "deployments", "statefulsets", "daemonsets", "replicasets")...)
	p = append(p, pipeline.Grant("batch", false, pipeline.Read, "jobs")...)
	p = append(p, pipeline.Grant("", true, pipeline.Read, "namespaces", "services")...)
	p = append(p, pipeline.Grant("", true, []string{"get", "create"}, "services/proxy")...)
	p = append(p, pipeline.Grant("security.istio.io", true, pipeline.Read, "peerauthentications", "authorizationpolicies")...)
	p = append(p, pipeline.Grant("networking.istio.io", true, pipeline.Read, "destinationrules")...)
	p = append(p, pipeline.Grant("admissionregistration.k8s.io", true, pipeline.Read, "mutatingwebhookconfigurations", "validatingwebhookconfigurations")...)
	p = append(p, pipeline.Grant("apiregistration.k8s.io", true, pipeline.Read, "apiservices")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.PeerAuthentication.Kubernetes()}
}
