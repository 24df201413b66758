package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestAPIServerDiesMidApply kills kube-apiserver while a 150-object change
// set is being applied, restarts it, and checks that history shows the
// interrupted change set and undo converges: nothing the change set created
// is left behind.
func TestAPIServerDiesMidApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startEnv(t, testenv.Options{IstioCRDs: true})
	on := []string{"KUBECONFIG=" + e.Kubeconfig}
	if r := kubectl(t, on, "create", "namespace", "fault"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	var b strings.Builder
	for i := range 150 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d, namespace: fault}\ndata: {i: \"%d\"}\n", i, i)
	}
	f := writeFile(t, "many.yaml", b.String())

	cmd, out := startUntil(ctx, t, e.Kubeconfig, "ConfigMap/cm-010 -n fault created", "mesh", "apply", "-f", f, "--yes")
	e.KillAPIServer()
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("apply succeeded although the API server died:\n%s", out.String())
	}
	if strings.Contains(out.String(), "panic") || strings.Contains(out.String(), "goroutine ") {
		t.Fatalf("crash output:\n%s", out.String())
	}
	mustContain(t, "output", out.String(), "apply failed after", "kubectl mesh undo cs-")

	if err := e.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	r := kubectl(t, on, "mesh", "history")
	mustContain(t, "history", r.stdout, "incomplete", "apply "+f)
	r = kubectl(t, on, "mesh", "undo", "--yes")
	if r.code != 0 {
		t.Fatalf("undo after restart: exit %d\n%s", r.code, r.stderr)
	}
	r = kubectl(t, on, "get", "configmaps", "-n", "fault", "-l", "app.kubernetes.io/managed-by=kubectl-mesh", "-o", "name")
	if strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("undo left objects of the interrupted change set:\n%s", r.stdout)
	}
}
