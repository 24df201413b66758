package health

import (
	"context"
	"fmt"

	"istio.io/istio/pkg/config/analysis/diag"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

func checkAnalysis(ctx context.Context, rep *Report, c *cli.Context, s *cluster, ns string) error {
	const cat = "istio-analysis"
	if s.Denied != nil {
		rep.add(cat, "Istio's analyzers ran", pipeline.Check{ID: "CHECK-ANALYSIS-SKIPPED", Severity: pipeline.Warning,
			Message: "skipped: you " + s.Denied.Error(),
			Hint:    "run with a user that can read the mesh's configuration (kubectl mesh rbac check)"})
		return nil
	}
	msgs, err := analysis.Run(ctx, analysis.Options{Namespace: ns, IstioNamespace: c.Engine.IstioNamespace, Snapshot: s.Analysis})
	if err != nil {
		return err
	}
	var errs, warns []string
	for _, m := range msgs {
		line := m.Type.Code() + " " + m.Resource.Origin.FriendlyName()
		switch m.Type.Level() {
		case diag.Error:
			errs = append(errs, line)
		case diag.Warning:
			warns = append(warns, line)
		}
	}
	switch {
	case len(errs) > 0:
		rep.add(cat, "no Istio analyzer errors", pipeline.Check{ID: "CHECK-ANALYSIS-ERRORS", Severity: pipeline.Error,
			Message: fmt.Sprintf("%d error(s): %s", len(errs), short(errs)),
			Hint:    "kubectl mesh analyze -A for details"})
	default:
		rep.pass(cat, "CHECK-ANALYSIS-ERRORS", "no Istio analyzer errors")
	}
	if len(warns) > 0 {
		rep.add(cat, "no Istio analyzer warnings", pipeline.Check{ID: "CHECK-ANALYSIS-WARNINGS", Severity: pipeline.Warning,
			Message: fmt.Sprintf("%d warning(s): %s", len(warns), short(warns)),
			Hint:    "kubectl mesh analyze -A for details"})
	}
	return nil
}

// checkResilience reports the resilience lint: retry budgets, retried
// writes, outlier detection that can empty a pool.
func checkResilience(rep *Report, s *cluster, only string) {
	const cat = "resilience"
	in := resilience.Input{MeshRetryOn: s.MeshRetryOn, Endpoints: map[string]int{}}
	for _, vs := range s.VSs {
		if only == "" || vs.GetNamespace() == only {
			in.VirtualServices = append(in.VirtualServices, vs)
		}
	}
	for _, dr := range s.DRs {
		if only == "" || dr.GetNamespace() == only {
			in.DestinationRules = append(in.DestinationRules, dr)
		}
	}
	if len(in.VirtualServices)+len(in.DestinationRules) == 0 {
		return
	}
	bad := 0
	fs := resilience.Lint(in)
	for i, c := range pipeline.ResilienceChecks(fs) {
		if c.Severity == pipeline.Info {
			continue // advice, not a health problem: kubectl mesh analyze lists it
		}
		bad++
		c.Hint = "kubectl mesh resilience -n " + fs[i].Namespace + " SERVICE proposes settings from observed latency"
		rep.add(cat, c.ID+" "+c.Objects[0], c)
	}
	if bad == 0 {
		rep.pass(cat, "CHECK-RESILIENCE", "timeouts, retries and outlier detection")
	}
}
