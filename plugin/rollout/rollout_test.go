package rollout

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestDeploymentDone(t *testing.T) {
	two := int32(2)
	mk := func(gen, observed int64, st appsv1.DeploymentStatus) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: func() appsv1.DeploymentStatus { st.ObservedGeneration = observed; return st }()}
	}
	cases := []struct {
		name string
		d    *appsv1.Deployment
		done bool
		msg  string
	}{
		{"spec not observed", mk(2, 1, appsv1.DeploymentStatus{}), false, "waiting for the controller"},
		{"updating", mk(1, 1, appsv1.DeploymentStatus{UpdatedReplicas: 1, Replicas: 2}), false, "1 of 2 new replicas updated"},
		{"old pods left", mk(1, 1, appsv1.DeploymentStatus{UpdatedReplicas: 2, Replicas: 3}), false, "1 old replicas pending termination"},
		{"not available", mk(1, 1, appsv1.DeploymentStatus{UpdatedReplicas: 2, Replicas: 2, AvailableReplicas: 1}), false, "1 of 2 updated replicas available"},
		{"done", mk(1, 1, appsv1.DeploymentStatus{UpdatedReplicas: 2, Replicas: 2, AvailableReplicas: 2}), true, "2 of 2 available"},
	}
	for _, tc := range cases {
		done, msg, err := deploymentDone(tc.d)
		if err != nil || done != tc.done || !strings.Contains(msg, tc.msg) {
			t.Fatalf("%s: done=%v msg=%q err=%v", tc.name, done, msg, err)
		}
	}
	stuck := mk(1, 1, appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet x has timed out progressing."}}})
	if _, _, err := deploymentDone(stuck); err == nil || !strings.Contains(err.Error(), "exceeded its progress deadline") {
		t.Fatalf("progress deadline: %v", err)
	}
}

func TestPodNotReady(t *testing.T) {
	probe := &corev1.Probe{}
	cases := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"ready", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, ""},
		{"creating", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}}, ""},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available"}}}}, "cannot be scheduled: 0/1 nodes are available"},
		{"image", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image app:2"}}}}}}, "container app: ImagePullBackOff: Back-off pulling image app:2"},
		{"crash in the sidecar", corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: "istio-proxy", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}}, "container istio-proxy: CrashLoopBackOff"},
		{"probe", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", ReadinessProbe: probe}}}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, "container app is running but not ready (its readiness or startup probe fails)"},
		{"not ready without a probe says nothing it cannot know", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, ""},
	}
	for _, tc := range cases {
		if got := podNotReady(&tc.pod); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A Deployment whose pods the API server refuses fails fast with the
// refusal, instead of waiting out the timeout.
func TestWaitFailsFastWhenPodsCannotBeCreated(t *testing.T) {
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
			Message: `Internal error occurred: failed calling webhook "x.sidecar-injector.istio.io": connection refused`}}},
	}
	defer func(d time.Duration) { failFastAfter = d }(failFastAfter)
	failFastAfter = time.Second
	var lines []string
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Wait(ctx, fake.NewSimpleClientset(d), "Deployment", "shop", "web", func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if err == nil || !strings.Contains(err.Error(), `Deployment/web -n shop cannot roll out: pods cannot be created: Internal error occurred: failed calling webhook "x.sidecar-injector.istio.io"`) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %s: not fast", time.Since(start))
	}
	if len(lines) == 0 || !strings.Contains(lines[0], "pods cannot be created") {
		t.Fatalf("progress did not name the cause: %q", lines)
	}
}
