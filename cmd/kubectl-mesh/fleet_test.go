package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// The GitOps engines whose CRDs the generated objects must satisfy, from
// their own modules.
const (
	argoCDModule = "github.com/argoproj/argo-cd/v3@v3.5.0"
	fluxModule   = "github.com/fluxcd/kustomize-controller@v1.9.0"
)

// moduleFile is a file of a Go module (downloaded into the module cache).
func moduleFile(t *testing.T, module, file string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %s %v", module, m.Error, err)
	}
	return filepath.Join(m.Dir, file)
}

// fleetKubeconfig merges the test clusters' admin kubeconfigs into one with
// a context per cluster, plus "down" (nothing listens there) and
// "east-again" (east under another name).
func fleetKubeconfig(t *testing.T, envs map[string]*testenv.Env) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, e := range envs {
		one, err := clientcmd.LoadFromFile(e.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		c := one.Contexts[one.CurrentContext]
		cfg.Clusters[name] = one.Clusters[c.Cluster]
		cfg.AuthInfos[name] = one.AuthInfos[c.AuthInfo]
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.Clusters["down"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Contexts["down"] = &clientcmdapi.Context{Cluster: "down", AuthInfo: "east"}
	cfg.Contexts["east-again"] = &clientcmdapi.Context{Cluster: "east", AuthInfo: "east"}
	cfg.CurrentContext = "east"
	p := filepath.Join(t.TempDir(), "fleet.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFleet runs read-only commands and plans across three real control
// planes: one combined report per command with the worst exit code; a
// migrate-mtls layout that kustomize renders into exactly each cluster's
// plan, with an ApplicationSet and Flux Kustomizations the real CRDs
// accept; and a wave stopped by a failing cluster, leaving the clusters
// after it as they were.
func TestFleet(t *testing.T) {
	envs := map[string]*testenv.Env{}
	for _, name := range []string{"east", "west", "north"} {
		envs[name] = startEnv(t, testenv.Options{IstioCRDs: true})
	}
	kubeconfig := fleetKubeconfig(t, envs)
	on := []string{"KUBECONFIG=" + kubeconfig}
	run := func(t *testing.T, code int, args ...string) result {
		t.Helper()
		return meshOn(t, on, code, args...)
	}
	kc := func(t *testing.T, context string, args ...string) string {
		t.Helper()
		r := kubectl(t, on, append([]string{"--context", context}, args...)...)
		if r.code != 0 {
			t.Fatalf("kubectl --context %s %v: %s", context, args, r.stderr)
		}
		return r.stdout
	}
	for name := range envs {
		kc(t, name, "create", "namespace", "istio-system")
		kc(t, name, "apply", "-f", writeFile(t, "istiod.yaml", istiodYAML("istio-system")))
		kc(t, name, "create", "namespace", "shop")
		kc(t, name, "label", "namespace", "shop", "istio-injection=enabled")
	}
	// north already has a namespace policy of its own, so its plan differs.
	kc(t, "north", "apply", "-f", writeFile(t, "pa.yaml", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop, labels: {team: payments}}
spec: {mtls: {mode: UNSET}}
`))
	// west routes to a host that does not exist: an analysis error there only.
	kc(t, "west", "apply", "-f", writeFile(t, "vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop}
spec: {hosts: [shop.example.com], http: [{route: [{destination: {host: nowhere.shop.svc.cluster.local}}]}]}
`))

	t.Run("read-only", func(t *testing.T) {
		// One document keyed by context, each cluster's own status inside.
		r := run(t, 0, "status", "--context", "east,west,north", "-o", "json")
		var st map[string]struct {
			Server   string
			ExitCode int
			Result   struct{ Namespaces []struct{ Name, MTLS string } }
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, r.stdout)
		}
		for name, e := range envs {
			got := st[name]
			if got.Server != e.URL || got.ExitCode != 0 || len(got.Result.Namespaces) != 1 || got.Result.Namespaces[0].Name != "shop" {
				t.Errorf("status of %s: %+v", name, got)
			}
		}
		// A section and a row per cluster; the unreachable one is a row
		// with its error; the exit code is the worst (west's analysis
		// error, 79, over down's 69).
		r = run(t, 79, "analyze", "-A", "--context", "east,west,north,down")
		mustContain(t, "analyze", r.stdout, "=== west ("+envs["west"].URL+") ===", `Error [IST0101] (VirtualService shop/broken) Referenced host not found`,
			"=== down (https://127.0.0.1:1) ===", "CONTEXT  SERVER")
		rows := map[string]string{}
		for _, l := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(f[1], "https://") {
				rows[f[0]] = strings.Join(f[2:], " ")
			}
		}
		if rows["east"] != "ok" || rows["north"] != "ok" || !strings.HasPrefix(rows["west"], "analysis found 1 message(s) at or above Error") || !strings.HasPrefix(rows["down"], "cannot reach the Kubernetes API server at https://127.0.0.1:1") {
			t.Errorf("analyze rows: %q", rows)
		}
		if strings.Count(r.stdout, "IST0101") != 1 {
			t.Errorf("IST0101 is west's alone:\n%s", r.stdout)
		}
		// check's exit code across clusters is the worst of each cluster's.
		worst := 0
		for name := range envs {
			worst = max(worst, kubectl(t, on, "mesh", "check", "--context", name).code)
		}
		r = kubectl(t, on, "mesh", "check", "--context", "east,west,north")
		if r.code != worst {
			t.Errorf("check across clusters: exit %d, want the worst cluster's %d", r.code, worst)
		}
		mustContain(t, "check", r.stdout, "=== east (", "=== north (", "1 error(s): IST0101 VirtualService shop/broken")
		// canary status is read-only too: each cluster answers for itself.
		r = kubectl(t, on, "mesh", "canary", "status", "-n", "shop", "reviews", "--context", "east,west")
		mustContain(t, "canary status", r.stdout, "=== east (", "=== west (", "CONTEXT  SERVER")
		if r.code == 0 || strings.Contains(r.stdout+r.stderr, "works on one cluster") {
			t.Errorf("canary status of a Service without a canary: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, 0, "history", "--all-contexts", "-o", "yaml", "--kubeconfig", kubeconfigOf(t, envs))
		mustContain(t, "history", r.stdout, "east:\n", "north:\n", "west:\n", "exitCode: 0")
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"status", "--context", "east,nope"}, `unknown context "nope": kubectl config get-contexts lists`},
			{[]string{"status", "--context", "east,east-again"}, `contexts "east" and "east-again" are the same cluster`},
			{[]string{"version", "--context", "east,west"}, "works on one cluster: pass a single --context"},
			{[]string{"migrate-mtls", "-n", "shop", "--waves", "1,N"}, "--waves needs several clusters"},
			{[]string{"migrate-mtls", "-n", "shop", "--context", "east,west", "-o", "yaml"}, "write a layout with --output-dir DIR"},
			{[]string{"migrate-mtls", "-n", "shop", "--context", "east,west", "--waves", "0"}, `invalid --waves "0"`},
			{[]string{"migrate-mtls", "-n", "shop", "--context", "east,west", "--output-dir", t.TempDir() + "/x", "--gitops", "argocd"}, "--gitops argocd needs --gitops-repo"},
		} {
			r := run(t, 64, c.args...)
			mustContain(t, strings.Join(c.args, " "), errorLine(t, r), c.want)
		}
		// An unreachable cluster refuses the apply before any write.
		r := run(t, 69, "migrate-mtls", "-n", "shop", "--context", "east,down", "--yes")
		mustContain(t, "unreachable", errorLine(t, r), "context down (https://127.0.0.1:1) cannot be reached", "nothing was applied to any cluster")
		if out := kubectl(t, on, "--context", "east", "get", "peerauthentications", "-A", "-o", "name"); out.stdout != "" {
			t.Fatalf("east was changed: %s", out.stdout)
		}
	})

	t.Run("layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "mesh")
		r := run(t, 0, "migrate-mtls", "-n", "shop", "--context", "east,west,north", "--output-dir", dir, "--waves", "1,N",
			"--gitops", "argocd", "--gitops-repo", "https://git.example.com/platform/mesh.git", "--gitops-path", "deploy/mesh")
		mustContain(t, "summary", r.stderr, "north: note: stage 1 of 2", "CONTEXT  WAVE  OBJECTS  BLOCKED", "Wrote the layout for 3 clusters")
		fs := filesys.MakeFsOnDisk()
		for name := range envs {
			single := run(t, 0, "migrate-mtls", "-n", "shop", "--context", name, "-o", "json")
			var list struct{ Items []map[string]any }
			if err := json.Unmarshal([]byte(single.stdout), &list); err != nil {
				t.Fatal(err)
			}
			rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, filepath.Join(dir, "clusters", name))
			if err != nil {
				t.Fatalf("kustomize build clusters/%s: %v", name, err)
			}
			var got, want []string
			for _, res := range rm.Resources() {
				m, _ := res.Map()
				b, _ := json.Marshal(m)
				got = append(got, string(b))
			}
			for _, o := range list.Items {
				b, _ := json.Marshal(o)
				want = append(want, string(b))
			}
			sort.Strings(got)
			sort.Strings(want)
			if len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("kustomize build clusters/%s:\n%s\nwant (migrate-mtls --context %s -o json):\n%s", name, strings.Join(got, "\n"), name, strings.Join(want, "\n"))
			}
			var rep struct {
				Context string
				Wave    int
				Title   string
				Blocked []string
			}
			b, err := os.ReadFile(filepath.Join(dir, "clusters", name, "report.json"))
			if err == nil {
				err = json.Unmarshal(b, &rep)
			}
			if err != nil || rep.Context != name || rep.Title != "PERMISSIVE for namespace shop" || rep.Blocked == nil || rep.Wave != map[string]int{"east": 1, "west": 2, "north": 2}[name] {
				t.Errorf("clusters/%s/report.json = %+v (%v)", name, rep, err)
			}
		}
		// east and west plan the same policy: it is the base; north keeps
		// its team's label through a patch.
		if k, _ := os.ReadFile(filepath.Join(dir, "clusters", "north", "kustomization.yaml")); !strings.Contains(string(k), "payments") {
			t.Errorf("north's kustomization has no patch for its own policy:\n%s", k)
		}
		if k, _ := os.ReadFile(filepath.Join(dir, "clusters", "east", "kustomization.yaml")); strings.Contains(string(k), "patches") {
			t.Errorf("east plans the base but is patched:\n%s", k)
		}
		r = run(t, 64, "migrate-mtls", "-n", "shop", "--context", "east,west", "--output-dir", dir)
		mustContain(t, "non-empty dir", errorLine(t, r), "is not empty")

		// The GitOps objects are accepted by the real CRDs (server-side dry run).
		kc(t, "east", "apply", "--server-side", "-f", moduleFile(t, argoCDModule, "manifests/crds/applicationset-crd.yaml"),
			"-f", moduleFile(t, fluxModule, "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml"))
		waitFor(t, "the Argo CD and Flux CRDs", func() bool {
			return kubectl(t, on, "--context", "east", "wait", "--for=condition=Established", "crd/applicationsets.argoproj.io", "crd/kustomizations.kustomize.toolkit.fluxcd.io").code == 0
		})
		kc(t, "east", "create", "namespace", "argocd")
		kc(t, "east", "create", "namespace", "flux-system")
		out := kc(t, "east", "apply", "--dry-run=server", "-f", filepath.Join(dir, "argocd", "applicationset.yaml"), "-o", "json")
		mustContain(t, "ApplicationSet", out, `"type": "RollingSync"`, `"path": "deploy/mesh/clusters/*/report.json"`, `"values": [`, `".spec.http[].route[].weight"`)
		flux := filepath.Join(t.TempDir(), "flux")
		run(t, 0, "migrate-mtls", "-n", "shop", "--context", "east,west,north", "--output-dir", flux, "--waves", "1,N", "--gitops", "flux", "--gitops-path", "clusters-repo/mesh")
		out = kc(t, "east", "apply", "--dry-run=server", "-f", filepath.Join(flux, "flux", "kustomizations.yaml"), "-o", "json")
		mustContain(t, "Flux", out, `"name": "mesh-west"`, `"dependsOn": [`, `"path": "./clusters-repo/mesh/clusters/north"`)
	})

	t.Run("stdin", func(t *testing.T) {
		// -f - is read once and every cluster plans the same manifests.
		r := kubectlIn(t, on, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fleet-probe, namespace: shop}\ndata: {a: b}\n",
			"mesh", "apply", "-f", "-", "--context", "east,west", "--dry-run=server")
		if r.code != 1 {
			t.Fatalf("apply -f - --dry-run=server on two clusters: exit %d, want 1 (changes)\n%s", r.code, r.stderr)
		}
		assertNoLeaks(t, r)
		mustContain(t, "dry run", r.stderr, "=== wave 1: east (", "=== wave 2: west (", "changes (dry run)")
		if n := strings.Count(r.stderr, "+++ planned/ConfigMap/fleet-probe -n shop"); n != 2 {
			t.Errorf("the ConfigMap is planned %d times, want once per cluster:\n%s", n, r.stderr)
		}
	})

	t.Run("waves", func(t *testing.T) {
		// west refuses PeerAuthentications: its wave fails, north's never starts.
		kc(t, "west", "apply", "-f", writeFile(t, "vap.yaml", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: frozen}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [security.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [peerauthentications]}
  validations:
  - {expression: "false", message: PeerAuthentications are frozen in this cluster}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: frozen}
spec: {policyName: frozen, validationActions: [Deny]}
`))
		waitFor(t, "the admission policy to be enforced", func() bool {
			r := kubectl(t, on, "--context", "west", "create", "--dry-run=server", "-f", writeFile(t, "probe.yaml", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: probe, namespace: shop}
`))
			return strings.Contains(r.stderr, "frozen")
		})
		north := kc(t, "north", "get", "peerauthentication", "default", "-n", "shop", "-o", "jsonpath={.spec.mtls.mode}")
		r := kubectl(t, on, "mesh", "migrate-mtls", "-n", "shop", "--context", "east,west,north", "--waves", "1,1,N", "--yes")
		if r.code == 0 {
			t.Fatalf("a failing cluster did not fail the command:\n%s", r.stderr)
		}
		assertNoLeaks(t, r)
		mustContain(t, "waves", r.stderr, "=== wave 1: east (", "=== wave 2: west (", "PeerAuthentications are frozen", "Stopped after wave 2: 1 cluster(s) were not started.")
		if strings.Contains(r.stderr, "=== wave 3") {
			t.Fatalf("wave 3 ran after wave 2 failed:\n%s", r.stderr)
		}
		var undo string
		for _, l := range strings.Split(r.stderr, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "east" {
				if i := strings.Index(l, "kubectl mesh undo "); i >= 0 {
					undo = l[i:]
				}
			}
			if f := strings.Fields(l); len(f) > 2 && f[0] == "north" && f[2] != "not" {
				t.Errorf("north's row: %q", l)
			}
		}
		if !strings.HasSuffix(undo, "--context east") {
			t.Fatalf("no undo command for east in:\n%s", r.stderr)
		}
		if got := kc(t, "east", "get", "peerauthentication", "default", "-n", "shop", "-o", "jsonpath={.spec.mtls.mode}"); got != "PERMISSIVE" {
			t.Errorf("east after its wave: %q, want PERMISSIVE", got)
		}
		if got := kc(t, "north", "get", "peerauthentication", "default", "-n", "shop", "-o", "jsonpath={.spec.mtls.mode}"); got != north {
			t.Errorf("north changed from %q to %q though its wave never started", north, got)
		}
		// The printed undo command works.
		run(t, 0, append(strings.Fields(strings.TrimPrefix(undo, "kubectl mesh ")), "--yes")...)
		if r := kubectl(t, on, "--context", "east", "get", "peerauthentication", "default", "-n", "shop"); r.code == 0 {
			t.Errorf("east's policy is still there after the undo")
		}
	})
}

// kubeconfigOf writes a kubeconfig with only the three clusters (no
// unreachable or duplicate context), for --all-contexts.
func kubeconfigOf(t *testing.T, envs map[string]*testenv.Env) string {
	t.Helper()
	p := fleetKubeconfig(t, envs)
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	delete(cfg.Contexts, "down")
	delete(cfg.Contexts, "east-again")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}
