package main

import (
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

func labelsOf(t *testing.T, kind, ns, name string) map[string]any {
	t.Helper()
	o := object(t, ns, kind, name)
	if o == nil {
		t.Fatalf("%s %s/%s missing", kind, ns, name)
	}
	l, _ := o["metadata"].(map[string]any)["labels"].(map[string]any)
	return l
}

func templateAnnotations(t *testing.T, ns, name string) map[string]any {
	t.Helper()
	d := object(t, ns, "deployment", name)
	md := d["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
	a, _ := md["annotations"].(map[string]any)
	return a
}

// istiodYAML is a stand-in istiod Deployment of revision 1-31: what
// revision detection reads (labels, image), run by the kwok node.
func istiodYAML(ns string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod-1-31
  namespace: ` + ns + `
  labels: {app: istiod, istio.io/rev: 1-31}
spec:
  replicas: 1
  selector: {matchLabels: {app: istiod, istio.io/rev: 1-31}}
  template:
    metadata: {labels: {app: istiod, istio.io/rev: 1-31}}
    spec: {containers: [{name: discovery, image: docker.io/istio/pilot:1.31.0}]}
`
}

func deployment(ns, name, extraTemplate string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  replicas: 1
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata:
      labels: {app: ` + name + `}` + extraTemplate + `
    spec:
      containers: [{name: app, image: app:1}]
`
}

func installFakeControlPlane(t *testing.T) {
	t.Helper()
	kubectl(t, nil, "create", "namespace", "istio-system")
	if r := kubectl(t, nil, "apply", "-f", writeFile(t, "istiod.yaml", istiodYAML("istio-system"))); r.code != 0 {
		t.Fatal(r.stderr)
	}
}

// TestInjectLabelsRestartsAndUndoes: a namespace with the wrong label style
// gets the revision label, its workloads are restarted one at a time with
// real rollouts, a pod from another revision is flagged, bare pods are
// left for manual recreation; undo and --disable work.
func TestInjectLabelsRestartsAndUndoes(t *testing.T) {
	installFakeControlPlane(t)
	ns := "inject-e2e"
	createNamespace(t, ns)
	mustKubectl(t, "label", "namespace", ns, "istio-injection=enabled")
	manifests := deployment(ns, "web-1", "") + "---\n" + deployment(ns, "web-2", `
      annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}`) + `---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: inject-e2e}
spec: {containers: [{name: app, image: app:1}]}
`
	if r := kubectl(t, nil, "apply", "-f", writeFile(t, "w.yaml", manifests)); r.code != 0 {
		t.Fatal(r.stderr)
	}
	mustKubectl(t, "rollout", "status", "-n", ns, "deployment/web-1", "deployment/web-2", "--timeout=60s")

	// Without --restart: the label only, and which workloads still need a restart.
	r := mesh(t, 1, "inject", "-n", ns, "--revision", "1-31", "--dry-run=server")
	mustContain(t, "diff", r.stdout, "-    istio-injection: enabled", "+    istio.io/rev: 1-31")
	mustContain(t, "notes", r.stderr, "still need a restart to pick up the change: Deployment/web-1, Deployment/web-2",
		"Pod/bare -n inject-e2e must be recreated manually", "Deployment/web-2  1/1", "proxy from revision default, not 1-31 (IST0158)")

	r = mesh(t, 0, "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes")
	l := labelsOf(t, "namespace", "", ns)
	if l["istio.io/rev"] != "1-31" || l["istio-injection"] != nil {
		t.Fatalf("namespace labels after inject: %v", l)
	}
	// One workload at a time: web-1's rollout finished before web-2 changed.
	i1 := strings.Index(r.stderr, "Deployment/web-1 -n inject-e2e: 1 of 1 available")
	i2 := strings.Index(r.stderr, "Deployment.apps/web-2 -n inject-e2e configured")
	if i1 < 0 || i2 < 0 || i1 > i2 {
		t.Fatalf("restarts not sequential (web-1 done at %d, web-2 started at %d)", i1, i2)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if templateAnnotations(t, ns, name)["kubectl.kubernetes.io/restartedAt"] == nil {
			t.Fatalf("%s not restarted", name)
		}
	}
	mustContain(t, "coverage after", r.stdout, "After:", "total")

	// Undo puts the old label back.
	mesh(t, 0, "undo", lastChangeSet(t)["id"].(string), "--yes")
	l = labelsOf(t, "namespace", "", ns)
	if l["istio-injection"] != "enabled" || l["istio.io/rev"] != nil {
		t.Fatalf("namespace labels after undo: %v", l)
	}

	// Disable: explicit opt-out, no revision label.
	mesh(t, 0, "inject", "-n", ns, "--disable", "--yes")
	l = labelsOf(t, "namespace", "", ns)
	if l["istio-injection"] != "disabled" || l["istio.io/rev"] != nil {
		t.Fatalf("namespace labels after --disable: %v", l)
	}
}

// TestInjectStopsOnFirstFailedRollout: the first workload cannot roll out;
// the sequence stops there and the next workload is not touched.
func TestInjectStopsOnFirstFailedRollout(t *testing.T) {
	installFakeControlPlane(t)
	ns := "inject-fail"
	createNamespace(t, ns)
	stuck := deployment(ns, "a-stuck", "")
	stuck = strings.Replace(stuck, "    spec:\n", "    spec:\n      nodeSelector: {no-such-node: \"true\"}\n", 1)
	if r := kubectl(t, nil, "apply", "-f", writeFile(t, "w.yaml", stuck+"---\n"+deployment(ns, "b-ok", ""))); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := mesh(t, 1, "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes", "--timeout", "3s")
	mustContain(t, "error", errorLine(t, r), "stopped after 2 of 3 change(s)", "Deployment/a-stuck -n inject-fail did not roll out", "cannot be scheduled: 0/1 nodes are available", "kubectl mesh undo cs-")
	if templateAnnotations(t, ns, "b-ok")["kubectl.kubernetes.io/restartedAt"] != nil {
		t.Fatal("the sequence went on after a failed rollout")
	}
	if cs := lastChangeSet(t); cs["status"] != "failed" {
		t.Fatalf("change set status %v", cs["status"])
	}
}

func TestInjectBadInput(t *testing.T) {
	installFakeControlPlane(t)
	createNamespace(t, "inject-bad")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-n", "kube-system", "--revision", "1-31"}, 64, "refusing to change injection for kube-system"},
		{[]string{"-n", "istio-system", "--revision", "1-31"}, 64, "control plane's own pods"},
		{[]string{"-n", "inject-bad", "--revision", "9-99"}, 64, `revision "9-99" is not installed`},
		{[]string{"-n", "nope", "--revision", "1-31"}, 64, `namespace "nope" not found`},
		{[]string{"-n", "inject-bad", "--disable", "--revision", "1-31"}, 64, "--disable and --revision do not go together"},
		{[]string{"-n", "inject-bad", "--timeout", "0s"}, 64, "--timeout must be positive"},
	} {
		r := kubectl(t, nil, append([]string{"mesh", "inject", "--yes"}, tc.args...)...)
		if r.code != tc.code {
			t.Fatalf("%v: exit %d, want %d", tc.args, r.code, tc.code)
		}
		mustContain(t, "error", errorLine(t, r), tc.want)
	}
	if l := labelsOf(t, "namespace", "", "inject-bad"); l["istio.io/rev"] != nil || l["istio-injection"] != nil {
		t.Fatalf("bad input changed labels: %v", l)
	}
	bare := startEnv(t, testenv.Options{})
	r := kubectl(t, []string{"KUBECONFIG=" + bare.Kubeconfig}, "mesh", "inject", "-n", "default", "--yes")
	if r.code != 69 {
		t.Fatalf("no control plane: exit %d", r.code)
	}
	mustContain(t, "error", errorLine(t, r), "no Istio control plane found")
}

// TestInjectForbiddenNamespacePatch: a user who may read everything but not
// update the namespace fails before any write, naming the verb.
func TestInjectForbiddenNamespacePatch(t *testing.T) {
	installFakeControlPlane(t)
	ns := "inject-rbac"
	createNamespace(t, ns)
	mustKubectl(t, "create", "clusterrole", "inject-reader", "--verb=get,list,watch",
		"--resource=namespaces,pods,deployments.apps,replicasets.apps,jobs.batch,mutatingwebhookconfigurations.admissionregistration.k8s.io")
	mustKubectl(t, "create", "clusterrolebinding", "inject-reader", "--clusterrole=inject-reader", "--user=viewer")
	kc, err := env.WriteKubeconfig("viewer", ns)
	if err != nil {
		t.Fatal(err)
	}
	r := kubectl(t, []string{"KUBECONFIG=" + kc}, "mesh", "inject", "-n", ns, "--revision", "1-31", "--yes")
	if r.code != 77 {
		t.Fatalf("exit %d, want 77", r.code)
	}
	mustContain(t, "error", errorLine(t, r), `User "viewer" cannot update resource "namespaces"`)
	if l := labelsOf(t, "namespace", "", ns); l["istio.io/rev"] != nil {
		t.Fatal("forbidden inject labelled the namespace")
	}
}

// TestInjectOnTerminal: without --restart, inject asks whether to restart
// the workloads that need it, naming them, and restarts them on yes.
func TestInjectOnTerminal(t *testing.T) {
	installFakeControlPlane(t)
	ns := "inject-tty"
	createNamespace(t, ns)
	if r := kubectl(t, nil, "apply", "-f", writeFile(t, "w.yaml", deployment(ns, "tty-web", ""))); r.code != 0 {
		t.Fatal(r.stderr)
	}
	mustKubectl(t, "rollout", "status", "-n", ns, "deployment/tty-web", "--timeout=60s")
	screen, code := runOnTerminalSteps(t, []termStep{
		{"Restart 1 workload(s) to get the sidecar from 1-31, one at a time (Deployment/tty-web)?", typeKeys("y\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "inject", "-n", ns, "--revision", "1-31")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, screen)
	}
	if templateAnnotations(t, ns, "tty-web")["kubectl.kubernetes.io/restartedAt"] == nil {
		t.Fatalf("answering yes did not restart tty-web:\n%s", screen)
	}
	if strings.Contains(screen, "re-run with --restart") {
		t.Fatalf("told to re-run instead of asked:\n%s", screen)
	}
}
