package pipeline

import (
	"context"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

// resilienceChecks lints the VirtualServices and DestinationRules a plan
// writes: a retry budget beyond the timeout blocks like any Error finding.
func (r *Runner) resilienceChecks(ctx context.Context, plan *Plan) []Check {
	var in resilience.Input
	for _, o := range plan.Objects() {
		switch o.GetKind() {
		case "VirtualService":
			in.VirtualServices = append(in.VirtualServices, o)
		case "DestinationRule":
			in.DestinationRules = append(in.DestinationRules, o)
		}
	}
	if len(in.VirtualServices)+len(in.DestinationRules) == 0 || plan.UndoOf != "" {
		return nil
	}
	if rd, err := r.C.Reads(); err == nil && len(in.VirtualServices) > 0 {
		in.MeshRetryOn = resilience.MeshRetryOn(ctx, rd, r.C.Engine.IstioNamespace)
	}
	return ResilienceChecks(resilience.Lint(in))
}

// ResilienceChecks turns lint findings into plan checks.
func ResilienceChecks(fs []resilience.Finding) []Check {
	var out []Check
	for _, f := range fs {
		sev := Info
		switch f.Level {
		case "Error":
			sev = Error
		case "Warning":
			sev = Warning
		}
		out = append(out, Check{ID: f.Code, Severity: sev, Message: f.Message, Objects: []string{f.Ref()}, URL: f.URL()})
	}
	return out
}
