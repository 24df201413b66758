package inject

import (
	"istio.io/istio/pkg/config/schema/gvk"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Permissions implements pipeline.Permissioned: edit this one namespace's
// labels, read its pods and controllers, restart workloads, and find the
// control planes (istiod Deployments and tag webhooks) cluster-wide.
func (o *Options) Permissions(ns string) ([]pipeline.Permission, error) {
	p := []pipeline.Permission{
		{Resource: "namespaces", Verbs: []string{"list"}, ClusterWide: true},
		{Resource: "namespaces", Verbs: []string{"get", "update", "patch"}, ClusterWide: true, ResourceNames: []string{ns}},
	}
	p = append(p, pipeline.Grant("", false, pipeline.Read, "pods")...)
	p = append(p, pipeline.Grant("apps", false, []string{"get", "list", "watch", "patch"}, "deployments", "statefulsets", "daemonsets")...)
	p = append(p, pipeline.Grant("apps", false, pipeline.Read, "replicasets")...)
	p = append(p, pipeline.Grant("batch", false, pipeline.Read, "jobs")...)
	p = append(p, pipeline.Grant("apps", true, []string{"list"}, "deployments")...)
	p = append(p, pipeline.Grant("admissionregistration.k8s.io", true, []string{"list"}, "mutatingwebhookconfigurations")...)
	return p, nil
}

// Writes implements pipeline.KindWriter: what its plans write, so that the
// engine reads what their analysis needs before the planner reads.
func (o *Options) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.Namespace.Kubernetes()}
}
