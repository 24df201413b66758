package authz

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned: the namespace's
// AuthorizationPolicies and workloads, PeerAuthentications everywhere (the
// mTLS chain reaches the root namespace), service accounts everywhere (for
// stale principals) and Prometheus through the API server.
func (o *Options) Permissions(string) ([]pipeline.Permission, error) {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("security.istio.io", false, pipeline.Write, "authorizationpolicies")...)
	p = append(p, pipeline.Grant("", false, pipeline.Read, "pods")...)
	p = append(p, pipeline.Grant("apps", false, pipeline.Read, "deployments", "statefulsets", "daemonsets", "replicasets")...)
	p = append(p, pipeline.Grant("batch", false, pipeline.Read, "jobs")...)
	p = append(p, pipeline.Grant("", true, pipeline.Read, "namespaces", "services", "serviceaccounts")...)
	p = append(p, pipeline.Grant("", true, []string{"get", "create"}, "services/proxy")...)
	p = append(p, pipeline.Grant("security.istio.io", true, pipeline.Read, "peerauthentications", "authorizationpolicies")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.AuthorizationPolicy.Kubernetes()}
}
