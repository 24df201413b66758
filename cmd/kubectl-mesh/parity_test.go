package main

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestAnalyzeParityWithIstioctl runs `kubectl mesh analyze` and istioctl
// analyze, built from the same istio module, side by side on every fixture
// of Istio's own analyzer tests, each with the mesh config its test case
// uses, and requires the same message set (our own KM lint codes aside) and
// the same verdict on whether every document could be parsed.
func TestAnalyzeParityWithIstioctl(t *testing.T) {
	istioctl := filepath.Join(binDir, "istioctl")
	if _, err := os.Stat(istioctl); err != nil {
		t.Fatalf("istioctl missing in %s: run hack/build-tools.sh (the README's test command does)", binDir)
	}
	pkg := filepath.Join(istioModuleDir(t), "pkg", "config", "analysis", "analyzers")
	meshConfigs := fixtureMeshConfigs(t, filepath.Join(pkg, "analyzers_test.go"))

	var fixtures []string
	if err := filepath.WalkDir(filepath.Join(pkg, "testdata"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") && !slices.Contains(meshConfigs, path) {
			fixtures = append(fixtures, path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(fixtures) < 100 {
		t.Fatalf("found %d fixtures in %s, expected Istio's 100+", len(fixtures), pkg)
	}
	byFile := fixtureMeshConfigByFile(t, filepath.Join(pkg, "analyzers_test.go"), pkg)

	var messages, withMeshConfig atomic.Int64
	t.Run("fixtures", func(t *testing.T) {
		for _, f := range fixtures {
			rel, _ := filepath.Rel(filepath.Join(pkg, "testdata"), f)
			t.Run(rel, func(t *testing.T) {
				t.Parallel()
				args := []string{"analyze", "-A", "--use-kube=false", "-o", "json"}
				if mc := byFile[f]; mc != "" {
					args = append(args, "--meshConfigFile", mc)
					withMeshConfig.Add(1)
				}
				args = append(args, f)
				theirs, theirErr := analyzeJSON(t, istioctl, args)
				ours, ourErr := analyzeJSON(t, meshBin, args)
				// Our own lint (KM codes) comes on top of Istio's messages.
				ours = slices.DeleteFunc(ours, func(m string) bool { return strings.HasPrefix(m, "KM") })
				// A few analyzers word a message from a map's iteration order
				// (which pair conflicts first, which unknown field): ours must
				// be a set istioctl itself produces on some run, or, where
				// twenty runs do not meet it, equal to istioctl's but for
				// those messages' wording (as in the live parity test).
				for try := 0; try < 20 && !slices.Equal(theirs, ours); try++ {
					theirs, theirErr = analyzeJSON(t, istioctl, args)
				}
				if !slices.Equal(theirs, ours) && !slices.Equal(orderFree(theirs), orderFree(ours)) {
					t.Errorf("message sets differ\nistioctl:\n  %s\nkubectl mesh:\n  %s", strings.Join(theirs, "\n  "), strings.Join(ours, "\n  "))
				}
				theyFailedParse := strings.Contains(theirErr, "Error(s) adding files")
				weFailedParse := strings.Contains(ourErr, "cannot parse:")
				if theyFailedParse != weFailedParse {
					t.Errorf("parse verdicts differ: istioctl %v (%q), kubectl mesh %v (%q)", theyFailedParse, theirErr, weFailedParse, ourErr)
				}
				messages.Add(int64(len(ours)))
			})
		}
	})
	// The comparison is only worth something if the fixtures produce findings
	// and the mesh-config cases were really run with their mesh config.
	if messages.Load() < 100 || withMeshConfig.Load() == 0 {
		t.Fatalf("only %d messages over %d fixtures, %d with a mesh config: the comparison compared nothing", messages.Load(), len(fixtures), withMeshConfig.Load())
	}
	t.Logf("%d fixtures, %d messages, %d run with their test case's mesh config", len(fixtures), messages.Load(), withMeshConfig.Load())
}

// analyzeJSON runs an analyze and returns its messages as sorted
// "CODE level origin: message" lines, and its stderr.
func analyzeJSON(t *testing.T, bin string, args []string) ([]string, string) {
	t.Helper()
	return analyzeJSONOn(t, env.Kubeconfig, bin, args)
}

// analyzeJSONOn is analyzeJSON against the cluster of kubeconfig.
func analyzeJSONOn(t *testing.T, kubeconfig, bin string, args []string) ([]string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+kubeconfig)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v", bin, err)
	}
	// istioctl's logger writes warnings (a skipped document, a deprecated
	// mesh-config field) to stdout too, some over several lines: keep the
	// JSON array.
	lines := strings.Split(string(out), "\n")
	first, last := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "[") }), -1
	for i, l := range lines {
		if strings.HasPrefix(l, "]") || (i == first && strings.HasSuffix(l, "]")) {
			last = i
		}
	}
	kept := []string{}
	if first >= 0 && last >= first {
		kept = lines[first : last+1]
	}
	var msgs []struct{ Code, Level, Origin, Message string }
	if text := strings.TrimSpace(strings.Join(kept, "\n")); text != "" {
		if err := json.Unmarshal([]byte(text), &msgs); err != nil {
			t.Fatalf("%s %v: not JSON (%v): %s\nstderr: %s", bin, args, err, out, stderr.String())
		}
	}
	set := make([]string, 0, len(msgs))
	for _, m := range msgs {
		set = append(set, m.Code+" "+m.Level+" "+m.Origin+": "+m.Message)
	}
	slices.Sort(set)
	return set, stderr.String()
}

// fixtureCases reads the test table of Istio's analyzers_test.go: each
// case's inputFiles and meshConfigFile, paths relative to the package.
func fixtureCases(t *testing.T, testFile string) (cases []struct {
	inputs     []string
	meshConfig string
}) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), testFile, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", testFile, err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var inputs []string
		mc := ""
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			switch key, _ := kv.Key.(*ast.Ident); {
			case key == nil:
			case key.Name == "inputFiles":
				if list, ok := kv.Value.(*ast.CompositeLit); ok {
					for _, v := range list.Elts {
						if s, ok := v.(*ast.BasicLit); ok {
							p, _ := strconv.Unquote(s.Value)
							inputs = append(inputs, p)
						}
					}
				}
			case key.Name == "meshConfigFile":
				if s, ok := kv.Value.(*ast.BasicLit); ok {
					mc, _ = strconv.Unquote(s.Value)
				}
			}
		}
		if len(inputs) > 0 {
			cases = append(cases, struct {
				inputs     []string
				meshConfig string
			}{inputs, mc})
		}
		return true
	})
	if len(cases) < 50 {
		t.Fatalf("read %d test cases from %s: its table's shape changed", len(cases), testFile)
	}
	return cases
}

// fixtureMeshConfigs are the mesh-config files the test cases use (inputs
// to --meshConfigFile, not fixtures of their own).
func fixtureMeshConfigs(t *testing.T, testFile string) []string {
	var out []string
	for _, c := range fixtureCases(t, testFile) {
		if c.meshConfig != "" {
			out = append(out, filepath.Join(filepath.Dir(testFile), c.meshConfig))
		}
	}
	return out
}

// fixtureMeshConfigByFile maps a fixture to the mesh config of a test case
// that reads it.
func fixtureMeshConfigByFile(t *testing.T, testFile, pkg string) map[string]string {
	out := map[string]string{}
	for _, c := range fixtureCases(t, testFile) {
		for _, in := range c.inputs {
			if c.meshConfig != "" {
				out[filepath.Join(pkg, in)] = filepath.Join(pkg, c.meshConfig)
			}
		}
	}
	return out
}

// istioModuleDir is the pinned istio.io/istio module's source, for its
// fixtures and samples.
func istioModuleDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil {
		t.Fatalf("go list istio.io/istio: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestAnalyzeLiveParityWithIstioctl loads every fixture of Istio's analyzer
// tests into a real API server and requires `kubectl mesh analyze` and
// istioctl analyze to report the same messages on that cluster: the
// snapshot our analyzers read must hold what istioctl's informers hold.
func TestAnalyzeLiveParityWithIstioctl(t *testing.T) {
	istioctl := filepath.Join(binDir, "istioctl")
	live := startEnv(t, testenv.Options{IstioCRDs: true, GatewayAPICRDs: true})
	pkg := filepath.Join(istioModuleDir(t), "pkg", "config", "analysis", "analyzers")
	objs := fixtureObjects(t, filepath.Join(pkg, "testdata"))
	// What the live source filters out, which no fixture has: another
	// revision's config, and a namespace injection ignores. Each would be
	// a finding if it were read.
	for _, doc := range []string{
		`{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: canary-only, namespace: default, labels: {istio.io/rev: canary}}, spec: {hosts: [canary-only], http: [{route: [{destination: {host: nowhere-canary}}]}]}}`,
		`{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: default-rev, namespace: default, labels: {istio.io/rev: default}}, spec: {hosts: [default-rev], http: [{route: [{destination: {host: nowhere-default}}]}]}}`,
		`{apiVersion: v1, kind: Service, metadata: {name: ignored, namespace: kube-system}, spec: {selector: {app: x}, ports: [{name: foo, port: 9080}]}}`,
	} {
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, u)
	}
	loaded := loadObjects(t, live, objs)
	if loaded < 300 {
		t.Fatalf("loaded %d of %d fixture objects: the comparison would compare little", loaded, len(objs))
	}
	for _, args := range [][]string{
		{"analyze", "-A", "-o", "json"},
		{"analyze", "-n", "default", "-o", "json"},
	} {
		theirs, theirErr := analyzeJSONOn(t, live.Kubeconfig, istioctl, args)
		ours, ourErr := analyzeJSONOn(t, live.Kubeconfig, meshBin, args)
		ours = slices.DeleteFunc(ours, func(m string) bool { return strings.HasPrefix(m, "KM") })
		theirs, ours = orderFree(theirs), orderFree(ours)
		for try := 0; try < 20 && !slices.Equal(theirs, ours); try++ {
			theirs, theirErr = analyzeJSONOn(t, live.Kubeconfig, istioctl, args)
			theirs = orderFree(theirs)
		}
		if !slices.Equal(theirs, ours) {
			t.Errorf("%v: messages differ (%d from istioctl, %d from kubectl mesh)\nonly istioctl:\n  %s\nonly kubectl mesh:\n  %s\nstderr: %s", args, len(theirs), len(ours),
				strings.Join(minus(theirs, ours), "\n  "), strings.Join(minus(ours, theirs), "\n  "), ourErr)
			continue
		}
		if args[1] == "-A" && (!slices.ContainsFunc(ours, func(m string) bool { return strings.Contains(m, "nowhere-default") }) ||
			slices.ContainsFunc(ours, func(m string) bool {
				return strings.Contains(m, "nowhere-canary") || strings.Contains(m, "kube-system/ignored")
			})) {
			t.Errorf("%v: the default revision's VirtualService must be analyzed, the canary's and kube-system's Service not:\n  %s", args, strings.Join(ours, "\n  "))
		}
		if len(theirs) < 20 {
			t.Errorf("%v: istioctl found only %d messages on %d objects: the comparison compared little (stderr: %s)", args, len(theirs), loaded, theirErr)
		}
		t.Logf("%v: %d messages on %d objects, the same from both", args, len(ours), loaded)
	}
}

// orderDependent are the codes whose message depends on the order the
// analyzer meets objects in, which is a map's in both tools: which
// VirtualServices or Gateways a conflict lists, which unknown EnvoyFilter
// field is named first, whether an EnvoyFilter seen after another of
// its name is IST0151 or IST0155, and the order IST0175 lists
// RequestAuthentications in.
var orderDependent = map[string]string{"IST0109": "IST0109", "IST0133": "IST0133", "IST0145": "IST0145", "IST0151": "IST0151/5", "IST0155": "IST0151/5", "IST0175": "IST0175"}

// orderFree keeps only the code (family), level and subject of the
// order-dependent messages, and sorts again.
func orderFree(msgs []string) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		code, rest, _ := strings.Cut(m, " ")
		if fam, ok := orderDependent[code]; ok {
			subject, _, _ := strings.Cut(rest, ": ")
			m = fam + " " + subject + ": (order-dependent text)"
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// minus is a without b, counting repeats: a message twice in a and once
// in b is once in the result.
func minus(a, b []string) []string {
	left := map[string]int{}
	for _, s := range b {
		left[s]++
	}
	var out []string
	for _, s := range a {
		if left[s] > 0 {
			left[s]--
			continue
		}
		out = append(out, s)
	}
	return out
}

// fixtureObjects reads every document of the fixtures that decodes as an
// object; the fixtures' deliberately broken documents are left out.
func fixtureObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(b), "\n---") {
			u := &unstructured.Unstructured{}
			if err := sigsyaml.Unmarshal([]byte(doc), &u.Object); err != nil || u.Object == nil || u.GetKind() == "" || u.GetName() == "" {
				continue
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// loadObjects creates the objects the API server accepts (the rest are
// invalid by design or of kinds it does not serve), namespaces first and
// webhook configurations last, so no webhook sees the others' creation.
func loadObjects(t *testing.T, e *testenv.Env, objs []*unstructured.Unstructured) int {
	t.Helper()
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	rank := func(u *unstructured.Unstructured) int {
		switch u.GetKind() {
		case "Namespace":
			return 0
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			return 2
		}
		return 1
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return rank(a) - rank(b) })
	cfg := rest.CopyConfig(e.Config)
	cfg.WarningHandler = rest.NoWarnings{} // the fixtures' unknown fields are theirs
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	namespaces := map[string]bool{}
	loaded := 0
	for _, u := range objs {
		if u.GetKind() == "Secret" && u.GetLabels()["istio/multiCluster"] == "true" {
			// istioctl analyzes the clusters a remote secret names; these
			// name none that answer, and kubectl mesh analyzes one cluster.
			continue
		}
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			continue
		}
		r := dyn.Resource(m.Resource)
		var ri dynamic.ResourceInterface = r
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			u.SetNamespace(ns)
			if !namespaces[ns] {
				namespaces[ns] = true
				_, _ = e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			}
			ri = r.Namespace(ns)
		}
		u.SetResourceVersion("")
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err == nil {
			loaded++
		}
	}
	return loaded
}
