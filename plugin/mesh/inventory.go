package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// ProxyUID is the UID Envoy runs as; an app container with it escapes
// traffic capture (IST0144).
const ProxyUID = 1337

// Pod is what injection cares about in one pod.
type Pod struct {
	Name        string
	HasSidecar  bool
	Revision    string // proxy revision, for injected pods
	OptOut      bool   // sidecar.istio.io/inject: "false"
	HostNetwork bool   // never injected
	UID1337     bool   // an app container runs as the proxy's UID
	Object      *corev1.Pod
}

// Workload groups pods under their top-level owner.
type Workload struct {
	Namespace  string
	Kind, Name string
	Pods       []Pod
}

// Restartable reports whether a rollout restart re-creates the pods
// (Deployment, StatefulSet, DaemonSet); others must be recreated by hand.
func (w *Workload) Restartable() bool {
	return w.Kind == "Deployment" || w.Kind == "StatefulSet" || w.Kind == "DaemonSet"
}

// Ref is "Kind/name".
func (w *Workload) Ref() string { return w.Kind + "/" + w.Name }

// Injected counts pods with a sidecar.
func (w *Workload) Injected() int {
	n := 0
	for _, p := range w.Pods {
		if p.HasSidecar {
			n++
		}
	}
	return n
}

// NeedsRestart reports pods that should get a (new) sidecar from target:
// not injected, or injected by another revision; never opted-out or
// hostNetwork pods.
func (w *Workload) NeedsRestart(target string) bool {
	for _, p := range w.Pods {
		if p.OptOut || p.HostNetwork {
			continue
		}
		if !p.HasSidecar || target != "" && p.Revision != target {
			return true
		}
	}
	return false
}

// ClassifyPod reads injection facts from a pod.
func ClassifyPod(p *corev1.Pod) Pod {
	out := Pod{Name: p.Name, HostNetwork: p.Spec.HostNetwork, Object: p}
	_, out.HasSidecar = p.Annotations[AnnotationStatus]
	for _, c := range append(append([]corev1.Container{}, p.Spec.Containers...), p.Spec.InitContainers...) {
		if c.Name == ProxyContainerName {
			out.HasSidecar = true
			continue
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == ProxyUID {
			out.UID1337 = true
		}
	}
	if p.Spec.SecurityContext != nil && p.Spec.SecurityContext.RunAsUser != nil && *p.Spec.SecurityContext.RunAsUser == ProxyUID {
		out.UID1337 = true
	}
	out.OptOut = p.Annotations[AnnotationInject] == "false" || p.Labels[LabelInjectPod] == "false"
	if out.HasSidecar {
		out.Revision = InjectedRevision(p)
	}
	return out
}

// InjectedRevision is the revision whose injector added the sidecar: Istio's
// injector records it in the status annotation (and does not label the pod);
// a pod's istio.io/rev label is the fallback, "default" the last resort.
func InjectedRevision(p *corev1.Pod) string {
	var status struct {
		Revision string `json:"revision"`
	}
	if json.Unmarshal([]byte(p.Annotations[AnnotationStatus]), &status) == nil && status.Revision != "" {
		return status.Revision
	}
	if r := p.Labels[LabelRev]; r != "" {
		return r
	}
	return DefaultRevision
}

var replicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
var jobs = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// Inventory lists the namespace's pods (one list; the pod spec is needed
// for hostNetwork and UIDs) and resolves each to its top-level workload with
// metadata-only lists of ReplicaSets and Jobs. ns "" means every
// namespace.
func Inventory(ctx context.Context, r *reads.Reader, ns string) ([]Workload, error) {
	owner := map[string]metav1.OwnerReference{} // "Kind/name" of RS or Job → its owner
	for _, gvr := range []schema.GroupVersionResource{replicaSets, jobs} {
		list, err := r.Metadata(ctx, reads.Request{Resource: gvr, Namespace: ns})
		if err != nil {
			return nil, err
		}
		kind := "ReplicaSet"
		if gvr.Resource == "jobs" {
			kind = "Job"
		}
		for _, it := range list {
			if ref := metav1.GetControllerOfNoCopy(it); ref != nil {
				owner[it.GetNamespace()+"/"+kind+"/"+it.GetName()] = *ref
			}
		}
	}
	byRef := map[string]*Workload{}
	var order []string
	pods, err := reads.List[*corev1.Pod](ctx, r, reads.Request{Resource: Pods, Namespace: ns})
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		kind, name := "Pod", p.Name
		if ref := metav1.GetControllerOf(p); ref != nil {
			kind, name = ref.Kind, ref.Name
			if up, ok := owner[p.Namespace+"/"+kind+"/"+name]; ok {
				kind, name = up.Kind, up.Name
			}
		}
		key := p.Namespace + "/" + kind + "/" + name
		if byRef[key] == nil {
			byRef[key] = &Workload{Namespace: p.Namespace, Kind: kind, Name: name}
			order = append(order, key)
		}
		byRef[key].Pods = append(byRef[key].Pods, ClassifyPod(p))
	}
	sort.Strings(order)
	out := make([]Workload, len(order))
	for i, k := range order {
		out[i] = *byRef[k]
	}
	return out, nil
}

// Coverage is "injected/total" over workloads.
func Coverage(ws []Workload) string {
	in, total := 0, 0
	for _, w := range ws {
		in += w.Injected()
		total += len(w.Pods)
	}
	return fmt.Sprintf("%d/%d", in, total)
}
