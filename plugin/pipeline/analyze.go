package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"istio.io/istio/pkg/config/analysis/diag"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
)

// Finding is an Istio analyzer message on the cluster as planned that
// the plan introduces or that names a planned object.
type Finding struct {
	Code     string `json:"code"`
	Level    string `json:"level"`
	Message  string `json:"message"`
	Blocking bool   `json:"blocking"`
}

// analyze runs Istio's analyzers on the cluster as it is and as it would be
// after the plan, prints the findings the plan introduces (or that name a
// planned object), and returns the codes of those at or above threshold.
func (r *Runner) analyze(ctx context.Context, plan *Plan, threshold Severity) ([]string, error) {
	fs, preexisting, err := r.findings(ctx, plan, threshold)
	if err != nil {
		return nil, err
	}
	var blocked []string
	for _, f := range fs {
		fmt.Fprintln(r.C.Streams.ErrOut, f.Message)
		if f.Blocking {
			blocked = append(blocked, f.Code)
		}
	}
	if preexisting > 0 {
		fmt.Fprintf(r.C.Streams.ErrOut, "Istio analysis: %d finding(s) already present in the cluster are not caused by this plan (see kubectl mesh analyze -A).\n", preexisting)
	}
	return blocked, nil
}

// findings returns what analyze reports, and how many findings exist
// already. Those are only counted: real clusters are noisy and a plan
// should not be blocked by problems it did not cause. Without read access
// the plan gets an ANALYSIS-SKIPPED check instead.
func (r *Runner) findings(ctx context.Context, plan *Plan, threshold Severity) ([]Finding, int, error) {
	rd, err := r.C.Reads()
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	for _, o := range plan.Objects() {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, 0, err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	inPlan := map[string]bool{}
	var kinds []schema.GroupVersionKind
	for _, o := range plan.Objects() {
		inPlan[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = true
		inPlan[o.GetKind()+" "+o.GetName()] = true
		kinds = append(kinds, o.GroupVersionKind())
	}

	// The cluster as it is and as planned, analyzed side by side from one
	// snapshot, by the analyzers that read a kind the plan changes: the
	// others find the same either way. The snapshot is read through the
	// planner's reader: what the planner listed is not listed again.
	opts := AnalysisOptions(r.C.Engine.IstioNamespace, kinds...)
	planned := opts
	planned.Files = []analysis.Source{{Name: "plan", Reader: &buf}}
	planned.Planned = true
	run := r.Analyze
	if run == nil {
		run = analysis.RunLive
	}
	res, err := run(ctx, rd, opts, planned)
	var denied *analysis.DeniedError
	if errors.As(err, &denied) {
		// Analysis needs cluster-wide reads; without them the plan gets a
		// finding the user can accept, instead of a hang or a silent skip.
		plan.Checks = append(plan.Checks, Check{
			ID: "ANALYSIS-SKIPPED", Severity: Warning,
			Message: fmt.Sprintf("Istio analysis skipped: you %s", denied),
			Hint:    "ask for read access to these kinds (a ClusterRole with list; kubectl mesh rbac prints one), or accept with --accept ANALYSIS-SKIPPED",
		})
		return nil, 0, nil
	} else if err != nil {
		return nil, 0, err
	}
	before, after := res[0], res[1]

	existing := map[string]bool{}
	for _, m := range before {
		existing[analysis.Key(m)] = true
	}
	var out []Finding
	preexisting := 0
	for _, m := range after {
		if existing[analysis.Key(m)] && !inPlan[analysis.Subject(m)] {
			preexisting++
			continue
		}
		sev := levelSeverity(m.Type.Level())
		out = append(out, Finding{
			Code: m.Type.Code(), Level: sev.String(), Message: m.String(),
			Blocking: r.blocks(m.Type.Code(), sev, threshold),
		})
	}
	return out, preexisting, nil
}

// AnalysisOptions are the options of a plan's analysis when it writes
// objects of these kinds.
func AnalysisOptions(istioNamespace string, kinds ...schema.GroupVersionKind) analysis.Options {
	return analysis.Options{IstioNamespace: istioNamespace, Changed: analysis.Changed(kinds...)}
}

func levelSeverity(l diag.Level) Severity {
	switch l {
	case diag.Error:
		return Error
	case diag.Warning:
		return Warning
	}
	return Info
}

// blocks reports whether a finding (check ID or analyzer code) stops the
// plan: at or above the threshold and not accepted with --accept.
func (r *Runner) blocks(id string, sev, threshold Severity) bool {
	return sev >= threshold && !slices.Contains(r.C.Engine.Accept, id)
}
