package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"
)

// Concurrency bounds how many clusters are read at once: each run holds
// its cluster's lists in memory (analyze -A on a large cluster is a few
// hundred MiB), and the machine running it is often a laptop or CI runner.
const Concurrency = 4

// Outcome is what one command did on one cluster.
type Outcome struct {
	Member
	Code int
	// Error is the command's one-line error, empty when it printed its own.
	Error  string
	Stdout []byte
	Stderr []byte
}

// Each runs fn for every member (by index), at most Concurrency at a
// time, and returns the outcomes in the members' order.
func Each(ctx context.Context, members []Member, fn func(ctx context.Context, i int) Outcome) []Outcome {
	out := make([]Outcome, len(members))
	var g errgroup.Group // outcomes, not errors: one cluster's failure stops no other
	g.SetLimit(Concurrency)
	for i := range members {
		g.Go(func() error {
			out[i] = fn(ctx, i)
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// Worst is the exit code of the fleet: the highest of the clusters'
// codes, so any failing cluster fails the command, and an analysis that
// blocks (79) outranks a plain failure (1).
func Worst(outs []Outcome) int {
	worst := 0
	for _, o := range outs {
		worst = max(worst, o.Code)
	}
	return worst
}

// Result is the one-word (or one-line) outcome in the summary table.
func (o Outcome) Result() string {
	switch {
	case o.Code == 0:
		return "ok"
	case o.Error != "":
		return o.Error
	}
	return fmt.Sprintf("exit %d", o.Code)
}

// WriteText prints a section per cluster (the command's own output) and
// then one table with a row per cluster, so the verdict for the whole
// fleet is the last thing on the screen.
func WriteText(w io.Writer, outs []Outcome) {
	for _, o := range outs {
		fmt.Fprintf(w, "=== %s (%s) ===\n", o.Context, o.Server)
		w.Write(o.Stdout)
		w.Write(o.Stderr)
		if o.Error != "" {
			fmt.Fprintf(w, "error: %s\n", o.Error)
		}
		fmt.Fprintln(w)
	}
	WriteSummary(w, outs)
}

// WriteSummary prints the table with a row per cluster.
func WriteSummary(w io.Writer, outs []Outcome) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tSERVER\tRESULT")
	for _, o := range outs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Context, o.Server, o.Result())
	}
	tw.Flush()
}

// entry is one cluster in -o json|yaml: the command's own document under
// "result", or its error.
type entry struct {
	Server   string `json:"server"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
	Result   any    `json:"result,omitempty"`
	// Output keeps what the command printed when it is not a document
	// (it failed before printing one).
	Output string `json:"output,omitempty"`
}

// WriteStructured prints one json or yaml document keyed by context.
func WriteStructured(w io.Writer, format string, outs []Outcome) error {
	doc := map[string]entry{}
	for _, o := range outs {
		e := entry{Server: o.Server, ExitCode: o.Code, Error: o.Error}
		var v any
		if len(bytes.TrimSpace(o.Stdout)) > 0 {
			if err := yaml.Unmarshal(o.Stdout, &v); err == nil {
				e.Result = v
			} else {
				e.Output = string(o.Stdout)
			}
		}
		doc[o.Context] = e
	}
	if format == "yaml" {
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
