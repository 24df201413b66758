package krew

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestRenderFillsChecksumsAndURLs(t *testing.T) {
	tmpl, err := os.ReadFile("mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	if err := os.WriteFile(filepath.Join(dist, "kubectl-mesh_v1.2.3_linux_amd64.tar.gz"), []byte("archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A full render needs every archive.
	if _, err := Render(tmpl, Options{Version: "v1.2.3", Dist: dist}); err == nil || !strings.Contains(err.Error(), "run make dist") {
		t.Fatalf("missing archives not reported: %v", err)
	}
	out, err := Render(tmpl, Options{Version: "v1.2.3", Dist: dist, OnlyBuilt: true, BaseURL: "http://127.0.0.1:9/files/"})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Metadata struct{ Name string }
		Spec     struct {
			Version   string
			Platforms []struct {
				URI, Sha256, Bin string
			}
		}
	}
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	const sum = "0eb3e36bfb24dcd9bb1d1bece1531216b59539a8fde17ee80224af0653c92aa3" // sha256("archive")
	p := m.Spec.Platforms
	if m.Metadata.Name != "mesh" || m.Spec.Version != "v1.2.3" || len(p) != 1 ||
		p[0].URI != "http://127.0.0.1:9/files/kubectl-mesh_v1.2.3_linux_amd64.tar.gz" || p[0].Bin != "kubectl-mesh" || p[0].Sha256 != sum {
		t.Fatalf("rendered manifest:\n%s", out)
	}
}
