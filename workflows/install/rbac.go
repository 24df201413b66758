package install

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// manifestPermissions grants what writing and deleting objs takes, by kind,
// cluster-wide (an install spans its namespace and cluster-scoped objects).
// Creating Roles and ClusterRoles that grant more than the user holds needs
// escalate, and binding them needs bind.
func manifestPermissions(objs []*unstructured.Unstructured) []pipeline.Permission {
	var out []pipeline.Permission
	seen := map[string]bool{}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		plural, _ := meta.UnsafeGuessKindToResource(gvk)
		if seen[plural.String()] {
			continue
		}
		seen[plural.String()] = true
		verbs := slices.Clone(pipeline.Write)
		if gvk.Group == "rbac.authorization.k8s.io" && (gvk.Kind == "Role" || gvk.Kind == "ClusterRole") {
			verbs = append(verbs, "escalate", "bind")
		}
		out = append(out, pipeline.Permission{Group: gvk.Group, Resource: plural.Resource, Verbs: verbs, ClusterWide: true})
	}
	// Prechecks and verification: revisions, webhooks, leftover CRDs, rollouts.
	out = append(out, pipeline.Grant("apps", true, []string{"get", "list", "watch"}, "deployments", "daemonsets", "replicasets")...)
	out = append(out, pipeline.Grant("", true, []string{"get", "list"}, "namespaces", "pods")...)
	out = append(out, pipeline.Grant("admissionregistration.k8s.io", true, []string{"get", "list"}, "mutatingwebhookconfigurations")...)
	out = append(out, pipeline.Grant("apiextensions.k8s.io", true, []string{"get", "list", "watch"}, "customresourcedefinitions")...)
	return out
}

// Permissions implements pipeline.Permissioned for the default install
// (production profile) into namespace ns: every kind it renders, and the
// namespace itself (by name, except create).
func (o *Options) Permissions(ns string) ([]pipeline.Permission, error) {
	objs, err := o.Render()
	if err != nil {
		return nil, err
	}
	return append(manifestPermissions(objs),
		pipeline.Permission{Resource: "namespaces", Verbs: []string{"create"}, ClusterWide: true},
		pipeline.Permission{Resource: "namespaces", Verbs: []string{"update", "patch", "delete"}, ClusterWide: true, ResourceNames: []string{ns}},
	), nil
}

// Permissions implements pipeline.Permissioned: what the install created,
// and (for --purge) reads of every Istio config kind.
func (u *Uninstall) Permissions(ns string) ([]pipeline.Permission, error) {
	p, err := New().Permissions(ns)
	if err != nil {
		return nil, err
	}
	for _, g := range []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"} {
		p = append(p, pipeline.Permission{Group: g, Resource: "*", Verbs: []string{"list"}, ClusterWide: true})
	}
	return p, nil
}
