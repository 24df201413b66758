package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
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
	return runOnTerminalFunc(t, waitFor, func() string { return keys }, args...)
}

// runOnTerminalFunc is runOnTerminal with the keys computed when the prompt
// shows (so a test can act at exactly that moment).
func runOnTerminalFunc(t *testing.T, waitFor string, keys func() string, args ...string) (string, int) {
	t.Helper()
	return runOnTerminalSteps(t, []termStep{{waitFor, keys}}, args...)
}

// termStep types keys once the screen shows waitFor (after the previous step).
type termStep struct {
	waitFor string
	keys    func() string
}

func typeKeys(s string) func() string { return func() string { return s } }

// runOnTerminalSteps runs `kubectl args…` on a pseudo-terminal, acting as
// the terminal (answering cursor-position queries) and answering each
// prompt in turn.
func runOnTerminalSteps(t *testing.T, steps []termStep, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "KUBECONFIG="+env.Kubeconfig, "NO_COLOR=1", "TERM=xterm")
	// A long diff is paged on a terminal; nobody presses q here (a test
	// that checks the paging sets its own pager).
	if os.Getenv("KUBECTL_MESH_PAGER") == "" {
		cmd.Env = append(cmd.Env, "KUBECTL_MESH_PAGER=cat")
	}
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	next, seen := 0, 0 // next step; screen offset after the last answer
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
			if next < len(steps) && strings.Contains(screen.String()[seen:], steps[next].waitFor) {
				step := steps[next]
				next, seen = next+1, screen.Len()
				go func() { time.Sleep(100 * time.Millisecond); _, _ = ptmx.Write([]byte(step.keys())) }()
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

	screen, code := runOnTerminal(t, "(y/N)", "\x03", "mesh", "apply", "-f", f)
	if code != 130 || !strings.Contains(screen, "nothing was changed") {
		t.Fatalf("Ctrl-C at the confirmation: exit %d", code)
	}
	if object(t, ns, "configmap", "settings") != nil {
		t.Fatal("Ctrl-C at the confirmation still applied")
	}

	screen, code = runOnTerminal(t, "(y/N)", "n\r", "mesh", "apply", "-f", f)
	if code != 1 || !strings.Contains(screen, "not confirmed") || object(t, ns, "configmap", "settings") != nil {
		t.Fatalf("answering no: exit %d", code)
	}

	screen, code = runOnTerminal(t, "(y/N)", "y\r", "mesh", "apply", "-f", f)
	if code != 0 || !strings.Contains(screen, "Applied change set") {
		t.Fatalf("answering yes: exit %d", code)
	}
	if object(t, ns, "configmap", "settings") == nil {
		t.Fatal("confirmed apply did not write")
	}
}

// TestAcceptOnTerminal: a blocking finding is a question on a terminal,
// as --accept ID is a flag: "no" blocks with nothing changed, "yes" goes on
// to the confirmation and records the acceptance in the change set. undo
// without an ID asks which change set.
func TestAcceptOnTerminal(t *testing.T) {
	ns := "accept-tty"
	createNamespace(t, ns)
	vs := writeFile(t, "vs.yaml", strings.ReplaceAll(brokenVS, "%s", ns)) // IST0101: an Error
	// An earlier change set, so that undo has a choice to ask about.
	mesh(t, 0, "apply", "--yes", "-f", writeFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: earlier, namespace: "+ns+"}\n"))

	screen, code := runOnTerminal(t, "Accept finding IST0101", "n\r", "mesh", "apply", "-f", vs)
	if code != 79 || !strings.Contains(screen, "accept one with --accept ID") || object(t, ns, "virtualservice", "reviews") != nil {
		t.Fatalf("declining the finding: exit %d", code)
	}
	screen, code = runOnTerminalSteps(t, []termStep{
		{"Accept finding IST0101", typeKeys("y\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "apply", "-f", vs)
	if code != 0 || object(t, ns, "virtualservice", "reviews") == nil {
		t.Fatalf("accepting the finding: exit %d, or nothing applied", code)
	}
	id := regexp.MustCompile(`cs-[0-9a-z-]+`).FindString(screen[strings.Index(screen, "Applied change set"):])
	r := mesh(t, 0, "history", id)
	mustContain(t, "journal", r.stdout, "Accepted: IST0101")
	// undo without an ID asks which change set, the latest first.
	screen, code = runOnTerminalSteps(t, []termStep{
		{"Change set to undo", typeKeys("\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "undo")
	if code != 0 || !strings.Contains(screen, "Undoing "+id) || object(t, ns, "virtualservice", "reviews") != nil || object(t, ns, "configmap", "earlier") == nil {
		t.Fatalf("undo on a terminal: exit %d, or %s not undone", code, id)
	}
	// Without a terminal the same finding still blocks.
	mesh(t, 79, "apply", "-f", writeFile(t, "vs2.yaml", strings.ReplaceAll(strings.ReplaceAll(brokenVS, "%s", ns), "name: reviews", "name: reviews-2")))
}

// TestConcurrentEditBetweenDiffAndApply: someone edits the object while the
// user reads the diff; confirming then refuses to overwrite the edit.
func TestConcurrentEditBetweenDiffAndApply(t *testing.T) {
	ns := "concurrent-edit"
	createNamespace(t, ns)
	mustKubectl(t, "create", "configmap", "settings", "-n", ns, "--from-literal=a=1")
	f := writeFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: concurrent-edit}\ndata: {a: \"2\"}\n")
	// The "key" sent at the prompt is preceded by a teammate's edit.
	waitFor := "(y/N)"
	editedAndYes := func() string {
		// Runs on the terminal's goroutine: report, do not FailNow.
		if r := kubectl(t, nil, "label", "configmap", "settings", "-n", ns, "edited-by=teammate"); r.code != 0 {
			t.Errorf("label: %s", r.stderr)
		}
		return "y\r"
	}
	screen, code := runOnTerminalFunc(t, waitFor, editedAndYes, "mesh", "apply", "-f", f, "--force-conflicts")
	if code != 1 || !strings.Contains(screen, "was changed by someone else after the diff was shown") {
		t.Fatalf("concurrent edit: exit %d", code)
	}
	cm := object(t, ns, "configmap", "settings")
	if cm["data"].(map[string]any)["a"] != "1" || cm["metadata"].(map[string]any)["labels"].(map[string]any)["edited-by"] != "teammate" {
		t.Fatalf("the teammate's edit was overwritten: %v", cm)
	}
}
