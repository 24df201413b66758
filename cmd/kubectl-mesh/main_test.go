package main

// End-to-end tests: the real kubectl-mesh binary, dispatched by a real
// kubectl as `kubectl mesh …`, against a real etcd + kube-apiserver (with
// controller manager, scheduler and a kwok node) started by plugin/testenv.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

var (
	env     *testenv.Env
	pathEnv string // PATH with the plugin and kubectl first
	binDir  string // the tools hack/build-tools.sh built
	meshBin string // the kubectl-mesh binary under test
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bin, err := testenv.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	plugins, err := os.MkdirTemp("", "kubectl-mesh-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(plugins)
	build := exec.Command("go", "build", "-o", filepath.Join(plugins, "kubectl-mesh"),
		"-ldflags", "-X github.com/kubectl-mesh/kubectl-mesh/plugin/cli.Version=v0.0.0-e2e", ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kubectl-mesh:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(bin, "kubectl")); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl missing: run hack/build-tools.sh (the README's test command does)")
		return 1
	}
	binDir, meshBin = bin, filepath.Join(plugins, "kubectl-mesh")
	pathEnv = plugins + string(os.PathListSeparator) + bin + string(os.PathListSeparator) + os.Getenv("PATH")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err = testenv.Start(ctx, testenv.Options{Nodes: true, IstioCRDs: true, GatewayAPICRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	return m.Run()
}

type result struct {
	stdout, stderr string
	code           int
}

// kubectl runs `kubectl args…` with the admin kubeconfig unless extraEnv
// sets KUBECONFIG, and stdin closed (no terminal).
func kubectl(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	return kubectlIn(t, extraEnv, "", args...)
}

func kubectlIn(t *testing.T, extraEnv []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+env.Kubeconfig, "NO_COLOR=1")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kubectl %v: %v", args, err)
	}
	r := result{out.String(), errb.String(), code}
	t.Logf("$ kubectl %s  → exit %d\n%s%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// mesh runs `kubectl mesh args…` and fails the test on an unexpected exit code.
func mesh(t *testing.T, wantCode int, args ...string) result {
	t.Helper()
	return meshOn(t, nil, wantCode, args...)
}

// meshOn is mesh with extraEnv (another KUBECONFIG).
func meshOn(t *testing.T, extraEnv []string, wantCode int, args ...string) result {
	t.Helper()
	r := kubectl(t, extraEnv, append([]string{"mesh"}, args...)...)
	if r.code != wantCode {
		t.Fatalf("kubectl mesh %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
	}
	assertNoLeaks(t, r)
	return r
}

// assertNoLeaks checks that nothing but our own output reached the user:
// no panics or stack traces, no Istio or klog log lines.
func assertNoLeaks(t *testing.T, r result) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "\tinfo\t", "\twarn\t", "\terror\t", ".go:"} {
		if strings.Contains(r.stderr, bad) || strings.Contains(r.stdout, bad) {
			t.Fatalf("output leaks %q:\nstdout:\n%s\nstderr:\n%s", bad, r.stdout, r.stderr)
		}
	}
}

// errorLine returns the single "error: …" line of stderr, failing if there
// is not exactly one.
func errorLine(t *testing.T, r result) string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "error: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("want exactly one error line, got %d:\n%s", len(lines), r.stderr)
	}
	return lines[0]
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// createNamespace creates a fresh namespace for one test.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	if r := kubectl(t, nil, "create", "namespace", name); r.code != 0 {
		t.Fatalf("create namespace %s: %s", name, r.stderr)
	}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}
