package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionThroughKubectl: `kubectl mesh completion install` writes the
// kubectl_complete-mesh shim next to the plugin, and a real kubectl then
// answers `kubectl __complete mesh …` from the cluster.
func TestCompletionThroughKubectl(t *testing.T) {
	installFakeControlPlane(t)
	createNamespace(t, "completion-e2e")
	pluginDir := strings.Split(pathEnv, string(os.PathListSeparator))[0]
	r := mesh(t, 0, "completion", "install")
	shim := filepath.Join(pluginDir, "kubectl_complete-mesh")
	mustContain(t, "install", r.stdout, "wrote "+shim)
	defer os.Remove(shim)

	r = kubectl(t, nil, "__complete", "mesh", "inject", "--revision", "")
	mustContain(t, "revisions", r.stdout, "1-31\n")
	r = kubectl(t, nil, "__complete", "mesh", "inject", "-n", "comp")
	mustContain(t, "namespaces", r.stdout, "completion-e2e\n")
	r = kubectl(t, nil, "__complete", "mesh", "in")
	mustContain(t, "subcommands", r.stdout, "install\t", "inject\t")
}
