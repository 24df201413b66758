package testenv

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestControlPlaneRunsPods proves the whole control plane: the real
// apiserver reports its real version, Istio CRDs are served, and a
// Deployment gets Ready pods on the kwok node.
func TestControlPlaneRunsPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := Start(ctx, Options{Nodes: true, IstioCRDs: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()

	v, err := env.Kube.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion == "" || v.GitVersion == "v0.0.0-master+$Format:%H$" || v.Minor == "" {
		t.Fatalf("apiserver version not stamped: %+v", v)
	}
	if _, err := env.Kube.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1"); err != nil {
		t.Fatalf("istio CRDs not served: %v", err)
	}

	replicas := int32(3)
	labels := map[string]string{"app": "demo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "demo:1"}}},
			},
		},
	}
	if _, err := env.Kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := env.Kube.AppsV1().Deployments("default").Get(ctx, "demo", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == replicas, nil
	})
	if err != nil {
		t.Fatalf("deployment never became ready: %v", err)
	}
	t.Logf("3 pods Ready in %s", time.Since(start).Round(time.Millisecond))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
