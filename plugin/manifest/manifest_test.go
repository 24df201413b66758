package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		count   int
		wantErr string
	}{
		{"two docs", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n", 2, ""},
		{"empty docs skipped", "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n", 1, ""},
		{"json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`, 1, ""},
		{"list expanded", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n", 2, ""},
		{"no apiVersion", "kind: ConfigMap\nmetadata: {name: a}\n", 0, "document 1 has no apiVersion"},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", 0, "document 1 has no kind"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\n", 0, "document 1 (ConfigMap) has no metadata.name"},
		{"second doc broken", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nfoo: [\n", 0, "document 2 is not valid YAML"},
		{"scalar", "just text\n", 0, "document 1 is not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(objs) != tc.count {
				t.Fatalf("got %d objects, %v; want %d", len(objs), err, tc.count)
			}
		})
	}
}

func TestReadFilesDirsAndStdin(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
	write("b.json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}`)
	write("notes.txt", "ignored")
	files, err := Read([]string{dir, "-"}, strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[2].Name != "stdin" {
		t.Fatalf("files: %+v", files)
	}
	_, err = Read([]string{filepath.Join(dir, "missing.yaml")}, nil, false)
	if code, _ := exitcode.Describe(err); code != exitcode.DataErr {
		t.Fatalf("missing file: exit %d (%v), want 65", code, err)
	}
	write("empty.yaml", "# nothing\n")
	_, err = Read([]string{filepath.Join(dir, "empty.yaml")}, nil, false)
	if err == nil || !strings.Contains(err.Error(), "contains no objects") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestReadRecursive(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "apps", "shop")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"
	for p, name := range map[string]string{filepath.Join(dir, "top.yaml"): "top", filepath.Join(sub, "deep.yml"): "deep"} {
		if err := os.WriteFile(p, []byte(fmt.Sprintf(cm, name)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flat, err := Read([]string{dir}, nil, false)
	if err != nil || len(flat) != 1 {
		t.Fatalf("without recursion: %d files, %v", len(flat), err)
	}
	deep, err := Read([]string{dir}, nil, true)
	if err != nil || len(deep) != 2 {
		t.Fatalf("recursive: %d files, %v", len(deep), err)
	}
	if _, err := Read([]string{filepath.Join(dir, "apps")}, nil, false); err == nil || !strings.Contains(err.Error(), "add -R") {
		t.Fatalf("a directory with only subdirectories: %v", err)
	}
}
