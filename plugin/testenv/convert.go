package testenv

import "k8s.io/apimachinery/pkg/runtime"

func fromUnstructured(obj map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(obj, into)
}
