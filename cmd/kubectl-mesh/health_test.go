package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestCheckAndStatusAfterInstall: check --pre on an empty cluster, then a
// real install of the production profile; check is green apart from
// warnings, a broken namespace label fails it (exit 79, also after
// --wait), and status shows the revision and the namespace.
func TestCheckAndStatusAfterInstall(t *testing.T) {
	e := startEnv(t, testenv.Options{Nodes: true})
	on := []string{"KUBECONFIG=" + e.Kubeconfig}
	run := func(want int, args ...string) result {
		t.Helper()
		r := kubectl(t, on, args...)
		if r.code != want {
			t.Fatalf("kubectl %v: exit %d, want %d", args, r.code, want)
		}
		assertNoLeaks(t, r)
		return r
	}
	r := run(0, "mesh", "check", "--pre")
	mustContain(t, "pre", r.stdout, "kubernetes-api", "√ can reach the API server (v1.36.1)", "pre-install", "√ the cluster is ready for kubectl mesh install")
	r = run(79, "mesh", "check")
	mustContain(t, "before install", r.stdout, "× Istio CRDs are installed", "× an istiod is installed", "hint: install Istio: kubectl mesh install")

	run(0, "mesh", "install", "--revision", "1-31", "--yes", "--timeout", "90s")
	// Pods first, label after: the injector webhook has no real istiod behind it.
	run(0, "create", "namespace", "shop")
	run(0, "apply", "-f", writeFile(t, "app.yaml", meshApp("shop", "api", 8080, true)))
	run(0, "rollout", "status", "deployment/api", "-n", "shop", "--timeout=60s")
	run(0, "label", "namespace", "shop", "istio.io/rev=1-31", "kubectl-mesh.io/team=shop")

	r = run(0, "mesh", "check")
	mustContain(t, "after install", r.stdout,
		"√ CRDs match the control plane (Istio 1.31, revision 1-31)",
		"√ Deployment istio-system/istiod-1-31 is available", "√ Deployment istio-system/istio-ingressgateway is available",
		"namespace shop → 1-31", "√ namespace shop: every pod has a sidecar (1/1)",
		"‼ namespace shop is STRICT", "hint: kubectl mesh migrate-mtls -n shop", "‼ mesh workloads have readiness and liveness probes",
		"Status check results:")
	if strings.Contains(r.stdout, "\n× ") {
		t.Fatalf("a fresh install fails a check:\n%s", r.stdout)
	}

	run(0, "create", "namespace", "broken")
	run(0, "label", "namespace", "broken", "istio.io/rev=1-29")
	r = run(79, "mesh", "check", "-o", "json", "--wait", "2s")
	var rep struct {
		Results []struct{ Category, Check, ID, Severity, Message string }
		Summary struct{ Info, Warning, Error int }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check -o json: %v\n%s", err, r.stdout)
	}
	found := false
	for _, res := range rep.Results {
		if res.Severity == "Error" && res.ID == "CHECK-INJECTION-REVISION" && res.Check == "namespace broken selects an installed revision" {
			found = true
		}
	}
	if !found || rep.Summary.Error != 1 {
		t.Fatalf("want exactly the broken namespace failing, got %+v", rep)
	}
	r = run(0, "mesh", "check", "-n", "shop")
	if strings.Contains(r.stdout, "broken") {
		t.Fatal("-n shop checked another namespace")
	}

	r = run(0, "mesh", "status")
	mustContain(t, "status", r.stdout, "1-31", "istio-system", "1.31.0", "2/2", "shop", "1/1 100%", "PERMISSIVE")
	r = run(0, "mesh", "status", "-o", "json")
	var st struct {
		ControlPlanes []struct{ Revision string }
		Namespaces    []struct{ Name, Team, Mtls string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.ControlPlanes) != 1 || st.ControlPlanes[0].Revision != "1-31" {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	run(64, "mesh", "check", "-o", "yaml")
}
