package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// TestKrewInstallsTheReleaseArchive builds the release archive for this
// platform with hack/dist.sh, renders the krew manifest from krew/mesh.yaml
// with its real sha256, validates it with krew's own validator (which
// installs it from a local HTTP server), installs it with real krew into a
// temporary KREW_ROOT, and runs the installed plugin through kubectl.
func TestKrewInstallsTheReleaseArchive(t *testing.T) {
	dist := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dist)))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// A version that krew would refuse stops the build, naming VERSION=.
	bad := exec.CommandContext(ctx, "../../hack/dist.sh")
	bad.Env = append(os.Environ(), "PLATFORMS=linux/amd64", "VERSION=338209e", "DIST="+t.TempDir())
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "VERSION=338209e is not a semantic version starting with v") {
		t.Fatalf("dist with VERSION=338209e: %v\n%s", err, out)
	}
	// The default version (no tag here: a pseudo-version of the commit)
	// is one krew accepts.
	build := exec.CommandContext(ctx, "../../hack/dist.sh")
	build.Env = append(os.Environ(), "PLATFORMS=linux/amd64", "ONLY_BUILT=1", "VERSION=", "DIST="+dist, "BASE_URL="+srv.URL)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("hack/dist.sh: %v\n%s", err, out)
	}
	archives, _ := filepath.Glob(filepath.Join(dist, "kubectl-mesh_v*_linux_amd64.tar.gz"))
	if len(archives) != 1 {
		t.Fatalf("want one linux/amd64 archive with a v-version, got %v", archives)
	}
	archive := archives[0]
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(archive), "kubectl-mesh_"), "_linux_amd64.tar.gz")
	manifest := filepath.Join(dist, "krew", "mesh.yaml")
	m, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(archive + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "manifest", string(m), "name: mesh", "version: "+version, "sha256: "+strings.Fields(string(sum))[0], "Istio", "kubectl mesh completion install")

	// krew's validator, including an install of every platform in the manifest.
	krewRoot := t.TempDir()
	env := []string{"KREW_ROOT=" + krewRoot}
	r := kubectl(t, env, "krew", "version")
	if r.code != 0 {
		t.Fatalf("kubectl krew not dispatched: %s", r.stderr)
	}
	binDir, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	validate := exec.CommandContext(ctx, filepath.Join(binDir, "validate-krew-manifest"), "-manifest", manifest)
	validate.Env = append(os.Environ(), "PATH="+pathEnv, "KREW_ROOT="+t.TempDir())
	if out, err := validate.CombinedOutput(); err != nil || !strings.Contains(string(out), "installed fine") {
		t.Fatalf("validate-krew-manifest: %v\n%s", err, out)
	}

	// Install offline from the archive, then dispatch to the installed copy
	// only (the test's own build is taken off PATH).
	r = kubectl(t, env, "krew", "install", "--manifest="+manifest, "--archive="+archive)
	if r.code != 0 {
		t.Fatalf("krew install: %s", r.stderr)
	}
	path := strings.Join([]string{filepath.Join(krewRoot, "bin"), binDir, "/usr/bin", "/bin"}, string(os.PathListSeparator))
	cmd := exec.CommandContext(ctx, "kubectl", "mesh", "version", "--client")
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kubectl-mesh: "+version) {
		t.Fatalf("installed plugin: %v\n%s", err, out)
	}
}
