package fleet

import (
	"fmt"
	"path"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// WaveLabel marks which wave a generated Argo CD Application or Flux
// Kustomization belongs to.
const WaveLabel = "kubectl-mesh.io/wave"

// GitOps says where the layout lives in Git and how the engine reaches it.
type GitOps struct {
	// Tool is "argocd" or "flux".
	Tool string
	// Repo is the Git URL Argo CD reads (argocd).
	Repo string
	// Revision is the branch, tag or commit Argo CD reads (argocd).
	Revision string
	// Path is the layout's directory inside the repository.
	Path string
	// Source is the Flux GitRepository holding the repository (flux).
	Source string
	// Namespace is where the ApplicationSet or the Kustomizations live.
	Namespace string
}

// Validate checks the flags each tool needs.
func (g GitOps) Validate() error {
	switch g.Tool {
	case "":
		return nil
	case "argocd":
		if g.Repo == "" {
			return fmt.Errorf("--gitops argocd needs --gitops-repo: the Git URL Argo CD reads the output directory from")
		}
	case "flux":
		if g.Source == "" {
			return fmt.Errorf("--gitops flux needs --gitops-source: the Flux GitRepository that holds the output directory")
		}
	default:
		return fmt.Errorf("invalid --gitops %q: use argocd or flux", g.Tool)
	}
	if path.IsAbs(g.Path) || g.Path == "" {
		return fmt.Errorf("--gitops-path must be the output directory's path inside the repository (relative), not %q", g.Path)
	}
	return nil
}

// canaryMoves are the fields `kubectl mesh canary` changes while a canary
// runs: Argo CD must neither report them as drift nor put them back.
var canaryMoves = []any{
	map[string]any{"group": "networking.istio.io", "kind": "VirtualService", "jqPathExpressions": []any{".spec.http[].route[].weight"}},
	map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "jqPathExpressions": []any{".spec.rules[].backendRefs[].weight"}},
}

// ApplicationSet is one Argo CD ApplicationSet over the layout: a git
// files generator reads clusters/*/report.json (its context, dir and wave
// become parameters), one Application per cluster targets the Argo CD
// cluster named like the context, and a RollingSync strategy (Argo CD's
// progressive syncs) syncs wave after wave, each step waiting for the
// previous wave to be healthy.
func ApplicationSet(members []Member, g GitOps) *unstructured.Unstructured {
	var steps []any
	for _, w := range Waves(members) {
		steps = append(steps, map[string]any{"matchExpressions": []any{
			map[string]any{"key": WaveLabel, "operator": "In", "values": []any{strconv.Itoa(w[0].Wave)}},
		}})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "ApplicationSet",
		"metadata":   map[string]any{"name": "kubectl-mesh", "namespace": g.Namespace},
		"spec": map[string]any{
			"goTemplate":        true,
			"goTemplateOptions": []any{"missingkey=error"},
			"generators": []any{map[string]any{"git": map[string]any{
				"repoURL":  g.Repo,
				"revision": g.Revision,
				"files":    []any{map[string]any{"path": path.Join(g.Path, "clusters", "*", "report.json")}},
			}}},
			"strategy": map[string]any{
				"type":        "RollingSync",
				"rollingSync": map[string]any{"steps": steps},
			},
			"template": map[string]any{
				"metadata": map[string]any{
					"name":   "mesh-{{.dir}}",
					"labels": map[string]any{WaveLabel: "{{.wave}}"},
				},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": g.Repo, "targetRevision": g.Revision, "path": "{{.path.path}}"},
					"destination": map[string]any{"name": "{{.context}}"},
					"syncPolicy": map[string]any{
						"syncOptions": []any{"ServerSideApply=true", "RespectIgnoreDifferences=true"},
					},
					"ignoreDifferences": canaryMoves,
				},
			},
		},
	}}
}

// FluxKustomizations is one Flux Kustomization per cluster, run by the
// Flux of a management cluster against each cluster through its
// kubeconfig Secret (<dir>-kubeconfig), each wave depending on every
// Kustomization of the wave before it: Flux starts a wave only when the
// previous one is applied and healthy (wait: true).
func FluxKustomizations(members []Member, g GitOps) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	var previous []any
	for _, wave := range Waves(members) {
		var this []any
		for _, m := range wave {
			name := "mesh-" + m.Dir
			spec := map[string]any{
				"interval":   "10m",
				"timeout":    "5m",
				"path":       "./" + path.Join(g.Path, "clusters", m.Dir),
				"prune":      false,
				"wait":       true,
				"sourceRef":  map[string]any{"kind": "GitRepository", "name": g.Source},
				"kubeConfig": map[string]any{"secretRef": map[string]any{"name": m.Dir + "-kubeconfig"}},
			}
			if len(previous) > 0 {
				spec["dependsOn"] = previous
			}
			out = append(out, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "kustomize.toolkit.fluxcd.io/v1",
				"kind":       "Kustomization",
				"metadata": map[string]any{
					"name": name, "namespace": g.Namespace,
					"labels": map[string]any{WaveLabel: strconv.Itoa(m.Wave)},
				},
				"spec": spec,
			}})
			this = append(this, map[string]any{"name": name})
		}
		previous = this
	}
	return out
}
