package main

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestSandboxServesSamples runs the README quickstart's sandbox: the sample
// workloads exist and their pods become Ready on the kwok node.
func TestSandboxServesSamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, t.TempDir(), "../../testdata/sandbox", func(env *testenv.Env) {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			list, err := env.Kube.AppsV1().Deployments("bookinfo").List(ctx, metav1.ListOptions{})
			if err != nil || len(list.Items) != 4 {
				return false, nil
			}
			return allAvailable(list.Items), nil
		})
		if err != nil {
			t.Errorf("bookinfo samples never became available: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func allAvailable(deps []appsv1.Deployment) bool {
	for _, d := range deps {
		if d.Status.AvailableReplicas < 1 {
			return false
		}
	}
	return true
}
