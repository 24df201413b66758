package rollout

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
