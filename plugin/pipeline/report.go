package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"slices"
)

// Report is what a pipeline needs to decide whether to roll a plan out
// without running it: the plan's checks (gates included), the analyzer
// findings it introduces, and which of them block. The fleet's
// --output-dir writes one per cluster (report.json).
type Report struct {
	Title    string        `json:"title"`
	Checks   []ReportCheck `json:"checks"`
	Analysis []Finding     `json:"analysis"`
	// PreexistingFindings counts the analyzer findings the cluster has
	// whatever the plan does.
	PreexistingFindings int `json:"preexistingFindings"`
	// Blocked lists the IDs and codes that stop the plan: a pipeline
	// refuses the rollout when it is not empty, as apply would.
	Blocked []string `json:"blocked"`
	Notes   []string `json:"notes,omitempty"`
}

// ReportCheck is a Check as written to a report: with whether it blocks.
type ReportCheck struct {
	Check
	Blocking bool `json:"blocking"`
}

// report runs what apply would run before asking (analysis, the
// resilience lint, the plan's checks) and returns it without printing.
func (r *Runner) report(ctx context.Context, plan *Plan, threshold Severity) (*Report, error) {
	rep := &Report{Title: plan.Title, Notes: plan.Notes, Checks: []ReportCheck{}, Analysis: []Finding{}, Blocked: []string{}}
	if len(plan.Objects()) > 0 {
		fs, pre, err := r.findings(ctx, plan, threshold)
		if err != nil {
			return nil, err
		}
		rep.PreexistingFindings = pre
		for _, f := range fs {
			rep.Analysis = append(rep.Analysis, f)
			if f.Blocking && plan.UndoOf == "" {
				rep.Blocked = append(rep.Blocked, f.Code)
			}
		}
	}
	plan.Checks = append(plan.Checks, r.resilienceChecks(ctx, plan)...)
	for _, c := range plan.Checks {
		blocking := r.blocks(c.ID, c.Severity, threshold)
		rep.Checks = append(rep.Checks, ReportCheck{Check: c, Blocking: blocking})
		if blocking {
			rep.Blocked = append(rep.Blocked, c.ID)
		}
	}
	slices.Sort(rep.Blocked)
	rep.Blocked = slices.Compact(rep.Blocked)
	return rep, nil
}

func (r *Runner) writeReport(ctx context.Context, plan *Plan, threshold Severity) error {
	rep, err := r.report(ctx, plan, threshold)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(r.C.Engine.ReportFile, append(b, '\n'), 0o644)
}
