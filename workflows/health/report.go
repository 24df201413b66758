package health

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Result is one check's outcome: what was checked and the finding, whose
// severity is Info when the check passed.
type Result struct {
	Category string `json:"category"`
	Title    string `json:"check"`
	pipeline.Check
}

// Report is check's output; -o json prints it as is.
type Report struct {
	Results []Result `json:"results"`
	// Summary counts the results by severity.
	Summary struct {
		Info    int `json:"info"`
		Warning int `json:"warning"`
		Error   int `json:"error"`
	} `json:"summary"`
}

// pass records a check that passed.
func (r *Report) pass(category, id, title string) {
	r.add(category, title, pipeline.Check{ID: id, Severity: pipeline.Info})
}

// add records a check's finding.
func (r *Report) add(category, title string, c pipeline.Check) {
	r.Results = append(r.Results, Result{category, title, c})
	switch c.Severity {
	case pipeline.Info:
		r.Summary.Info++
	case pipeline.Warning:
		r.Summary.Warning++
	default:
		r.Summary.Error++
	}
}

// marks are check's table signs, as istioctl x precheck prints them.
var marks = map[pipeline.Severity]string{pipeline.Info: "√", pipeline.Warning: "‼", pipeline.Error: "×"}

func (o *Check) print(w io.Writer, rep *Report) error {
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	last := ""
	for _, r := range rep.Results {
		if r.Category != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s\n%s\n", r.Category, strings.Repeat("-", len(r.Category)))
			last = r.Category
		}
		fmt.Fprintf(w, "%s %s\n", marks[r.Severity], r.Title)
		if r.Message != "" {
			fmt.Fprintf(w, "    %s\n", r.Message)
		}
		if r.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
		if r.URL != "" {
			fmt.Fprintf(w, "    see: %s\n", r.URL)
		}
	}
	fmt.Fprintf(w, "\nStatus check results: %d √, %d ‼, %d ×\n", rep.Summary.Info, rep.Summary.Warning, rep.Summary.Error)
	return nil
}

// short lists up to five names, de-duplicated.
func short(names []string) string {
	slices.Sort(names)
	return analysis.Abbreviate(slices.Compact(names), 5)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
