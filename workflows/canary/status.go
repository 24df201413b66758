package canary

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

var _ pipeline.Inspector = (*status)(nil)

type status struct {
	common
	gate
}

func newStatus() *status { return &status{} }

func (o *status) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "status SERVICE",
		Short:   "Show the canary's versions, weights, routes and gate",
		Example: `  kubectl mesh canary status -n bookinfo reviews`,
	}
	o.addFlags(cmd.Flags())
	o.addGateFlags(cmd.Flags())
	return cmd
}

func (o *status) Complete(ctx context.Context, c *cli.Context, args []string) error {
	if err := o.gate.validate(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	return o.load(ctx, c, args)
}

func (o *status) Validate() error { return nil }

// Inspect implements pipeline.Inspector: the canary's state and its gate.
func (o *status) Inspect(ctx context.Context, c *cli.Context) error {
	s, err := o.inProgress()
	if err != nil {
		return err
	}
	w := c.Streams.Out
	printState(w, o.t, s)
	switch {
	case s.gateway():
		fmt.Fprintf(w, "  HTTPRoute %s, rule %q; services %s (stable), %s (canary)\n", o.t.HR.GetName(), s.Route, s.StableService, s.CanaryService)
	case o.t.DR != nil:
		fmt.Fprintf(w, "  VirtualService %s, route %q; DestinationRule %s, subsets %s\n", o.t.VS.GetName(), s.Route, o.t.DR.GetName(), strings.Join(subsetNames(o.t.DR), ", "))
	}
	if o.Skip {
		return nil
	}
	v, err := o.evaluate(ctx, c, o.t, s, false)
	switch {
	case err != nil:
		fmt.Fprintf(w, "  gate: %v\n", err)
	case v == nil:
		fmt.Fprintln(w, "  gate: no Prometheus found (--prometheus-url)")
	default:
		fmt.Fprintf(w, "  gate: %s\n", v.checks()[0].Message)
	}
	return nil
}
