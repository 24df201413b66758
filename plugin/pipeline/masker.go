package pipeline

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// maskSecrets hides Secret values the way kubectl diff does: a key whose
// value is unchanged shows "***", a changed one "*** (before)" and
// "*** (after)", so the diff still tells which keys change. Either side may
// be nil (created or deleted object). The inputs are modified in place.
func maskSecrets(before, after *unstructured.Unstructured) {
	if !isSecret(before) && !isSecret(after) {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		b := stringMap(before, field)
		a := stringMap(after, field)
		for k, bv := range b {
			if av, ok := a[k]; ok && av == bv {
				b[k], a[k] = "***", "***"
			} else {
				b[k] = "*** (before)"
			}
		}
		for k := range a {
			if a[k] != "***" {
				a[k] = "*** (after)"
			}
		}
		setMap(before, field, b)
		setMap(after, field, a)
	}
}

// maskAll hides every Secret value of one object (for -o output and client dry-run).
func maskAll(u *unstructured.Unstructured) {
	if !isSecret(u) {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		m := stringMap(u, field)
		for k := range m {
			m[k] = "***"
		}
		setMap(u, field, m)
	}
}

func isSecret(u *unstructured.Unstructured) bool {
	return u != nil && u.GetKind() == "Secret" && u.GroupVersionKind().Group == ""
}

func stringMap(u *unstructured.Unstructured, field string) map[string]any {
	if u == nil {
		return map[string]any{}
	}
	m, _, _ := unstructured.NestedMap(u.Object, field)
	if m == nil {
		return map[string]any{}
	}
	return m
}

func setMap(u *unstructured.Unstructured, field string, m map[string]any) {
	if u == nil || len(m) == 0 {
		return
	}
	u.Object[field] = m
}
