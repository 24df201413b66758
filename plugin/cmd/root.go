// Package cmd builds the `kubectl mesh` command tree: the engine's own
// commands (version, analyze, history, undo) and one command per workflow.
package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
)

// NewRoot returns the root command. Workflows (and groups of them) come
// from the caller, fresh instances per call, so this package never imports
// them (and a run across several clusters builds a tree per cluster).
func NewRoot(streams genericiooptions.IOStreams, commands func() []pipeline.Command) (*cobra.Command, *cli.Context) {
	c := cli.New(streams)
	ff := &fleetFlags{}
	root := &cobra.Command{
		Use:   "kubectl-mesh",
		Short: "Guided, safe Istio changes for platform teams",
		Long: `kubectl mesh turns Istio expertise into guided, safe changes: every command
asks for what it needs (or takes flags), plans the objects, runs Istio's
analyzers on the cluster as it would be, shows a server-side diff, applies on
confirmation, verifies, and records a change set you can undo.`,
		Annotations: map[string]string{
			// Usage lines read "kubectl mesh …", as kubectl plugins should.
			cobra.CommandDisplayNameAnnotation: "kubectl mesh",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Istio's packages route klog and their own loggers to stdout;
			// nothing but our output may reach the user.
			analysis.Quiet()
			// Prompts need a real terminal on both ends; tests install a mock.
			if c.Prompter == nil && cli.IsTerminal(streams.In) && cli.IsTerminal(streams.Out) {
				if p, err := prompt.NewSurvey(streams.In, streams.Out, streams.ErrOut); err == nil {
					c.Prompter = p
				}
			}
			return nil
		},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitcode.Usagef("%v; see kubectl mesh --help", err)
	})
	conn := connectionFlags(c.Flags.AddFlags)
	ff.addConnectionFlags(conn)
	root.PersistentFlags().AddFlagSet(conn)
	c.Engine.AddScopeFlags(root.PersistentFlags())
	cobra.AddTemplateFunc("meshFlags", flagUsages(conn))
	root.SetUsageTemplate(usageTemplate)

	workflows := commands()
	root.AddCommand(newVersion(c), bind(c, ff, newAnalyze(c)), bind(c, ff, newHistory(c)), newUndo(c), newRBAC(c, workflows), newOptions(conn))
	for _, w := range workflows {
		if g, ok := w.(pipeline.Group); ok {
			parent := g.Command()
			for _, sub := range g.Subcommands() {
				parent.AddCommand(bind(c, ff, sub))
			}
			root.AddCommand(parent)
			continue
		}
		root.AddCommand(bind(c, ff, w))
	}
	setupCompletion(root, c)
	(&fleetRunner{c: c, flags: ff, newRoot: func(s genericiooptions.IOStreams) (*cobra.Command, *cli.Context) {
		return NewRoot(s, commands)
	}}).wrap(root)
	return root, c
}

// bind wires a workflow (Complete → Validate → Plan → Runner) or an
// inspector (Complete → Validate → Inspect) into the engine. Only
// workflows, which change the cluster, take the engine's flags for
// changes (--yes, --dry-run, -o yaml|json, --accept …).
func bind(c *cli.Context, ff *fleetFlags, command pipeline.Command) *cobra.Command {
	cmd := command.Command()
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	switch w := command.(type) {
	case pipeline.Inspector:
		cmd.Annotations[fleetAnnotation] = fleetRead
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := w.Complete(ctx, c, args); err != nil {
				return err
			}
			if err := w.Validate(); err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			return w.Inspect(ctx, c)
		}
	case pipeline.Workflow:
		c.Engine.AddChangeFlags(cmd.Flags())
		ff.addPlanFlags(cmd.Flags())
		cmd.Annotations[fleetAnnotation] = fleetPlan
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel() // reads still in flight when the command ends
			if err := c.Engine.Validate(); err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			// What the plan's analysis will list is read while the
			// workflow reads, and serves it; on a terminal only once the
			// questions are answered, so that it is not minutes old.
			if !c.CanPrompt() {
				pipeline.Prefetch(ctx, c, w)
			}
			if err := w.Complete(ctx, c, args); err != nil {
				return err
			}
			if err := w.Validate(); err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			pipeline.Prefetch(ctx, c, w) // started already unless on a terminal
			plan, err := w.Plan(ctx, c)
			for err == nil && plan != nil { // nil: nothing (more) to apply, e.g. --explain
				if plan.Output != "" {
					fmt.Fprint(c.Streams.Out, plan.Output)
					break
				}
				if plan.Done != "" {
					fmt.Fprintln(c.Streams.ErrOut, plan.Done)
					break
				}
				if err = (&pipeline.Runner{C: c}).Run(ctx, plan); err != nil {
					break
				}
				seq, ok := w.(pipeline.Sequence)
				if !ok {
					break
				}
				if err = pipeline.Wait(ctx, c.Streams.ErrOut, seq.Pause()); err != nil {
					break
				}
				c.ForgetReads() // the next plan starts from the cluster as it is now
				pipeline.Prefetch(ctx, c, w)
				plan, err = seq.Next(ctx, c)
			}
			return err
		}
	}
	return cmd
}

// Execute runs the root command and returns the exit code and the message
// to print (already one line).
func Execute(ctx context.Context, root *cobra.Command) (int, string) {
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK, ""
	}
	code, msg := exitcode.Describe(err)
	if msg != "" {
		msg = fmt.Sprintf("error: %s", msg)
	}
	return code, msg
}
