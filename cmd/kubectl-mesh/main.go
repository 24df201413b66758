// Command kubectl-mesh is the kubectl plugin behind `kubectl mesh`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // exec, OIDC and cloud auth plugins

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
	"github.com/kubectl-mesh/kubectl-mesh/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	root, _ := cmd.NewRoot(streams, workflows.All)
	code, msg := cmd.Execute(ctx, root)
	stop()
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(code)
}
