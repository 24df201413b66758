// Command krew-manifest renders krew/mesh.yaml for a version from the
// archives in a dist directory (called by hack/dist.sh).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubectl-mesh/kubectl-mesh/krew"
)

func main() {
	tmpl := flag.String("template", "krew/mesh.yaml", "manifest template")
	var o krew.Options
	flag.StringVar(&o.Version, "version", "", "release tag, e.g. v0.1.0")
	flag.StringVar(&o.Dist, "dist", "dist", "directory with the archives")
	flag.StringVar(&o.BaseURL, "base-url", "", "serve archives from this URL instead of the GitHub release")
	flag.BoolVar(&o.OnlyBuilt, "only-built", false, "keep only platforms whose archive was built")
	out := flag.String("out", "", "output file (default stdout)")
	flag.Parse()
	if err := run(*tmpl, *out, o); err != nil {
		fmt.Fprintln(os.Stderr, "krew-manifest:", err)
		os.Exit(1)
	}
}

func run(tmpl, out string, o krew.Options) error {
	if o.Version == "" {
		return fmt.Errorf("-version is required")
	}
	t, err := os.ReadFile(tmpl)
	if err != nil {
		return err
	}
	b, err := krew.Render(t, o)
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
