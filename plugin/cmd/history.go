package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/journal"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
)

func store(c *cli.Context) (*journal.Store, error) {
	kube, err := c.Kube()
	if err != nil {
		return nil, err
	}
	return &journal.Store{Kube: kube, Namespace: c.Engine.JournalNamespace}, nil
}

// history lists the change sets or shows one.
type history struct {
	c    *cli.Context
	args []string
}

var _ pipeline.Inspector = (*history)(nil)

func newHistory(c *cli.Context) *history { return &history{c: c} }

// Command implements pipeline.Inspector.
func (h *history) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history [ID]",
		Short: "List the recorded change sets, or show one",
		Example: `  kubectl mesh history
  kubectl mesh history cs-20261125-101500-a1b2c3
  kubectl mesh history -o json`,
		Args: cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVarP(&h.c.Engine.Output, "output", "o", "", "Output format: json or yaml (default: a table; change sets' recorded contents are never printed)")
	return cmd
}

// Complete implements pipeline.Inspector: the change set ID, if any.
func (h *history) Complete(_ context.Context, _ *cli.Context, args []string) error {
	h.args = args
	return nil
}

// Validate implements pipeline.Inspector.
func (h *history) Validate() error {
	if f := h.c.Engine.Output; f != "" && f != "json" && f != "yaml" {
		return fmt.Errorf("invalid -o/--output %q for history: use json or yaml", f)
	}
	return nil
}

// Inspect implements pipeline.Inspector.
func (h *history) Inspect(ctx context.Context, c *cli.Context) error {
	args := h.args
	format := c.Engine.Output
	s, err := store(c)
	if err != nil {
		return err
	}
	var sets []*journal.ChangeSet
	if len(args) == 1 {
		cs, err := s.Get(ctx, args[0])
		if err != nil {
			return err
		}
		sets = []*journal.ChangeSet{cs}
	} else if sets, err = s.List(ctx); err != nil {
		return err
	}
	w := c.Streams.Out
	switch format {
	case "json", "yaml":
		// Prior states can hold Secret data: structured output lists
		// what was touched, not the recorded contents.
		view := make([]*journal.ChangeSet, len(sets))
		for i, cs := range sets {
			view[i] = cs.WithoutPriors()
		}
		var b []byte
		if format == "json" {
			b, err = json.MarshalIndent(view, "", "  ")
			b = append(b, '\n')
		} else {
			b, err = yaml.Marshal(view)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if len(args) == 1 {
		printChangeSet(w, sets[0], c.Now())
		return nil
	}
	if len(sets) == 0 {
		fmt.Fprintf(c.Streams.ErrOut, "No change sets recorded in namespace %s.\n", c.Engine.JournalNamespace)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSTATUS\tCHANGES\tTITLE")
	for _, cs := range sets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", cs.ID, age(cs.Created, c.Now()), status(cs), len(cs.Entries), cs.Title)
	}
	return tw.Flush()
}

// status adds what happened after the apply (undone) to the recorded status.
func status(cs *journal.ChangeSet) string {
	s := cs.Status
	if s == journal.StatusApplying {
		s = "incomplete" // the process stopped before recording an outcome
	}
	if cs.UndoneBy != "" {
		s += ", undone by " + cs.UndoneBy
	}
	return s
}

func age(t, now time.Time) string { return duration.HumanDuration(now.Sub(t)) }

func action(e journal.Entry) string {
	switch {
	case e.Op == string(pipeline.Delete):
		return "delete"
	case !e.Existed:
		return "create"
	}
	return "update"
}

func entryRef(e journal.Entry) string {
	s := e.Kind + "/" + e.Name
	if e.Namespace != "" {
		s += " -n " + e.Namespace
	}
	return s
}

func printChangeSet(w interface{ Write([]byte) (int, error) }, cs *journal.ChangeSet, now time.Time) {
	fmt.Fprintf(w, "ID:       %s\nTitle:    %s\nCommand:  %s\n", cs.ID, cs.Title, cs.Command)
	if cs.User != "" {
		fmt.Fprintf(w, "User:     %s\n", cs.User)
	}
	fmt.Fprintf(w, "Created:  %s (%s ago)\nStatus:   %s\n", cs.Created.Format(time.RFC3339), age(cs.Created, now), status(cs))
	if cs.Error != "" {
		fmt.Fprintf(w, "Error:    %s\n", cs.Error)
	}
	if cs.UndoOf != "" {
		fmt.Fprintf(w, "Undoes:   %s\n", cs.UndoOf)
	}
	for _, a := range cs.Accepted {
		fmt.Fprintf(w, "Accepted: %s\n", a)
	}
	fmt.Fprintln(w, "Changes:")
	for _, e := range cs.Entries {
		done := "applied"
		if !e.Applied {
			done = "not applied"
		}
		fmt.Fprintf(w, "  %-7s %s (%s)\n", action(e), entryRef(e), done)
	}
}

func newUndo(c *cli.Context) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "undo [ID]",
		Short: "Restore the state recorded before a change set (default: the latest one not undone; asked on a terminal)",
		Long: `Restores every object a change set touched to exactly what it was before:
objects it created are deleted, objects it changed or deleted are put back,
field ownership included. The undo is itself a change set (undo it to redo).
Works for change sets that failed or were interrupted half-way.`,
		Example: `  kubectl mesh undo
  kubectl mesh undo cs-20261125-101500-a1b2c3 --dry-run=server
  kubectl mesh undo cs-20261125-101500-a1b2c3 --yes`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := c.Engine.Validate(); err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			s, err := store(c)
			if err != nil {
				return err
			}
			var cs *journal.ChangeSet
			if len(args) == 1 {
				if cs, err = s.Get(ctx, args[0]); err != nil {
					return err
				}
			} else {
				sets, err := s.List(ctx)
				if err != nil {
					return err
				}
				var open []*journal.ChangeSet
				for _, x := range sets {
					if x.UndoneBy == "" && x.UndoOf == "" {
						open = append(open, x)
					}
				}
				if len(open) == 0 {
					return exitcode.Usagef("nothing to undo: no change set in namespace %s that is not undone yet", c.Engine.JournalNamespace)
				}
				if cs, err = pickUndo(c, open); err != nil {
					return err
				}
			}
			plan, err := pipeline.UndoPlan(cs)
			if err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			fmt.Fprintf(c.Streams.ErrOut, "Undoing %s: %s\n", cs.ID, cs.Title)
			return (&pipeline.Runner{C: c}).Run(ctx, plan)
		},
	}
	c.Engine.AddChangeFlags(cmd.Flags())
	return cmd
}

// pickUndo is the change set to undo: the latest not undone (sets come
// newest first), or on a terminal the one the user picks among the recent.
func pickUndo(c *cli.Context, open []*journal.ChangeSet) (*journal.ChangeSet, error) {
	if !c.CanPrompt() || c.Engine.Yes || len(open) == 1 {
		return open[0], nil
	}
	if len(open) > 10 {
		open = open[:10] // older ones by ID: kubectl mesh history lists them
	}
	labels := make([]string, len(open))
	for i, cs := range open {
		labels[i] = fmt.Sprintf("%s  %s  (%s)", cs.ID, cs.Title, cs.Created.Local().Format("2006-01-02 15:04"))
	}
	ans, err := c.Prompter.Select("Change set to undo:", labels, labels[0])
	if errors.Is(err, prompt.ErrInterrupted) {
		return nil, exitcode.New(exitcode.Interrupted, errors.New("interrupted: nothing was changed"))
	}
	if err != nil {
		return nil, err
	}
	return open[slices.Index(labels, ans)], nil
}
