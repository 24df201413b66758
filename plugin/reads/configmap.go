package reads

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// ConfigMap is the ConfigMap name in namespace, nil when there is none. It
// is read as one LIST of the namespace's ConfigMaps: the Istio namespace's
// (where the mesh config lives) are read by Istio's analyzers too.
func ConfigMap(ctx context.Context, r *Reader, namespace, name string) (*corev1.ConfigMap, error) {
	cms, err := List[*corev1.ConfigMap](ctx, r, Request{Resource: corev1.SchemeGroupVersion.WithResource("configmaps"), Namespace: namespace})
	if err != nil {
		return nil, err
	}
	for _, cm := range cms {
		if cm.Name == name {
			return cm, nil
		}
	}
	return nil, nil
}
