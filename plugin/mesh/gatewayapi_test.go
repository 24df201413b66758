package mesh

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The embedded copy must be exactly the pinned module's standard CRDs:
// after a go.mod bump, run hack/gateway-api-crds.sh.
func TestGatewayAPICRDsMatchPinnedModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("go list sigs.k8s.io/gateway-api: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	want, err := filepath.Glob(filepath.Join(src, "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range want {
		if strings.Contains(f, "_vap_") {
			continue
		}
		n++
		a, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := gatewayAPI.ReadFile("gatewayapi/" + filepath.Base(f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the pinned module's (%v): run hack/gateway-api-crds.sh", filepath.Base(f), err)
		}
	}
	crds, err := GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != n || n < 5 {
		t.Fatalf("embedded %d CRDs, the module has %d", len(crds), n)
	}
	for _, c := range crds {
		if c.GetKind() != "CustomResourceDefinition" || c.GetAnnotations()[AnnotationGatewayAPIChannel] != "standard" {
			t.Errorf("%s %s is not a standard-channel CRD", c.GetKind(), c.GetName())
		}
	}
	if v := GatewayAPIVersion(); !strings.HasPrefix(v, "v1.") || v != crds[0].GetAnnotations()[AnnotationGatewayAPIVersion] {
		t.Fatalf("bundle version %q, the decoded CRDs say %q", v, crds[0].GetAnnotations()[AnnotationGatewayAPIVersion])
	}
}
