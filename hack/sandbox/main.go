// Command sandbox starts the test control plane (etcd, kube-apiserver,
// controller manager, scheduler, kwok with one fake node) with Istio's CRDs
// and sample workloads, prints the KUBECONFIG to export, and runs until
// Ctrl-C. Every revision `kubectl mesh install` creates in it gets a real
// istiod (plugin/testenv), so injection, validation and xDS are Istio's own. Used by the README quickstart; hack/sandbox.sh builds what it needs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

func main() {
	dir := flag.String("dir", "", "directory for data, logs and the kubeconfig (default: a new temporary one)")
	samples := flag.String("samples", "testdata/sandbox", "directory of sample manifests to create")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *dir, *samples, func(env *testenv.Env) {
		fmt.Printf("Sandbox running (logs in %s). In another shell:\n\n  export KUBECONFIG=%s\n  kubectl mesh analyze -A\n\nCtrl-C stops it.\n", env.Dir, env.Kubeconfig)
		<-ctx.Done()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

// run starts the sandbox, calls ready while it runs, and stops it after.
func run(ctx context.Context, dir, samples string, ready func(*testenv.Env)) error {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		dir = abs
	}
	env, err := testenv.Start(ctx, testenv.Options{Nodes: true, IstioCRDs: true, ServiceAccounts: true, Dir: dir, Log: os.Stderr})
	if err != nil {
		return err
	}
	defer env.Stop()
	if samples != "" {
		if err := createSamples(ctx, env, samples); err != nil {
			return err
		}
	}
	// Every revision kubectl mesh install creates gets a real istiod.
	istiods, stopIstiods := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { env.RunIstiods(istiods, "istio-system"); close(done) }()
	defer func() { stopIstiods(); <-done }()
	ready(env)
	return nil
}

func createSamples(ctx context.Context, env *testenv.Env, dir string) error {
	files, err := manifest.Read([]string{dir}, nil, false) // a directory: stdin is never read
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Kube.Discovery()))
	for _, f := range files {
		for _, u := range f.Objects {
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Name, err)
			}
			var rc dynamic.ResourceInterface = env.Dynamic.Resource(m.Resource)
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				rc = env.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
			}
			if _, err := rc.Create(ctx, u, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("%s: create %s/%s: %w", f.Name, u.GetKind(), u.GetName(), err)
			}
		}
	}
	return nil
}
