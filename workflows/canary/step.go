package canary

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

type step struct {
	common
	gate
	To       int
	Auto     bool
	PauseFor time.Duration

	aborted string
	first   bool
}

func newStep() *step { return &step{To: -1, PauseFor: time.Minute} }

func (o *step) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "step SERVICE",
		Short: "Move the canary to its next weight (or --to N) after the metric gate passes",
		Long: `Checks the canary's success rate and p99 latency over --interval, then moves it to
the next weight of its step plan. A failed or inconclusive gate blocks the step
(accept it with --accept ID). With --auto the canary walks through the rest of
its plan, pausing --pause between steps; a failed gate aborts it (all traffic
back to the stable version) and the command exits 79.`,
		Example: `  kubectl mesh canary step -n bookinfo reviews
  kubectl mesh canary step -n bookinfo reviews --to 50
  kubectl mesh canary step -n bookinfo reviews --auto --pause 10m --yes`,
	}
	f := cmd.Flags()
	o.addFlags(f)
	o.addGateFlags(f)
	f.IntVar(&o.To, "to", o.To, "Weight to move to instead of the next step (0–100)")
	f.BoolVar(&o.Auto, "auto", false, "Step through the rest of the plan, pausing between steps; abort on a failed gate")
	f.DurationVar(&o.PauseFor, "pause", o.PauseFor, "With --auto, how long each weight runs before the next gate")
	return cmd
}

func (o *step) Complete(ctx context.Context, c *cli.Context, args []string) error {
	if err := o.Validate(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	o.first = true
	return o.load(ctx, c, args)
}

func (o *step) Validate() error {
	if err := o.gate.validate(); err != nil {
		return err
	}
	if o.To != -1 {
		if err := percent("--to", o.To); err != nil {
			return err
		}
	}
	if o.PauseFor <= 0 {
		return fmt.Errorf("invalid --pause %v: use a positive duration such as 5m", o.PauseFor)
	}
	return nil
}

// target weight of the next step.
func (o *step) nextWeight(s *State) (int, bool) {
	if o.To != -1 && !o.Auto {
		return o.To, o.To != s.Weight
	}
	limit := 100
	if o.To != -1 {
		limit = o.To
	}
	for _, w := range s.Steps {
		if w > s.Weight && w <= limit {
			return w, true
		}
	}
	return s.Weight, false
}

func (o *step) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	s, err := o.inProgress()
	if err != nil {
		return nil, err
	}
	next, ok := o.nextWeight(s)
	if !ok {
		if o.first {
			return &pipeline.Plan{Done: fmt.Sprintf("The canary of %s is at %d%%, the end of its plan: promote it with kubectl mesh canary promote -n %s %s", o.Service, s.Weight, o.t.Namespace, o.Service)}, nil
		}
		return nil, nil
	}
	o.first = false
	var checks []pipeline.Check
	if o.Skip {
		checks = []pipeline.Check{{ID: CheckGateSkipped, Severity: pipeline.Warning, Message: "--skip-gate: stepping without looking at the canary's metrics"}}
	} else {
		v, err := o.evaluate(ctx, c, o.t, s, true)
		if err != nil {
			return nil, err
		}
		if o.Auto && !v.Pass {
			o.aborted = v.checks()[0].Message
			plan, err := abortPlan(o.t, s)
			if plan != nil {
				plan.Notes = append([]string{o.aborted + ": aborting the canary"}, plan.Notes...)
			}
			return plan, err
		}
		checks = v.checks()
	}
	s.Weight = next
	routes := reroute(o.t, s)
	setState(routes, s)
	plan := &pipeline.Plan{
		Title:  fmt.Sprintf("canary %s for %s: %d%%", s.Canary, o.Service, next),
		Phases: []pipeline.Phase{{Name: "routes", Changes: []pipeline.Change{o.t.change(routes, o.t.routeObject())}}},
		Checks: append(checks, o.t.checks(routes, s)...),
		Notes:  argoNote(o.t),
	}
	t := o.t
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) { printState(w, t, s) }
	return plan, nil
}

// Pause implements pipeline.Sequence: with --auto each weight runs for
// --pause before the next gate; the engine waits.
func (o *step) Pause() pipeline.Pause {
	if !o.Auto || o.aborted != "" {
		return pipeline.Pause{}
	}
	return pipeline.Pause{For: o.PauseFor, Before: "the next gate", Resume: fmt.Sprintf("kubectl mesh canary step -n %s %s (the canary stays at its current weight)", o.t.Namespace, o.Service)}
}

// Next implements pipeline.Sequence: with --auto, re-read and step again.
func (o *step) Next(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	if o.aborted != "" {
		return nil, exitcode.Blockedf("canary aborted, all traffic is back on %s: %s", o.t.State.Stable, o.aborted)
	}
	if !o.Auto {
		return nil, nil
	}
	if err := o.load(ctx, c, []string{o.Service}); err != nil {
		return nil, err
	}
	return o.Plan(ctx, c)
}
