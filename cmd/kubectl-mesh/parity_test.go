package main

import (
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
				// be a set istioctl itself produces on some run.
				for try := 0; try < 20 && !slices.Equal(theirs, ours); try++ {
					theirs, theirErr = analyzeJSON(t, istioctl, args)
				}
				if !slices.Equal(theirs, ours) {
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
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+env.Kubeconfig)
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
