package health

import "github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"

// permissions are what check and status list, cluster-wide.
func permissions() []pipeline.Permission {
	var p []pipeline.Permission
	p = append(p, pipeline.Grant("", true, []string{"list"}, "namespaces", "pods", "services")...)
	p = append(p, pipeline.Grant("apps", true, []string{"list"}, "deployments", "replicasets")...)
	p = append(p, pipeline.Grant("batch", true, []string{"list"}, "jobs")...)
	p = append(p, pipeline.Grant("policy", true, []string{"list"}, "poddisruptionbudgets")...)
	p = append(p, pipeline.Grant("apiextensions.k8s.io", true, []string{"list"}, "customresourcedefinitions")...)
	p = append(p, pipeline.Grant("admissionregistration.k8s.io", true, []string{"list"}, "mutatingwebhookconfigurations", "validatingwebhookconfigurations")...)
	p = append(p, pipeline.Grant("security.istio.io", true, []string{"list"}, "peerauthentications", "authorizationpolicies")...)
	p = append(p, pipeline.Grant("networking.istio.io", true, []string{"list"}, "virtualservices", "destinationrules")...)
	return p
}

// Permissions implements pipeline.Permissioned.
func (o *Check) Permissions(string) ([]pipeline.Permission, error) { return permissions(), nil }

// Permissions implements pipeline.Permissioned.
func (o *Status) Permissions(string) ([]pipeline.Permission, error) { return permissions(), nil }
