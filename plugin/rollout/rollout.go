// Package rollout waits for workloads to finish rolling out, with the same
// completeness rules as `kubectl rollout status`.
package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Progress receives one line per observed state change.
type Progress func(format string, a ...any)

// Wait polls the workload until it has rolled out or ctx ends. kind is
// Deployment, StatefulSet or DaemonSet.
func Wait(ctx context.Context, kube kubernetes.Interface, kind, ns, name string, progress Progress) error {
	last := ""
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		done, msg, err := status(ctx, kube, kind, ns, name)
		if err != nil {
			if ctx.Err() != nil || strings.Contains(err.Error(), "would exceed context deadline") {
				return false, nil // out of time: reported below with the last state
			}
			return false, err
		}
		if msg != last && progress != nil {
			progress("%s/%s -n %s: %s", kind, name, ns, msg)
			last = msg
		}
		return done, nil
	})
	if err != nil && (ctx.Err() != nil || wait.Interrupted(err)) {
		return fmt.Errorf("%s/%s -n %s did not roll out (%s): check its pods with kubectl describe %s %s -n %s", kind, name, ns, last, lower(kind), name, ns)
	}
	return err
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func status(ctx context.Context, kube kubernetes.Interface, kind, ns, name string) (bool, string, error) {
	switch kind {
	case "Deployment":
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return deploymentDone(d)
	case "StatefulSet":
		s, err := kube.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		if s.Status.ObservedGeneration < s.Generation {
			return false, "waiting for the controller to see the new spec", nil
		}
		if s.Status.UpdatedReplicas < want || s.Status.ReadyReplicas < want || s.Status.CurrentRevision != s.Status.UpdateRevision && s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
			return false, fmt.Sprintf("%d of %d updated, %d ready", s.Status.UpdatedReplicas, want, s.Status.ReadyReplicas), nil
		}
		return true, fmt.Sprintf("%d of %d ready", s.Status.ReadyReplicas, want), nil
	case "DaemonSet":
		d, err := kube.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if d.Status.ObservedGeneration < d.Generation {
			return false, "waiting for the controller to see the new spec", nil
		}
		want := d.Status.DesiredNumberScheduled
		if d.Status.UpdatedNumberScheduled < want || d.Status.NumberAvailable < want {
			return false, fmt.Sprintf("%d of %d updated, %d available", d.Status.UpdatedNumberScheduled, want, d.Status.NumberAvailable), nil
		}
		return true, fmt.Sprintf("%d of %d available", d.Status.NumberAvailable, want), nil
	}
	return false, "", fmt.Errorf("cannot wait for a %s to roll out", kind)
}

// deploymentDone applies kubectl rollout status's rules for Deployments.
func deploymentDone(d *appsv1.Deployment) (bool, string, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, "waiting for the controller to see the new spec", nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("deployment %s/%s exceeded its progress deadline: %s", d.Namespace, d.Name, c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, fmt.Sprintf("%d of %d available", st.AvailableReplicas, want), nil
}

// Step is the verify step that waits for one workload's rollout.
func Step(kube kubernetes.Interface, kind, ns, name string, timeout time.Duration) pipeline.VerifyStep {
	return pipeline.VerifyStep{
		Name:    fmt.Sprintf("%s/%s -n %s rolled out", kind, name, ns),
		Timeout: timeout,
		Run: func(ctx context.Context, p pipeline.Progress) error {
			return Wait(ctx, kube, kind, ns, name, Progress(p))
		},
	}
}
