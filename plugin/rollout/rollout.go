// Package rollout waits for workloads to finish rolling out, with the same
// completeness rules as `kubectl rollout status`.
package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Progress receives one line per observed state change.
type Progress func(format string, a ...any)

// failFastAfter is how long a workload's pods may fail to be created (a
// webhook that refuses or cannot be reached, a quota, Pod Security
// admission) before the wait gives up: the controller retries, but such
// causes rarely clear by themselves, and the user should not wait out the
// whole timeout to learn of them.
var failFastAfter = 15 * time.Second

// podCheckEvery spaces out the pod list that finds why pods are not ready.
const podCheckEvery = 2 * time.Second

// Wait polls the workload until it has rolled out or ctx ends. kind is
// Deployment, StatefulSet or DaemonSet. While it waits it reports why pods
// are not being created or not becoming ready.
func Wait(ctx context.Context, kube kubernetes.Interface, kind, ns, name string, progress Progress) error {
	last, cause := "", ""
	var failingSince, podsChecked time.Time
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		st, err := status(ctx, kube, kind, ns, name)
		if err != nil {
			if ctx.Err() != nil || strings.Contains(err.Error(), "would exceed context deadline") {
				return false, nil // out of time: reported below with the last state
			}
			return false, err
		}
		switch {
		case st.done:
			cause = ""
		case st.createFailure != "":
			cause = "pods cannot be created: " + st.createFailure
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) >= failFastAfter {
				return false, fmt.Errorf("%s/%s -n %s cannot roll out: %s", kind, name, ns, cause)
			}
		default:
			failingSince = time.Time{}
			if st.selector != nil && time.Since(podsChecked) >= podCheckEvery {
				podsChecked = time.Now()
				cause = podProblem(ctx, kube, ns, st.selector)
			}
		}
		msg := st.msg
		if cause != "" {
			msg += "; " + cause
		}
		if msg != last && progress != nil {
			progress("%s/%s -n %s: %s", kind, name, ns, msg)
		}
		last = msg
		return st.done, nil
	})
	if err != nil && (ctx.Err() != nil || wait.Interrupted(err)) {
		return fmt.Errorf("%s/%s -n %s did not roll out (%s): check its pods with kubectl describe %s %s -n %s", kind, name, ns, last, lower(kind), name, ns)
	}
	return err
}

// podProblem names the first reason a pod of the workload is not ready:
// not schedulable, an image that cannot be pulled, a crashing container,
// a failing readiness probe. Empty when none is visible.
func podProblem(ctx context.Context, kube kubernetes.Interface, ns string, sel *metav1.LabelSelector) string {
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if why := podNotReady(&p); why != "" {
			return "pod " + p.Name + " " + why
		}
	}
	return ""
}

func podNotReady(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "cannot be scheduled: " + c.Message
		}
	}
	probes := map[string]bool{}
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		probes[c.Name] = c.ReadinessProbe != nil || c.StartupProbe != nil
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			msg := fmt.Sprintf("container %s: %s", cs.Name, w.Reason)
			if w.Message != "" {
				msg += ": " + w.Message
			}
			return msg
		}
		if cs.State.Running != nil && !cs.Ready && probes[cs.Name] {
			return fmt.Sprintf("container %s is running but not ready (its readiness or startup probe fails)", cs.Name)
		}
	}
	return ""
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

// state is one observation of a workload.
type state struct {
	done bool
	msg  string
	// createFailure is why the controller cannot create pods (the
	// ReplicaFailure condition: the API server's refusal), if it cannot.
	createFailure string
	selector      *metav1.LabelSelector
}

func status(ctx context.Context, kube kubernetes.Interface, kind, ns, name string) (state, error) {
	switch kind {
	case "Deployment":
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return state{}, err
		}
		done, msg, err := deploymentDone(d)
		st := state{done: done, msg: msg, selector: d.Spec.Selector}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue && !done {
				st.createFailure = c.Message
			}
		}
		return st, err
	case "StatefulSet":
		s, err := kube.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return state{}, err
		}
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		st := state{selector: s.Spec.Selector}
		switch {
		case s.Status.ObservedGeneration < s.Generation:
			st.msg = "waiting for the controller to see the new spec"
		case s.Status.UpdatedReplicas < want || s.Status.ReadyReplicas < want || s.Status.CurrentRevision != s.Status.UpdateRevision && s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType:
			st.msg = fmt.Sprintf("%d of %d updated, %d ready", s.Status.UpdatedReplicas, want, s.Status.ReadyReplicas)
		default:
			st.done, st.msg = true, fmt.Sprintf("%d of %d ready", s.Status.ReadyReplicas, want)
		}
		return st, nil
	case "DaemonSet":
		d, err := kube.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return state{}, err
		}
		st := state{selector: d.Spec.Selector}
		want := d.Status.DesiredNumberScheduled
		switch {
		case d.Status.ObservedGeneration < d.Generation:
			st.msg = "waiting for the controller to see the new spec"
		case d.Status.UpdatedNumberScheduled < want || d.Status.NumberAvailable < want:
			st.msg = fmt.Sprintf("%d of %d updated, %d available", d.Status.UpdatedNumberScheduled, want, d.Status.NumberAvailable)
		default:
			st.done, st.msg = true, fmt.Sprintf("%d of %d available", d.Status.NumberAvailable, want)
		}
		return st, nil
	}
	return state{}, fmt.Errorf("cannot wait for a %s to roll out", kind)
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
