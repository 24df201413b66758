package testenv

import (
	"context"
	"fmt"
	"strings"
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

// TestStartSurvivesTakenPorts: when another control plane holds the ports
// picked for a new one (concurrent test packages), the new one notices —
// its etcd or apiserver cannot bind, or the apiserver answering is not its
// own — and starts again on fresh ports instead of sharing the other's.
func TestStartSurvivesTakenPorts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	first, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	for _, tc := range []struct {
		name            string
		etcd, apiserver bool
	}{{"etcd port", true, false}, {"apiserver port", false, true}, {"both", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			pickPorts = func(n int) ([]int, error) {
				calls++
				ports, err := freePorts(n)
				if calls == 1 && tc.etcd {
					ports[0] = portOf(t, first.etcdURL)
				}
				if calls == 1 && tc.apiserver {
					ports[2] = first.apiPort
				}
				return ports, err
			}
			defer func() { pickPorts = freePorts }()
			second, err := Start(ctx, Options{Log: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			defer second.Stop()
			if calls < 2 || second.apiPort == first.apiPort {
				t.Fatalf("the second control plane did not move to new ports (%d picks)", calls)
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-second"}}
			if _, err := second.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := first.Kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); err == nil {
				t.Fatal("the two control planes share storage")
			}
		})
	}
}

func portOf(t *testing.T, u string) int {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(u[strings.LastIndex(u, ":")+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}
