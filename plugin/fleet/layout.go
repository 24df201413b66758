package fleet

import (
	"encoding/json"
	"fmt"
	"path"

	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// ClusterPlan is one cluster's planned objects (in apply order) and its
// report (checks, analysis findings, gate results).
type ClusterPlan struct {
	Member
	Objects []*unstructured.Unstructured
	Report  map[string]any
}

// Layout is the kustomize tree for a fleet's plans, as file path → content:
//
//	base/                          what every cluster's plan holds identically
//	clusters/<context>/kustomization.yaml   base + the cluster's own objects
//	                                        + JSON 6902 patches where its plan
//	                                        differs from base
//	clusters/<context>/report.json
//
// `kustomize build clusters/<context>` renders exactly that cluster's plan.
// An object every cluster plans goes to base in the version most clusters
// plan (the first cluster's on a tie); the others patch it. An object only
// some clusters plan is theirs alone.
func Layout(plans []ClusterPlan) (map[string][]byte, error) {
	type version struct {
		obj  *unstructured.Unstructured
		json []byte
	}
	var order []string
	byKey := map[string][]*version{} // per object, one entry per plan (nil: not planned there)
	for i, p := range plans {
		for _, o := range p.Objects {
			k := objectKey(o)
			if _, seen := byKey[k]; !seen {
				order = append(order, k)
				byKey[k] = make([]*version, len(plans))
			}
			if byKey[k][i] != nil {
				return nil, fmt.Errorf("cluster %s plans %s twice", p.Context, k)
			}
			b, err := json.Marshal(o.Object) // map keys sorted: equal objects, equal bytes
			if err != nil {
				return nil, err
			}
			byKey[k][i] = &version{o, b}
		}
	}

	files := map[string][]byte{}
	base := &types.Kustomization{TypeMeta: kustomizationType}
	own := make([]*types.Kustomization, len(plans))
	for i := range plans {
		own[i] = &types.Kustomization{TypeMeta: kustomizationType, Resources: []string{"../../base"}}
	}
	n := 0
	for _, k := range order {
		vs := byKey[k]
		n++
		everywhere := true
		for _, v := range vs {
			everywhere = everywhere && v != nil
		}
		if !everywhere {
			for i, v := range vs {
				if v == nil {
					continue
				}
				name, b, err := objectFile(n, v.obj)
				if err != nil {
					return nil, err
				}
				files[path.Join("clusters", plans[i].Dir, name)] = b
				own[i].Resources = append(own[i].Resources, name)
			}
			continue
		}
		// The version most clusters plan is the base; earliest wins a tie.
		count := map[string]int{}
		best := 0
		for i, v := range vs {
			count[string(v.json)]++
			if count[string(v.json)] > count[string(vs[best].json)] {
				best = i
			}
		}
		name, b, err := objectFile(n, vs[best].obj)
		if err != nil {
			return nil, err
		}
		files[path.Join("base", name)] = b
		base.Resources = append(base.Resources, name)
		for i, v := range vs {
			if string(v.json) == string(vs[best].json) {
				continue
			}
			ops, err := jsonpatch.CreatePatch(vs[best].json, v.json)
			if err != nil {
				return nil, fmt.Errorf("diff of %s for cluster %s: %w", k, plans[i].Context, err)
			}
			// JSON, not YAML: kustomize drops a string's trailing newline
			// from a YAML JSON 6902 patch (the last-applied annotation has one).
			patch, err := json.Marshal(ops)
			if err != nil {
				return nil, err
			}
			o := v.obj
			gvk := o.GroupVersionKind()
			own[i].Patches = append(own[i].Patches, types.Patch{
				Patch:  string(patch),
				Target: &types.Selector{ResId: resid.NewResIdWithNamespace(resid.NewGvk(gvk.Group, gvk.Version, gvk.Kind), o.GetName(), o.GetNamespace())},
			})
		}
	}
	b, err := yaml.Marshal(base)
	if err != nil {
		return nil, err
	}
	files["base/kustomization.yaml"] = b
	for i, p := range plans {
		b, err := yaml.Marshal(own[i])
		if err != nil {
			return nil, err
		}
		files[path.Join("clusters", p.Dir, "kustomization.yaml")] = b
		report := map[string]any{}
		for k, v := range p.Report {
			report[k] = v
		}
		// The keys an Argo CD git files generator turns into parameters.
		report["context"], report["server"], report["dir"], report["wave"] = p.Context, p.Server, p.Dir, p.Wave
		if b, err = json.MarshalIndent(report, "", "  "); err != nil {
			return nil, err
		}
		files[path.Join("clusters", p.Dir, "report.json")] = append(b, '\n')
	}
	return files, nil
}

var kustomizationType = types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind}

func objectKey(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	return fmt.Sprintf("%s/%s %s/%s", gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName())
}

// objectFile names an object's file as a single cluster's --output-dir
// does: numbered in apply order.
func objectFile(n int, o *unstructured.Unstructured) (string, []byte, error) {
	b, err := yaml.Marshal(o.Object)
	return pipeline.ManifestFile(n, o), b, err
}
