package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli/clitest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"ok", Options{Files: []string{"a.yaml"}, Timeout: time.Minute}, ""},
		{"no files", Options{Timeout: time.Minute}, "no manifests given"},
		{"zero timeout", Options{Files: []string{"a.yaml"}}, "--timeout must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCompletePromptsOnlyForMissingFiles(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(f, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	streams, _, _, _ := genericiooptions.NewTestIOStreams()

	// No -f on a terminal: asked once.
	c := cli.New(streams)
	m := &prompt.Mock{}
	m.ExpectInput("File or directory", f)
	c.Prompter = m
	o := New()
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	if len(o.objects) != 1 || o.objects[0].Objects[0].GetName() != "a" {
		t.Fatalf("objects: %+v", o.objects)
	}

	// -f given: no question even on a terminal.
	c.Prompter = &prompt.Mock{}
	o = New()
	o.Files = []string{f}
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Prompter.(*prompt.Mock).Verify(); err != nil {
		t.Fatal(err)
	}

	// No terminal: no question; Validate names the flag.
	c.Prompter = nil
	o = New()
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "pass -f FILE") {
		t.Fatalf("Validate() = %v", err)
	}
}

// TestPlanThroughClientSeam plans against fake clients: namespaced kinds
// take -n, cluster-scoped ones stay without, and a kind the cluster does
// not serve is refused with a one-line error (exit 65) naming the file.
func TestPlanThroughClientSeam(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"), 0o600)
	os.WriteFile(bad, []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"), 0o600)
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	c := cli.New(streams)
	ns := "team"
	c.Flags.Namespace = &ns
	c.Source = clitest.Source{Kinds: map[schema.GroupVersionKind]bool{{Version: "v1", Kind: "ConfigMap"}: true, {Version: "v1", Kind: "Namespace"}: false}}

	o := New()
	o.Files = []string{good}
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	plan, err := o.Plan(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	objs := plan.Objects()
	if len(objs) != 2 || objs[0].GetNamespace() != "team" || objs[1].GetNamespace() != "" {
		t.Fatalf("planned %v", objs)
	}

	o = New()
	o.Files = []string{bad}
	if err := o.Complete(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	_, err = o.Plan(context.Background(), c)
	if code, msg := exitcode.Describe(err); code != exitcode.DataErr || !strings.Contains(msg, "bad.yaml: kind Widget (example.com/v1) is not served by the cluster") {
		t.Fatalf("unserved kind: exit %d %q", code, msg)
	}
}
