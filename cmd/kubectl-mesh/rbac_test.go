package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestRBACLeastPrivilege: a user without rights fails before writing and
// the error names what is missing; with exactly what kubectl mesh rbac
// prints bound, the same workflow succeeds.
func TestRBACLeastPrivilege(t *testing.T) {
	e := startEnv(t, testenv.Options{Nodes: true, IstioCRDs: true})
	admin := []string{"KUBECONFIG=" + e.Kubeconfig}
	kc, err := e.WriteKubeconfig("restricted", "shop")
	if err != nil {
		t.Fatal(err)
	}
	restricted := []string{"KUBECONFIG=" + kc}
	must := func(env []string, args ...string) result {
		t.Helper()
		r := kubectl(t, env, args...)
		if r.code != 0 {
			t.Fatalf("kubectl %v: %s", args, r.stderr)
		}
		return r
	}
	must(admin, "create", "namespace", "shop")
	must(admin, "create", "namespace", "kubectl-mesh")
	must(admin, "apply", "-f", writeFile(t, "reviews.yaml", reviewsApp("shop")))
	must(admin, "rollout", "status", "deployment/reviews-v2", "-n", "shop", "--timeout=60s")

	start := []string{"mesh", "canary", "start", "reviews", "--stable", "v1", "--canary", "v2", "--yes"}
	r := kubectl(t, restricted, start...)
	if r.code != 77 {
		t.Fatalf("without rights: exit %d, want 77\n%s", r.code, r.stderr)
	}
	mustContain(t, "forbidden", errorLine(t, r), `User "restricted" cannot list resource "services"`)

	for _, wf := range [][]string{{"canary", "start"}, {"migrate-mtls"}, {"inject"}, {"onboard"}, {"check"}} {
		r := kubectl(t, admin, append(append([]string{"mesh", "rbac"}, wf...), "-n", "shop", "--user", "restricted")...)
		if r.code != 0 || !strings.Contains(r.stdout, "kind: ClusterRoleBinding") {
			t.Fatalf("rbac %v: %s", wf, r.stderr)
		}
	}
	// Apply what rbac prints, as the admin, through a pipe like a user would.
	cmd := exec.Command("sh", "-c", "kubectl mesh rbac canary start -n shop --user restricted --without-analysis | kubectl apply -f -")
	cmd.Env = append(append(os.Environ(), admin...), "PATH="+pathEnv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("applying the printed roles: %v\n%s", err, out)
	}
	r = kubectl(t, restricted, start...)
	if r.code != 0 {
		t.Fatalf("with the printed roles: exit %d\n%s", r.code, r.stderr)
	}
	mustContain(t, "analysis skipped", r.stderr, "ANALYSIS-SKIPPED")
	if r := kubectl(t, admin, "get", "virtualservice", "reviews", "-n", "shop"); r.code != 0 {
		t.Fatal("the canary was not created")
	}
	r = kubectl(t, restricted, "mesh", "canary", "abort", "reviews", "--yes")
	if r.code != 0 {
		t.Fatalf("abort with the printed roles: exit %d\n%s", r.code, r.stderr)
	}
	r = kubectl(t, admin, "mesh", "rbac", "apply")
	if r.code != 64 || !strings.Contains(errorLine(t, r), "use one of canary abort, canary promote") {
		t.Fatalf("rbac apply: exit %d %s", r.code, r.stderr)
	}
}

// TestRBACInstall: the roles kubectl mesh rbac install prints are enough
// for a user without any other right to install the production profile.
func TestRBACInstall(t *testing.T) {
	e := startEnv(t, testenv.Options{Nodes: true})
	admin := []string{"KUBECONFIG=" + e.Kubeconfig}
	kc, err := e.WriteKubeconfig("restricted", "")
	if err != nil {
		t.Fatal(err)
	}
	restricted := []string{"KUBECONFIG=" + kc}
	if r := kubectl(t, admin, "create", "namespace", "kubectl-mesh"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := kubectl(t, restricted, "mesh", "install", "--revision", "1-31", "--yes")
	if r.code != 77 {
		t.Fatalf("install without rights: exit %d\n%s", r.code, r.stderr)
	}
	cmd := exec.Command("sh", "-c", "kubectl mesh rbac install -n istio-system --user restricted | kubectl apply -f -")
	cmd.Env = append(append(os.Environ(), admin...), "PATH="+pathEnv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("applying the printed roles: %v\n%s", err, out)
	}
	r = kubectl(t, restricted, "mesh", "install", "--revision", "1-31", "--yes", "--timeout", "90s")
	if r.code != 0 {
		t.Fatalf("install with the printed roles: exit %d\n%s", r.code, r.stderr)
	}
	assertNoLeaks(t, r)
	mustContain(t, "install", r.stderr, "Deployment/istiod-1-31 -n istio-system: 2 of 2 available")
}
