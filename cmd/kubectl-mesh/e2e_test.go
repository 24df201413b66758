package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

func TestHelpAndClientVersionWorkWithoutCluster(t *testing.T) {
	// A kubeconfig pointing at a closed port: anything that touches the
	// network would fail.
	dead := writeFile(t, "dead.kubeconfig", strings.ReplaceAll(env.KubeconfigFor("admin", "x", ""), env.URL, "https://127.0.0.1:1"))
	noCluster := []string{"KUBECONFIG=" + dead}

	r := kubectl(t, noCluster, "mesh", "--help")
	if r.code != 0 {
		t.Fatalf("--help exit %d", r.code)
	}
	mustContain(t, "help", r.stdout, "kubectl mesh [command]", "--istio-namespace", "--journal-namespace",
		`Use "kubectl mesh options" for the kubectl connection flags`)
	// As in kubectl, the connection flags are listed by options, not in every help.
	if strings.Contains(r.stdout, "--certificate-authority") {
		t.Fatalf("--help lists the connection flags:\n%s", r.stdout)
	}
	// The flags for changes belong to the commands that change the cluster.
	r = kubectl(t, noCluster, "mesh", "canary", "start", "--help")
	mustContain(t, "canary start --help", r.stdout, "--dry-run", "--field-manager", "--failure-threshold", "--force-conflicts", "--output-dir", "--yes", "--accept")
	for _, readOnly := range [][]string{{"check"}, {"status"}, {"canary", "status"}, {"history"}, {"version"}} {
		r = kubectl(t, noCluster, append(append([]string{"mesh"}, readOnly...), "--help")...)
		if r.code != 0 || strings.Contains(r.stdout, "--yes") || strings.Contains(r.stdout, "--dry-run") {
			t.Fatalf("%s --help (exit %d) offers flags for changes:\n%s", strings.Join(readOnly, " "), r.code, r.stdout)
		}
	}
	r = kubectl(t, noCluster, "mesh", "check", "--yes")
	mustContain(t, "check --yes", errorLine(t, r), "unknown flag: --yes")
	r = kubectl(t, noCluster, "mesh", "options")
	mustContain(t, "options", r.stdout, "--kubeconfig string", "--context string", "-n, --namespace string", "--certificate-authority")

	r = kubectl(t, noCluster, "mesh", "version", "--client")
	if r.code != 0 {
		t.Fatalf("version --client exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "version", r.stdout, "kubectl-mesh: v0.0.0-e2e", "istio libraries: istio.io/istio v0.0.0-20260827124520-eed52ebb66ad")
	if strings.Contains(r.stdout, "kubernetes:") {
		t.Fatalf("version --client printed server information:\n%s", r.stdout)
	}

	// Without --client an unreachable cluster is an error that says what to check.
	r = kubectl(t, noCluster, "mesh", "version")
	if r.code != 69 {
		t.Fatalf("version against a dead server: exit %d, want 69", r.code)
	}
	mustContain(t, "error", errorLine(t, r), "check that the cluster is running")
}

func TestVersionReportsClusterAndControlPlane(t *testing.T) {
	createNamespace(t, "istio-cp-version")
	istiod := writeFile(t, "istiod.yaml", istiodYAML("istio-cp-version"))
	if r := kubectl(t, nil, "apply", "-f", istiod); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := mesh(t, 0, "version", "-o", "json")
	var info struct {
		Plugin       string `json:"plugin"`
		Kubernetes   string `json:"kubernetes"`
		ControlPlane []struct{ Revision, Namespace, Version string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, r.stdout)
	}
	if info.Kubernetes != "v1.36.1" {
		t.Fatalf("kubernetes version %q, want the test apiserver's v1.36.1", info.Kubernetes)
	}
	found := false
	for _, cp := range info.ControlPlane {
		if cp.Revision == "1-31" && cp.Namespace == "istio-cp-version" && cp.Version == "1.31.0" {
			found = true
		}
	}
	if !found {
		t.Fatalf("control plane 1-31 not reported: %+v", info.ControlPlane)
	}
	r = mesh(t, 0, "version")
	mustContain(t, "version", r.stdout, "kubernetes: v1.36.1", "1-31", "istio-cp-version", "1.31.0")
}

const brokenVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: %s}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
`

func TestAnalyzeLiveFilesAndExitCodes(t *testing.T) {
	ns := "analyze-e2e"
	createNamespace(t, ns)
	kubectl(t, nil, "label", "namespace", ns, "istio-injection=enabled")

	// Clean namespace: no messages, exit 0, confirmation on stderr.
	r := mesh(t, 0, "analyze", "-n", ns)
	mustContain(t, "stderr", r.stderr, "No validation issues found when analyzing namespace: "+ns)

	// A what-if file with a dangling subset: IST0101 is an Error → exit 79.
	vs := writeFile(t, "vs.yaml", strings.ReplaceAll(brokenVS, "%s", ns))
	r = mesh(t, 79, "analyze", "-n", ns, vs)
	mustContain(t, "stdout", r.stdout, "IST0101", "VirtualService "+ns+"/reviews")

	// JSON output is machine-readable.
	r = mesh(t, 79, "analyze", "-n", ns, "-o", "json", vs)
	var msgs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &msgs); err != nil || len(msgs) == 0 || msgs[0]["code"] != "IST0101" {
		t.Fatalf("analyze -o json: %v %+v", err, msgs)
	}

	// Below the threshold the same findings do not fail the command.
	mesh(t, 0, "analyze", "-n", ns, "--failure-threshold", "Error", "-S", "IST0101=VirtualService "+ns+"/reviews", vs)

	// Files only.
	r = mesh(t, 79, "analyze", "--use-kube=false", vs)
	mustContain(t, "stdout", r.stdout, "IST0101")

	// A GitOps tree mixes kinds: what the analyzers do not read is skipped
	// with one line each, the rest of the same file is analyzed; -R walks
	// subdirectories.
	tree := t.TempDir()
	shop := filepath.Join(tree, "apps", "shop")
	if err := os.MkdirAll(shop, 0o755); err != nil {
		t.Fatal(err)
	}
	mixed := `apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: shop-tls, namespace: ` + ns + `}
spec: {secretName: shop-tls, dnsNames: [shop.example.com]}
---
` + strings.ReplaceAll(brokenVS, "%s", ns)
	if err := os.WriteFile(filepath.Join(shop, "all.yaml"), []byte(mixed), 0o600); err != nil {
		t.Fatal(err)
	}
	r = mesh(t, 65, "analyze", "--use-kube=false", tree)
	mustContain(t, "no -R", errorLine(t, r), "has no .yaml, .yml or .json files (add -R for its subdirectories)")
	r = mesh(t, 79, "analyze", "--use-kube=false", "-R", tree)
	mustContain(t, "mixed kinds", r.stdout, "IST0101", "VirtualService "+ns+"/reviews")
	mustContain(t, "skip line", r.stderr, `skipping Certificate "shop-tls" (cert-manager.io/v1) in `+filepath.Join(shop, "all.yaml")+": not a kind Istio's analyzers read")

	// istioctl's flags, with its meanings. The output threshold hides an
	// Info message (an unconventional port name) without changing the exit.
	svc := writeFile(t, "svc.yaml", `apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: `+ns+`}
spec: {selector: {app: ratings}, ports: [{name: foo, port: 9080}]}
`)
	mustKubectl(t, "apply", "-f", svc) // a file source does not read Services
	r = mesh(t, 0, "analyze", "-n", ns)
	mustContain(t, "info shown", r.stdout, "Info [IST0118]", "Service "+ns+"/ratings")
	r = mesh(t, 0, "analyze", "-n", ns, "--output-threshold", "Warning")
	if strings.Contains(r.stdout, "IST0118") {
		t.Fatalf("--output-threshold Warning still shows the Info message:\n%s", r.stdout)
	}
	r = mesh(t, 0, "analyze", "--list-analyzers")
	mustContain(t, "list", r.stdout, "* virtualservice.DestinationRuleAnalyzer:", "* service.PortNameAnalyzer:")
	// Only the port-name analyzer: the dangling subset is not looked for.
	r = mesh(t, 0, "analyze", "-n", ns, "--analyzer", "service.PortNameAnalyzer", vs)
	mustContain(t, "selected analyzer", r.stdout, "IST0118")
	if strings.Contains(r.stdout, "IST0101") {
		t.Fatalf("--analyzer service.PortNameAnalyzer ran the VirtualService analyzers:\n%s", r.stdout)
	}
	// A document that cannot be parsed: the rest is analyzed and the command
	// fails, unless --ignore-unknown.
	broken := writeFile(t, "broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n  spec: [\n")
	r = mesh(t, 65, "analyze", "-n", ns, broken)
	mustContain(t, "rest analyzed", r.stdout, "IST0118")
	mustContain(t, "parse line", r.stderr, "cannot parse: ", broken)
	mesh(t, 0, "analyze", "-n", ns, "--ignore-unknown", broken)
	mustKubectl(t, "delete", "-f", svc)

	// Analysis never writes: the file's object is not in the cluster.
	if r := kubectl(t, nil, "get", "virtualservice", "-n", ns, "reviews"); r.code == 0 {
		t.Fatal("analyze created the VirtualService")
	}
}

func TestAnalyzeWithoutIstioCRDs(t *testing.T) {
	bare := startEnv(t, testenv.Options{})
	r := kubectl(t, []string{"KUBECONFIG=" + bare.Kubeconfig}, "mesh", "analyze", "-A")
	if r.code != 69 {
		t.Fatalf("exit %d, want 69", r.code)
	}
	mustContain(t, "error", errorLine(t, r), "Istio CRDs are not installed")
	assertNoLeaks(t, r)
}

func TestMain_readmeCommandsAreDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "README.md", string(readme), "make install", "make test", "hack/sandbox.sh")
}

// TestAnalyzeRevisionMeshConfig: --revision analyzes with that control
// plane's mesh config (its istio-<rev> ConfigMap), which Istio's analyzer
// alone never reads; --meshConfigFile overrides it.
func TestAnalyzeRevisionMeshConfig(t *testing.T) {
	installFakeControlPlane(t)
	ns := "analyze-rev-e2e"
	createNamespace(t, ns)
	mustKubectl(t, "apply", "-f", writeFile(t, "mesh-1-31.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: istio-1-31, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: lightstep
      lightstep: {service: lightstep.monitoring.svc.cluster.local, port: 443, accessToken: fake}
`))
	t.Cleanup(func() { kubectl(t, nil, "delete", "configmap", "-n", "istio-system", "istio-1-31") })
	// Tracing through a provider only revision 1-31's mesh config defines.
	tel := writeFile(t, "telemetry.yaml", `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tracing, namespace: `+ns+`}
spec:
  tracing: [{providers: [{name: lightstep}]}]
`)
	r := mesh(t, 0, "analyze", "-n", ns, "--revision", "1-31", tel)
	mustContain(t, "revision's mesh config", r.stdout, "IST0002", "Telemetry "+ns+"/tracing", "Lightstep provider lightstep is deprecated")
	r = mesh(t, 0, "analyze", "-n", ns, tel)
	if strings.Contains(r.stdout, "Lightstep") {
		t.Fatalf("without --revision the default mesh config defines no lightstep provider, yet:\n%s", r.stdout)
	}
	empty := writeFile(t, "mesh.yaml", "defaultConfig: {}\n")
	r = mesh(t, 0, "analyze", "-n", ns, "--revision", "1-31", "--meshConfigFile", empty, tel)
	if strings.Contains(r.stdout, "Lightstep") {
		t.Fatalf("--meshConfigFile did not override the revision's mesh config:\n%s", r.stdout)
	}
}
