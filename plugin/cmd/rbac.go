package cmd

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// journalNeeds is what the change-set journal needs in its namespace.
var journalNeeds = pipeline.Permission{Resource: "secrets", Verbs: []string{"get", "list", "create", "update"}}

// analysisNeeds are the cluster-wide reads of Istio's analyzers (without
// them plans carry the ANALYSIS-SKIPPED finding instead): one LIST per kind
// for the snapshot they read, no watches.
func analysisNeeds() []pipeline.Permission {
	var out []pipeline.Permission
	for _, gvr := range analysis.Inputs() {
		out = append(out, pipeline.Permission{Group: gvr.Group, Resource: gvr.Resource, Verbs: []string{"list"}, ClusterWide: true})
	}
	return out
}

// newRBAC is `kubectl mesh rbac WORKFLOW`: the least-privilege roles a
// workflow needs, as manifests to review and apply.
func newRBAC(c *cli.Context, commands []pipeline.Command) *cobra.Command {
	var user, group, sa string
	var withoutAnalysis bool
	byName := map[string]pipeline.Permissioned{}
	var names []string
	var collect func(prefix string, cmds []pipeline.Command)
	collect = func(prefix string, cmds []pipeline.Command) {
		for _, w := range cmds {
			name := prefix + strings.Fields(w.Command().Use)[0]
			if p, ok := w.(pipeline.Permissioned); ok {
				byName[name] = p
				names = append(names, name)
			}
			if g, ok := w.(pipeline.Group); ok {
				collect(name+" ", g.Subcommands())
			}
		}
	}
	collect("", commands)
	sort.Strings(names)
	cmd := &cobra.Command{
		Use:   "rbac WORKFLOW [SUBCOMMAND]",
		Short: "Print the least-privilege Role and ClusterRole a workflow needs (and bindings with --user/--group/--serviceaccount)",
		Long: `Prints, as YAML to review and apply, what a user needs to run a workflow on the
namespace given with -n: a Role there, a ClusterRole for cluster-wide reads
(including what Istio's analyzers read, Secrets among them, unless
--without-analysis), and a Role on the change-set journal's Secrets, whose
namespace must exist (kubectl create namespace kubectl-mesh).

Workflows: ` + strings.Join(names, ", ") + `.
install and uninstall are computed from the default (production) render:
they create CRDs, webhooks and ClusterRoles, so the grants are broad and
include RBAC escalate/bind. apply needs whatever its files contain.`,
		Example: `  kubectl mesh rbac canary -n shop --user alice | kubectl apply -f -
  kubectl mesh rbac migrate-mtls -n shop --group platform`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := strings.Join(args, " ")
			p, ok := byName[name]
			if !ok {
				return exitcode.Usagef("no workflow %q with declared permissions: use one of %s", name, strings.Join(names, ", "))
			}
			ns, _, err := c.Namespace()
			if err != nil {
				return err
			}
			subject, err := rbacSubject(user, group, sa)
			if err != nil {
				return err
			}
			perms, err := p.Permissions(ns)
			if err != nil {
				return err
			}
			if !withoutAnalysis {
				perms = append(perms, analysisNeeds()...)
			}
			objs := roles(strings.ReplaceAll(name, " ", "-"), ns, c.Engine.JournalNamespace, perms, subject)
			for _, o := range objs {
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.Streams.Out, "---\n%s", b)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "Bind the roles to this user")
	cmd.Flags().StringVar(&group, "group", "", "Bind the roles to this group")
	cmd.Flags().StringVar(&sa, "serviceaccount", "", "Bind the roles to this service account (NAMESPACE/NAME)")
	cmd.Flags().BoolVar(&withoutAnalysis, "without-analysis", false, "Leave out the cluster-wide reads Istio's analyzers need (they include Secrets); plans then carry the ANALYSIS-SKIPPED warning")
	return cmd
}

func rbacSubject(user, group, sa string) (map[string]any, error) {
	set := 0
	for _, s := range []string{user, group, sa} {
		if s != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, exitcode.Usagef("give one of --user, --group or --serviceaccount")
	case user != "":
		return map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}, nil
	case group != "":
		return map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}, nil
	case sa != "":
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return nil, exitcode.Usagef("invalid --serviceaccount %q: use NAMESPACE/NAME", sa)
		}
		return map[string]any{"kind": "ServiceAccount", "namespace": ns, "name": name}, nil
	}
	return nil, nil
}

// roles turns a workflow's permissions into a ClusterRole (cluster-wide
// grants), a Role in ns, a Role on the journal's Secrets, and bindings for
// subject.
func roles(name, ns, journalNS string, perms []pipeline.Permission, subject map[string]any) []*unstructured.Unstructured {
	roleName := "kubectl-mesh-" + name
	var cluster, local []pipeline.Permission
	for _, p := range perms {
		if p.ClusterWide {
			cluster = append(cluster, p)
		} else {
			local = append(local, p)
		}
	}
	mk := func(kind, namespace, n string, rules []any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"rules": rules}}
		u.SetAPIVersion("rbac.authorization.k8s.io/v1")
		u.SetKind(kind)
		u.SetName(n)
		if namespace != "" {
			u.SetNamespace(namespace)
		}
		u.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "kubectl-mesh"})
		return u
	}
	bind := func(kind, namespace, n, roleKind string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": roleKind, "name": n},
			"subjects": []any{subject},
		}}
		u.SetAPIVersion("rbac.authorization.k8s.io/v1")
		u.SetKind(kind)
		u.SetName(n)
		if namespace != "" {
			u.SetNamespace(namespace)
		}
		return u
	}
	out := []*unstructured.Unstructured{mk("ClusterRole", "", roleName, rules(cluster))}
	if len(local) > 0 {
		out = append(out, mk("Role", ns, roleName, rules(local)))
	}
	out = append(out, mk("Role", journalNS, "kubectl-mesh-journal", rules([]pipeline.Permission{journalNeeds})))
	if subject != nil {
		out = append(out, bind("ClusterRoleBinding", "", roleName, "ClusterRole"))
		if len(local) > 0 {
			out = append(out, bind("RoleBinding", ns, roleName, "Role"))
		}
		jb := bind("RoleBinding", journalNS, "kubectl-mesh-journal", "Role")
		jb.SetName("kubectl-mesh-journal-" + subject["name"].(string))
		out = append(out, jb)
	}
	return out
}

// rules merges permissions into PolicyRules: one per API group and verb
// set, resources sorted.
func rules(perms []pipeline.Permission) []any {
	type key struct{ group, verbs, names string }
	merged := map[key][]string{}
	var order []key
	for _, p := range perms {
		verbs := slices.Clone(p.Verbs)
		slices.Sort(verbs)
		k := key{p.Group, strings.Join(verbs, ","), strings.Join(p.ResourceNames, ",")}
		if _, ok := merged[k]; !ok {
			order = append(order, k)
		}
		if !slices.Contains(merged[k], p.Resource) {
			merged[k] = append(merged[k], p.Resource)
		}
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].group != order[j].group {
			return order[i].group < order[j].group
		}
		return order[i].verbs+order[i].names < order[j].verbs+order[j].names
	})
	var out []any
	for _, k := range order {
		res := merged[k]
		slices.Sort(res)
		r := map[string]any{"apiGroups": []any{k.group}, "resources": toAny(res), "verbs": toAny(strings.Split(k.verbs, ","))}
		if k.names != "" {
			r["resourceNames"] = toAny(strings.Split(k.names, ","))
		}
		out = append(out, r)
	}
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
