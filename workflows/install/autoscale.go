package install

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
)

// The replica count of an autoscaled Deployment belongs to its
// HorizontalPodAutoscaler. A static count in the applied object would, on
// every re-run of the install, either scale the control plane back down in
// the middle of the load that scaled it up or (once the autoscaler owns the
// field) conflict. So the plan sets spec.replicas of every Deployment a
// rendered HPA targets to what runs now: the same value is no change and no
// conflict, and the autoscaler stays in charge. A first install starts at
// the HPA's floor (the render's count is its minReplicas). Not dropping the
// field on a re-apply is deliberate: a server-side apply that stops setting
// a field it owns removes it, which resets the count to 1.

// autoscaled returns "namespace/name" of every Deployment a rendered HPA scales.
func autoscaled(objs []*unstructured.Unstructured) map[string]bool {
	out := map[string]bool{}
	for _, u := range objs {
		if u.GetKind() != "HorizontalPodAutoscaler" {
			continue
		}
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "scaleTargetRef", "kind")
		name, _, _ := unstructured.NestedString(u.Object, "spec", "scaleTargetRef", "name")
		if kind == "Deployment" && name != "" {
			out[u.GetNamespace()+"/"+name] = true
		}
	}
	return out
}

// liveReplicas reads the replica counts of the Deployments in ns (one list).
func liveReplicas(ctx context.Context, kube kubernetes.Interface, ns string) (map[string]int64, error) {
	list, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, d := range list.Items {
		if d.Spec.Replicas != nil {
			out[d.Namespace+"/"+d.Name] = int64(*d.Spec.Replicas)
		}
	}
	return out, nil
}

// leaveReplicasToHPA applies the rule above to the rendered objects; for an
// export (GitOps: Argo CD or Flux apply it) the field is left out, so the
// GitOps tool never fights the autoscaler either.
func leaveReplicasToHPA(objs []*unstructured.Unstructured, live map[string]int64, export bool) {
	targets := autoscaled(objs)
	for _, u := range objs {
		key := u.GetNamespace() + "/" + u.GetName()
		if u.GetKind() != "Deployment" || !targets[key] {
			continue
		}
		if export {
			unstructured.RemoveNestedField(u.Object, "spec", "replicas")
			continue
		}
		if n, ok := live[key]; ok {
			_ = unstructured.SetNestedField(u.Object, n, "spec", "replicas")
		}
	}
}
