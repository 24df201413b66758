package canary

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

type promote struct {
	common
	Cleanup bool
}

func newPromote() *promote { return &promote{} }

func (o *promote) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "promote SERVICE",
		Short: "Send all traffic to the canary; with --cleanup make it the only subset and end the canary",
		Example: `  kubectl mesh canary promote -n bookinfo reviews
  kubectl mesh canary promote -n bookinfo reviews --cleanup`,
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.Cleanup, "cleanup", false, "Route to the canary subset alone, remove the stable subset the canary added, and end the canary")
	return cmd
}

func (o *promote) Complete(ctx context.Context, c *cli.Context, args []string) error {
	return o.load(ctx, c, args)
}

func (o *promote) Validate() error { return nil }

func (o *promote) Plan(context.Context, *cli.Context) (*pipeline.Plan, error) {
	s, err := o.inProgress()
	if err != nil {
		return nil, err
	}
	if !o.Cleanup {
		s.Weight, s.Header, s.Mirror = 100, "", 0
		routes := reroute(o.t, s)
		setState(routes, s)
		t := o.t
		what := "subset"
		if s.gateway() {
			what = "Service " + s.StableService
		}
		return &pipeline.Plan{
			Title:  fmt.Sprintf("promote %s for %s: 100%%", s.Canary, o.Service),
			Phases: []pipeline.Phase{{Name: "routes", Changes: []pipeline.Change{o.t.change(routes, o.t.routeObject())}}},
			Notes:  []string{fmt.Sprintf("the stable %s stays so a rollback is one step; finish with kubectl mesh canary promote -n %s %s --cleanup", what, o.t.Namespace, o.Service)},
			Result: func(_ context.Context, _ *reads.Reader, w io.Writer) { printState(w, t, s) },
		}, nil
	}
	stable, canary := s.backends()
	return finish(o.t, s, canary, stable, fmt.Sprintf("promote %s for %s and end the canary", s.Canary, o.Service))
}

type abort struct{ common }

func newAbort() *abort { return &abort{} }

func (o *abort) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "abort SERVICE",
		Short:   "Send all traffic back to the stable version and end the canary",
		Example: `  kubectl mesh canary abort -n bookinfo reviews`,
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *abort) Complete(ctx context.Context, c *cli.Context, args []string) error {
	return o.load(ctx, c, args)
}

func (o *abort) Validate() error { return nil }

func (o *abort) Plan(context.Context, *cli.Context) (*pipeline.Plan, error) {
	s, err := o.inProgress()
	if err != nil {
		return nil, err
	}
	return abortPlan(o.t, s)
}

func abortPlan(t *target, s *State) (*pipeline.Plan, error) {
	stable, canary := s.backends()
	return finish(t, s, stable, canary, fmt.Sprintf("abort the canary of %s for %s", s.Canary, t.Service))
}

// finish ends the canary: the primary route goes to keep alone, header and
// mirror routes go, then (break after make) the subset or version Service
// drop is removed if the canary added it and no route uses it any more.
// The VirtualService or HTTPRoute stays even if the canary created it:
// without it traffic would spread over every version again.
func finish(t *target, s *State, keep, drop, title string) (*pipeline.Plan, error) {
	routes := rerouteWith(t, s, routing{Host: t.host(), Stable: keep, Canary: drop, Weight: -1})
	setState(routes, nil)
	plan := &pipeline.Plan{Title: title, Phases: []pipeline.Phase{{Name: "routes", Changes: []pipeline.Change{t.change(routes, t.routeObject())}}}}
	if t.gateway() {
		if svc := t.Services[drop]; svc != nil && svc.Labels[LabelVersionOf] == t.Service && !slices.Contains(referencedServices(routes), drop) {
			plan.Phases = append(plan.Phases, pipeline.Phase{Name: "version services", Changes: []pipeline.Change{
				{Op: pipeline.Delete, Object: manifest.New("v1", "Service", t.Namespace, drop)}}})
			plan.Notes = append(plan.Notes, fmt.Sprintf("service %s is deleted after the routes stop sending to it", drop))
		}
		plan.Checks = gatewayChecks(t, s)
	} else {
		if added := addedSubsets(t.DR); slices.Contains(added, drop) && !slices.Contains(referencedSubsets(routes, t.hostMatches), drop) {
			dr := pipeline.Edit(t.DR)
			removeSubset(dr, drop)
			setAddedSubsets(dr, slices.DeleteFunc(added, func(n string) bool { return n == drop }))
			plan.Phases = append(plan.Phases, pipeline.Phase{Name: "subsets", Changes: []pipeline.Change{t.change(dr, t.DR)}})
			plan.Notes = append(plan.Notes, fmt.Sprintf("subset %s is removed after the routes stop using it", drop))
		}
		plan.Checks = routeChecks(t.DR, routes)
	}
	what := "subset"
	if t.gateway() {
		what = "service"
	}
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) {
		fmt.Fprintf(w, "canary of %s/%s ended: all traffic to %s %s\n", t.Namespace, t.Service, what, keep)
	}
	return plan, nil
}
