package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestInterruptDuringRestartSequence: Ctrl-C (SIGINT) while the first
// restart waits for its rollout stops cleanly: exit 130, the change set is
// marked interrupted with how to resume or undo, the next workload is not
// touched, and undo restores.
func TestInterruptDuringRestartSequence(t *testing.T) {
	installFakeControlPlane(t)
	ns := "interrupt-e2e"
	createNamespace(t, ns)
	stuck := strings.Replace(deployment(ns, "a-stuck", ""), "    spec:\n", "    spec:\n      nodeSelector: {no-such-node: \"true\"}\n", 1)
	if r := kubectl(t, nil, "apply", "-f", writeFile(t, "w.yaml", stuck+"---\n"+deployment(ns, "b-ok", ""))); r.code != 0 {
		t.Fatal(r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", "mesh", "inject", "-n", ns, "--revision", "1-31", "--restart", "--yes", "--timeout", "60s")
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+env.Kubeconfig, "NO_COLOR=1")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "Verifying: Deployment/a-stuck") {
		if ctx.Err() != nil {
			t.Fatalf("never started waiting:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// kubectl execs the plugin, so the signal reaches kubectl-mesh itself.
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130:\n%s", err, out.String())
	}
	mustContain(t, "output", out.String(), "interrupted while verifying after 2 of 3 change(s)", "kubectl mesh undo cs-", "re-run the command to finish")
	cs := lastChangeSet(t)
	if cs["status"] != "interrupted" {
		t.Fatalf("change set status %v, want interrupted", cs["status"])
	}
	if templateAnnotations(t, ns, "b-ok")["kubectl.kubernetes.io/restartedAt"] != nil {
		t.Fatal("the sequence went on after Ctrl-C")
	}
	mesh(t, 0, "undo", cs["id"].(string), "--yes")
	if l := labelsOf(t, "namespace", "", ns); l["istio.io/rev"] != nil {
		t.Fatalf("undo after interrupt left labels: %v", l)
	}
}

// startUntil starts `kubectl args…` in the background and returns once its
// output contains marker (the moment a test interferes).
func startUntil(ctx context.Context, t *testing.T, kubeconfig, marker string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+kubeconfig, "NO_COLOR=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), marker) {
		if ctx.Err() != nil {
			t.Fatalf("never reached %q:\n%s", marker, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, out
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInterruptDuringApply: Ctrl-C in the middle of writing 300 objects
// stops between two writes: exit 130, the change set says how far it got
// and is marked interrupted, and undo removes exactly what was created.
func TestInterruptDuringApply(t *testing.T) {
	ns := "interrupt-apply"
	createNamespace(t, ns)
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d, namespace: %s}\ndata: {i: \"%d\"}\n", i, ns, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, out := startUntil(ctx, t, env.Kubeconfig, "ConfigMap/cm-010 -n "+ns+" created", "mesh", "apply", "-f", writeFile(t, "many.yaml", b.String()), "--yes")
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130:\n%s", err, out.String())
	}
	mustContain(t, "output", out.String(), "interrupted after", "of 300 change(s)", "kubectl mesh undo cs-")
	cs := lastChangeSet(t)
	if cs["status"] != "interrupted" {
		t.Fatalf("change set status %v, want interrupted", cs["status"])
	}
	count := func() int {
		r := kubectl(t, nil, "get", "configmaps", "-n", ns, "-l", "app.kubernetes.io/managed-by=kubectl-mesh", "-o", "name")
		return len(strings.Fields(r.stdout))
	}
	if n := count(); n < 11 || n >= 300 {
		t.Fatalf("%d ConfigMaps exist after the interrupt; want the ones written before it", n)
	}
	mesh(t, 0, "undo", cs["id"].(string), "--yes")
	if n := count(); n != 0 {
		t.Fatalf("undo left %d ConfigMaps", n)
	}
}
