package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// runOnTerminal runs `kubectl args…` on a pseudo-terminal, acting as the
// terminal (answering cursor-position queries) and typing keys once the
// screen shows waitFor.
func runOnTerminal(t *testing.T, waitFor, keys string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+env.Kubeconfig, "NO_COLOR=1", "TERM=xterm")
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	typed := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			chunk := string(buf[:n])
			mu.Lock()
			screen.WriteString(chunk)
			for range strings.Count(chunk, "\x1b[6n") {
				_, _ = ptmx.Write([]byte("\x1b[1;1R"))
			}
			if !typed && strings.Contains(screen.String(), waitFor) {
				typed = true
				go func() { time.Sleep(100 * time.Millisecond); _, _ = ptmx.Write([]byte(keys)) }()
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	<-done
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("terminal (exit %d):\n%s", code, screen.String())
	return screen.String(), code
}

// TestConfirmOnTerminal: on a terminal the engine asks before applying;
// "y" applies, Ctrl-C stops with nothing changed.
func TestConfirmOnTerminal(t *testing.T) {
	ns := "confirm-tty"
	createNamespace(t, ns)
	f := writeFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: confirm-tty}\ndata: {a: \"1\"}\n")

	screen, code := runOnTerminal(t, "Apply these", "\x03", "mesh", "apply", "-f", f)
	if code != 130 || !strings.Contains(screen, "nothing was changed") {
		t.Fatalf("Ctrl-C at the confirmation: exit %d", code)
	}
	if object(t, ns, "configmap", "settings") != nil {
		t.Fatal("Ctrl-C at the confirmation still applied")
	}

	screen, code = runOnTerminal(t, "Apply these", "n\r", "mesh", "apply", "-f", f)
	if code != 1 || !strings.Contains(screen, "not confirmed") || object(t, ns, "configmap", "settings") != nil {
		t.Fatalf("answering no: exit %d", code)
	}

	screen, code = runOnTerminal(t, "Apply these", "y\r", "mesh", "apply", "-f", f)
	if code != 0 || !strings.Contains(screen, "Applied change set") {
		t.Fatalf("answering yes: exit %d", code)
	}
	if object(t, ns, "configmap", "settings") == nil {
		t.Fatal("confirmed apply did not write")
	}
}
