package install

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// flatten turns an object into leaf path → value. ConfigMap data that is
// itself YAML or JSON (the mesh config, the injector's values) is
// flattened too, so a change inside it has its own path.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			flatten(prefix+"."+k, e, out)
		}
	case []any:
		for i, e := range x {
			key := fmt.Sprint(i)
			if m, ok := e.(map[string]any); ok && m["name"] != nil {
				key = fmt.Sprint(m["name"]) // containers, env, ports by name
			}
			flatten(prefix+"["+key+"]", e, out)
		}
	case string:
		if strings.HasPrefix(prefix, ".data.") && strings.ContainsAny(x, ":{") {
			var doc any
			if yaml.Unmarshal([]byte(x), &doc) == nil {
				if _, isMap := doc.(map[string]any); isMap {
					flatten(prefix, doc, out)
					return
				}
			}
		}
		out[prefix] = x
	default:
		out[prefix] = x
	}
}

// key names an object across renders: the revision suffix of istiod's
// objects does not matter here.
func key(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

func renderFlat(t *testing.T, profile string) map[string]map[string]any {
	t.Helper()
	o := New()
	o.Profile = profile
	objs, err := o.Render()
	if err != nil {
		t.Fatal(err)
	}
	leaveReplicasToHPA(objs, nil, true) // what any install of it would do
	out := map[string]map[string]any{}
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		m := map[string]any{}
		c := u.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations", "kubectl-mesh.io/component")
		flatten("", c.Object, m)
		out[key(u)] = m
	}
	return out
}

// TestExplainCoversEveryChange: every field the production profile changes
// against Istio's default is covered by a reason --explain prints.
func TestExplainCoversEveryChange(t *testing.T) {
	def, prod := renderFlat(t, "default"), renderFlat(t, ProfileProduction)
	var changed []string
	for obj, fields := range prod {
		base, existed := def[obj]
		if !existed {
			changed = append(changed, obj+":")
			continue
		}
		for path, v := range fields {
			if b, ok := base[path]; !ok || !reflect.DeepEqual(b, v) {
				changed = append(changed, obj+":"+path)
			}
		}
		for path := range base {
			if _, ok := fields[path]; !ok {
				changed = append(changed, obj+":"+path)
			}
		}
	}
	slices.Sort(changed)
	var uncovered []string
	used := map[string]bool{}
	for _, c := range changed {
		hit := false
		for _, r := range ProductionReasons {
			for _, p := range r.Covers {
				if strings.Contains(c, p) {
					hit, used[p] = true, true
				}
			}
		}
		if !hit {
			uncovered = append(uncovered, c)
		}
	}
	if len(uncovered) > 0 {
		b, _ := json.MarshalIndent(uncovered, "", "  ")
		t.Fatalf("%d changed field(s) have no reason in ProductionReasons (profile.go):\n%s", len(uncovered), b)
	}
	for _, r := range ProductionReasons {
		for _, p := range r.Covers {
			if !used[p] {
				t.Errorf("reason %q covers %q, which the production profile does not change", r.Setting, p)
			}
		}
	}
}
