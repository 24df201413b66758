package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestInstallProductionRevision installs on a control plane of its own (no
// Istio CRDs yet; the install brings them), with the kwok node running
// istiod and the gateway so the verify step waits for real rollouts.
func TestInstallProductionRevision(t *testing.T) {
	e := startEnv(t, testenv.Options{Nodes: true})
	on := []string{"KUBECONFIG=" + e.Kubeconfig}
	run := func(want int, args ...string) result {
		t.Helper()
		r := kubectl(t, on, append([]string{"mesh"}, args...)...)
		if r.code != want {
			t.Fatalf("kubectl mesh %v: exit %d, want %d", args, r.code, want)
		}
		assertNoLeaks(t, r)
		return r
	}

	r := run(0, "install", "--explain")
	mustContain(t, "explain", r.stdout, "istiod: 2 replicas, HPA min 2 / max 5", "why:", "spread over zones", "Kept as Istio ships it", "kept, because")

	// A CRD an older Istio left behind is reported, not touched.
	leftover := writeFile(t, "leftover.yaml", `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: istiooperators.install.istio.io}
spec:
  group: install.istio.io
  names: {kind: IstioOperator, plural: istiooperators}
  scope: Namespaced
  versions: [{name: v1alpha1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
`)
	if r := kubectl(t, on, "apply", "-f", leftover); r.code != 0 {
		t.Fatal(r.stderr)
	}

	r = run(0, "install", "--revision", "1-31", "--yes", "--timeout", "90s")
	mustContain(t, "leftover", r.stderr, "Warning [INSTALL-LEFTOVER-CRDS]", "istiooperators.install.istio.io")
	mustContain(t, "install", r.stderr,
		"CustomResourceDefinition.apiextensions.k8s.io/virtualservices.networking.istio.io created",
		"Namespace/istio-system created",
		"Verifying: Deployment/istiod-1-31 -n istio-system rolled out", "Deployment/istiod-1-31 -n istio-system: 2 of 2 available",
		"Deployment/istio-ingressgateway -n istio-system: 2 of 2 available",
		"MutatingWebhookConfiguration/istio-sidecar-injector-1-31 present")
	first := lastChangeSetOn(t, on)["id"].(string)

	// Nothing changed: a re-run says so.
	r = run(0, "install", "--revision", "1-31", "--yes")
	mustContain(t, "re-run", r.stderr, "revision 1-31 is installed already", "No changes")

	// The autoscaler scaled istiod up (kubectl scale updates the count as
	// the HPA does): a re-run leaves it alone.
	if r := kubectl(t, on, "scale", "deployment", "istiod-1-31", "-n", "istio-system", "--replicas=4"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = run(0, "install", "--revision", "1-31", "--yes")
	mustContain(t, "re-run after scale-up", r.stderr, "No changes")
	if r := kubectl(t, on, "get", "deployment", "istiod-1-31", "-n", "istio-system", "-o", "jsonpath={.spec.replicas}"); r.stdout != "4" {
		t.Fatalf("a re-run of the install changed istiod's replicas to %q, want the autoscaler's 4", r.stdout)
	}
	if r := kubectl(t, on, "scale", "deployment", "istiod-1-31", "-n", "istio-system", "--replicas=2"); r.code != 0 {
		t.Fatal(r.stderr)
	}

	// A revision-less install next to the "default" revision tag would
	// double-inject: blocked.
	tag := writeFile(t, "tag.yaml", `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-revision-tag-default, labels: {istio.io/tag: default, istio.io/rev: 1-31}}
webhooks: []
`)
	if r := kubectl(t, on, "apply", "-f", tag); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = run(79, "install", "--dry-run=server", "--ingress=false")
	mustContain(t, "conflict", r.stderr, "Error [INSTALL-WEBHOOK-CONFLICT]", "Warning [INSTALL-DEFAULT-BESIDE-REVISIONS]")
	mustContain(t, "conflict", errorLine(t, r), "INSTALL-WEBHOOK-CONFLICT")
	if r := kubectl(t, on, "delete", "-f", tag); r.code != 0 {
		t.Fatal(r.stderr)
	}

	// A second revision side by side, then undone.
	r = run(0, "install", "--revision", "1-32", "--tag", "1.32.0", "--ingress=false", "--yes", "--timeout", "90s")
	mustContain(t, "side by side", r.stderr, "installing side by side with revision(s) 1-31", "Deployment/istiod-1-32 -n istio-system: 2 of 2 available")
	run(0, "undo", lastChangeSetOn(t, on)["id"].(string), "--yes")
	if r := kubectl(t, on, "get", "deployment", "-n", "istio-system", "istiod-1-32"); r.code == 0 {
		t.Fatal("undo left istiod-1-32")
	}
	if r := kubectl(t, on, "get", "deployment", "-n", "istio-system", "istiod-1-31"); r.code != 0 {
		t.Fatal("undo of the second revision removed the first")
	}

	// A control plane that cannot become ready: the timeout names it.
	r = run(1, "install", "--revision", "1-33", "--ingress=false", "--set", "components.pilot.k8s.nodeSelector.pool=none", "--yes", "--timeout", "3s")
	mustContain(t, "timeout", errorLine(t, r), "Deployment/istiod-1-33 -n istio-system did not roll out", "kubectl mesh undo cs-")
	run(0, "undo", "--yes")

	// Uninstall the last revision: control plane and gateways go, CRDs stay.
	r = run(0, "uninstall", "--revision", "1-31", "--yes")
	mustContain(t, "uninstall", r.stderr, "Deployment.apps/istiod-1-31 -n istio-system deleted", "Deployment.apps/istio-ingressgateway -n istio-system deleted", "Istio's CRDs and config objects stay")
	if r := kubectl(t, on, "get", "crd", "virtualservices.networking.istio.io"); r.code != 0 {
		t.Fatal("uninstall without --purge removed the CRDs")
	}
	run(64, "uninstall", "--revision", "1-31", "--yes") // nothing left to remove
	run(0, "undo", "--yes")
	if r := kubectl(t, on, "get", "deployment", "-n", "istio-system", "istiod-1-31"); r.code != 0 {
		t.Fatal("undo of the uninstall did not bring istiod back")
	}
	// On a terminal, uninstall asks which revision and, for the last one,
	// whether the CRDs go too; declining the confirmation changes nothing.
	screen, code := runOnTerminalSteps(t, []termStep{
		{"Revision to uninstall", typeKeys("\r")},
		{"also delete Istio's CRDs", typeKeys("y\r")},
		{"(y/N)", typeKeys("n\r")},
	}, "mesh", "uninstall", "--kubeconfig", e.Kubeconfig)
	if code != 1 {
		t.Fatalf("uninstall on a terminal: exit %d, want 1 (not confirmed)", code)
	}
	mustContain(t, "asked", screen, "Revision to uninstall: 1-31", "Istio CRDs", "CustomResourceDefinition.apiextensions.k8s.io/virtualservices.networking.istio.io", "not confirmed")
	if r := kubectl(t, on, "get", "deployment", "-n", "istio-system", "istiod-1-31"); r.code != 0 {
		t.Fatal("a declined uninstall removed istiod")
	}
	// --purge with config objects present is blocked until accepted.
	vs := writeFile(t, "vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: keep, namespace: default}\nspec: {hosts: [keep]}\n")
	if r := kubectl(t, on, "apply", "-f", vs); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = run(79, "uninstall", "--revision", "1-31", "--purge", "--yes")
	mustContain(t, "purge", r.stderr, "UNINSTALL-PURGE-CONFIG", "deletes 1 Istio config object(s)")
	if r := kubectl(t, on, "delete", "-f", vs); r.code != 0 {
		t.Fatal(r.stderr)
	}

	// Undo of the first install removes everything it created, CRDs included.
	run(0, "undo", first, "--yes")
	waitGone(t, on, "undo left the Istio CRDs", "get", "crd", "virtualservices.networking.istio.io")
}

func TestInstallBadInput(t *testing.T) {
	badIOP := writeFile(t, "bad-iop.yaml", "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  components:\n    pilot:\n      enabled: maybe\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--profile", "enterprise"}, 64, `unknown profile "enterprise"`},
		{[]string{"--set", "novalue"}, 64, `invalid --set "novalue"`},
		{[]string{"--tag", "latest"}, 64, `--tag "latest" does not pin a release`},
		{[]string{"--tag", ""}, 64, `--tag "" does not pin a release`},
		{[]string{"--revision", "1.31"}, 64, `invalid --revision "1.31"`},
		{[]string{"--revision", "Canary"}, 64, `invalid --revision "Canary"`},
		{[]string{"--outbound-policy", "DENY"}, 64, `invalid --outbound-policy "DENY"`},
		{[]string{"--tracing-sampling", "150"}, 64, "invalid --tracing-sampling 150"},
		{[]string{"-f", badIOP}, 65, "the Istio configuration is invalid"},
		{[]string{"-f", "/nonexistent/iop.yaml"}, 65, "cannot read IstioOperator file /nonexistent/iop.yaml"},
	} {
		r := kubectl(t, nil, append([]string{"mesh", "install", "--yes"}, tc.args...)...)
		if r.code != tc.code {
			t.Fatalf("%v: exit %d, want %d", tc.args, r.code, tc.code)
		}
		assertNoLeaks(t, r)
		mustContain(t, "error", errorLine(t, r), tc.want)
	}
}

// TestInstallRendersOffline: a GitOps render needs no cluster, as
// istioctl manifest generate does; the skipped prechecks are said once.
func TestInstallRendersOffline(t *testing.T) {
	nowhere := []string{"KUBECONFIG=" + writeFile(t, "nowhere.kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: gone, user: u}}]
current-context: c
`)}
	r := kubectl(t, nowhere, "mesh", "install", "--profile", "production", "--revision", "1-31", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("offline -o yaml: exit %d", r.code)
	}
	assertNoLeaks(t, r)
	mustContain(t, "render", r.stdout, "kind: Deployment", "name: istiod-1-31", "kind: MutatingWebhookConfiguration")
	// GitOps tools apply this: the autoscaled Deployments carry no count.
	for _, doc := range strings.Split(r.stdout, "\n---\n") {
		if strings.Contains(doc, "kind: Deployment\n") && strings.Contains(doc, "replicas:") {
			t.Fatalf("an exported Deployment sets replicas although an HPA scales it:\n%s", doc[:min(len(doc), 400)])
		}
	}
	mustContain(t, "note", r.stderr, "no cluster reachable: rendered without the prechecks")
	if strings.Contains(r.stdout, "note:") {
		t.Fatal("the note went to stdout with the manifests")
	}
	dir := filepath.Join(t.TempDir(), "out")
	if r := kubectl(t, nowhere, "mesh", "install", "--output-dir", dir); r.code != 0 {
		t.Fatalf("offline --output-dir: exit %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		t.Fatal(err)
	}
	// Applying still needs the cluster, and says so.
	r = kubectl(t, nowhere, "mesh", "install", "--yes")
	if r.code != 69 {
		t.Fatalf("offline apply: exit %d, want 69", r.code)
	}
	mustContain(t, "error", errorLine(t, r), "cannot reach the Kubernetes API server")
}
