package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/proxystatus"
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

// TestSandboxQuickstartInjects walks the README quickstart's first steps
// through real kubectl plugin dispatch: install, then inject --restart; the
// sandbox starts a real istiod for the new revision by itself, and
// Bookinfo's pods come back with the sidecar Istio's injector added.
func TestSandboxQuickstartInjects(t *testing.T) {
	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	plugins := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(plugins, "kubectl-mesh"), "../../cmd/kubectl-mesh").CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-mesh: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err = run(ctx, t.TempDir(), "../../testdata/sandbox", func(env *testenv.Env) {
		meshOut := func(args ...string) string {
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), append([]string{"mesh"}, args...)...)
			cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "PATH="+plugins+":"+os.Getenv("PATH"), "NO_COLOR=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl mesh %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		mesh := func(args ...string) { meshOut(args...) }
		mesh("install", "--revision", "1-31", "--yes", "--timeout", "2m")
		mesh("inject", "-n", "bookinfo", "--revision", "1-31", "--restart", "--yes", "--timeout", "2m")
		pods, err := env.Kube.CoreV1().Pods("bookinfo").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		injected := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Annotations["sidecar.istio.io/status"] != "" {
				injected++
			}
		}
		if injected < 4 {
			t.Fatalf("%d of bookinfo's pods carry Istio's sidecar after the quickstart, want all 4", injected)
		}
		// Their test proxies connect (read as the plugin reads them: istiod's
		// syncz through the API server), and a change to Istio configuration
		// is followed to each of them.
		status := proxystatus.Client{Kube: env.Kube, IstioNamespace: "istio-system"}
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			ps, err := status.Read(ctx)
			return err == nil && len(ps) == 4, nil
		}); err != nil {
			t.Fatalf("bookinfo's 4 proxies never connected to istiod: %v", err)
		}
		out := meshOut("migrate-mtls", "-n", "bookinfo", "--stage", "strict", "--skip-telemetry", "--yes")
		if !strings.Contains(out, "4 of 4 proxies acknowledged the new configuration") {
			t.Fatalf("migrate-mtls did not follow the change to bookinfo's 4 proxies:\n%s", out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
