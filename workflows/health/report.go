package health

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
)

// Result states.
const (
	OK   = "ok"
	Warn = "warn"
	Fail = "fail"
)

// Result is one check's outcome.
type Result struct {
	Category string `json:"category"`
	Check    string `json:"check"`
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Hint     string `json:"hint,omitempty"`
	URL      string `json:"url,omitempty"`
}

// Report is check's output; -o json prints it as is.
type Report struct {
	Results []Result `json:"results"`
	Summary struct {
		OK   int `json:"ok"`
		Warn int `json:"warn"`
		Fail int `json:"fail"`
	} `json:"summary"`
}

func (r *Report) add(category, check, status, message, hint, url string) {
	r.Results = append(r.Results, Result{category, check, status, message, hint, url})
	switch status {
	case OK:
		r.Summary.OK++
	case Warn:
		r.Summary.Warn++
	default:
		r.Summary.Fail++
	}
}

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
		mark := map[string]string{OK: "√", Warn: "‼", Fail: "×"}[r.Status]
		fmt.Fprintf(w, "%s %s\n", mark, r.Check)
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
	fmt.Fprintf(w, "\nStatus check results: %d √, %d ‼, %d ×\n", rep.Summary.OK, rep.Summary.Warn, rep.Summary.Fail)
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
