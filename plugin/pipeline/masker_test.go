package pipeline

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func secret(data map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s"}}}
	if data != nil {
		u.Object["data"] = data
	}
	return u
}

func TestMaskSecrets(t *testing.T) {
	cases := []struct {
		name              string
		before, after     *unstructured.Unstructured
		wantBefore, wantA map[string]any
	}{
		{"same value", secret(map[string]any{"k": "YQ=="}), secret(map[string]any{"k": "YQ=="}),
			map[string]any{"k": "***"}, map[string]any{"k": "***"}},
		{"changed value", secret(map[string]any{"k": "YQ=="}), secret(map[string]any{"k": "Yg=="}),
			map[string]any{"k": "*** (before)"}, map[string]any{"k": "*** (after)"}},
		{"added key", secret(map[string]any{}), secret(map[string]any{"new": "Yg=="}),
			nil, map[string]any{"new": "*** (after)"}},
		{"removed key", secret(map[string]any{"old": "YQ=="}), secret(nil),
			map[string]any{"old": "*** (before)"}, nil},
		{"created secret", nil, secret(map[string]any{"k": "YQ=="}), nil, map[string]any{"k": "*** (after)"}},
		{"deleted secret", secret(map[string]any{"k": "YQ=="}), nil, map[string]any{"k": "*** (before)"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			maskSecrets(tc.before, tc.after)
			if got := stringMap(tc.before, "data"); tc.before != nil && !reflect.DeepEqual(got, orEmpty(tc.wantBefore)) {
				t.Errorf("before = %v, want %v", got, tc.wantBefore)
			}
			if got := stringMap(tc.after, "data"); tc.after != nil && !reflect.DeepEqual(got, orEmpty(tc.wantA)) {
				t.Errorf("after = %v, want %v", got, tc.wantA)
			}
		})
	}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func TestMaskLeavesOtherKindsAlone(t *testing.T) {
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"k": "v"}}}
	maskAll(cm)
	maskSecrets(cm, cm.DeepCopy())
	if cm.Object["data"].(map[string]any)["k"] != "v" {
		t.Fatal("ConfigMap data was masked")
	}
	s := secret(map[string]any{"k": "YQ=="})
	s.Object["stringData"] = map[string]any{"p": "plain"}
	maskAll(s)
	if s.Object["data"].(map[string]any)["k"] != "***" || s.Object["stringData"].(map[string]any)["p"] != "***" {
		t.Fatalf("maskAll left values: %v", s.Object)
	}
}
