package canary

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Check IDs, for --accept.
const (
	CheckGate         = "CANARY-GATE"
	CheckInconclusive = "CANARY-GATE-INCONCLUSIVE"
	CheckWeights      = "CANARY-WEIGHTS"
	CheckSticky       = "CANARY-STICKY-SESSIONS"
	CheckGateSkipped  = "CANARY-GATE-SKIPPED"
	// CheckPolicyNotApplied: a DestinationRule's policy does not follow
	// traffic to the per-version Services of a Gateway API canary.
	CheckPolicyNotApplied = "CANARY-POLICY-NOT-APPLIED"
)

// gate holds the metric gate's flags.
type gate struct {
	PrometheusURL string
	Interval      string
	MinSuccess    float64
	MaxP99        time.Duration
	MinRequests   int
	Skip          bool

	interval time.Duration
}

func (g *gate) addGateFlags(f *pflag.FlagSet) {
	f.StringVar(&g.PrometheusURL, "prometheus-url", "", "Prometheus for the gate (default: a Prometheus Service in the cluster, through the API server)")
	f.StringVar(&g.Interval, "interval", "5m", "Window the gate looks at (a Prometheus duration)")
	f.Float64Var(&g.MinSuccess, "min-success-rate", 99, "Lowest acceptable share of canary requests not answered 5xx, in percent")
	f.DurationVar(&g.MaxP99, "max-p99", 500*time.Millisecond, "Highest acceptable p99 latency of the canary")
	f.IntVar(&g.MinRequests, "min-requests", 100, "Fewest canary requests in --interval for a verdict (fewer is inconclusive)")
	f.BoolVar(&g.Skip, "skip-gate", false, "Step without looking at metrics (recorded in the change set)")
}

func (g *gate) validate() error {
	w, err := telemetry.ParseWindow("--interval", g.Interval)
	if err != nil {
		return err
	}
	g.interval = w
	if g.PrometheusURL != "" {
		if err := telemetry.ParseURL(g.PrometheusURL); err != nil {
			return err
		}
	}
	if g.MinSuccess < 0 || g.MinSuccess > 100 {
		return fmt.Errorf("invalid --min-success-rate %v: use a percentage from 0 to 100", g.MinSuccess)
	}
	if g.MaxP99 <= 0 {
		return fmt.Errorf("invalid --max-p99 %v: use a positive duration such as 500ms", g.MaxP99)
	}
	if g.MinRequests < 1 {
		return fmt.Errorf("invalid --min-requests %d: use at least 1", g.MinRequests)
	}
	return nil
}

// verdict of a gate.
type verdict struct {
	Pass, Inconclusive bool
	Detail, Where      string
}

// evaluate reads the canary's health from Prometheus. required=false (for
// status) returns a zero verdict when there is no Prometheus.
func (g *gate) evaluate(ctx context.Context, c *cli.Context, t *target, s *State, required bool) (*verdict, error) {
	prom, err := telemetry.ConnectWith(ctx, c, g.PrometheusURL, c.Engine.IstioNamespace)
	if err != nil {
		return nil, err
	}
	if prom == nil {
		if !required {
			return nil, nil
		}
		return nil, exitcode.New(exitcode.Unavailable, fmt.Errorf("no Prometheus found for the canary gate: pass --prometheus-url URL, or --skip-gate to step without metrics"))
	}
	// A Gateway API canary's requests are reported for its version Service.
	services := []string{t.Service}
	if s.gateway() {
		services = append(services, s.CanaryService)
	}
	h, err := prom.Health(ctx, t.Namespace, services, s.Canary, g.interval, c.Now())
	if err != nil {
		return nil, err
	}
	return g.judge(h, prom.Where, s.Canary), nil
}

// judge compares the canary's health with the thresholds.
func (g *gate) judge(h telemetry.Health, where, version string) *verdict {
	v := &verdict{Where: where}
	if h.Requests < float64(g.MinRequests) {
		v.Inconclusive = true
		v.Detail = fmt.Sprintf("%s served %.0f request(s) in the last %s, fewer than --min-requests %d", version, h.Requests, g.Interval, g.MinRequests)
		return v
	}
	success := 100 * (h.Requests - h.Errors) / h.Requests
	v.Detail = fmt.Sprintf("%s: success %.2f%% of %.0f requests (min %.2f%%)", version, success, h.Requests, g.MinSuccess)
	v.Pass = success >= g.MinSuccess
	if h.HasLatency {
		p99 := time.Duration(h.P99 * float64(time.Millisecond))
		v.Detail += fmt.Sprintf(", p99 %s (max %s)", p99.Round(time.Millisecond), g.MaxP99)
		v.Pass = v.Pass && p99 <= g.MaxP99
	} else {
		v.Detail += ", no latency histogram"
	}
	return v
}

// checks turns a verdict into findings: a failed or inconclusive gate
// blocks the step unless accepted.
func (v *verdict) checks() []pipeline.Check {
	switch {
	case v.Inconclusive:
		return []pipeline.Check{{ID: CheckInconclusive, Severity: pipeline.Error,
			Message: "gate inconclusive: " + v.Detail + " (Prometheus: " + v.Where + ")",
			Hint:    "send more traffic to the canary (or lower --min-requests / widen --interval) before stepping"}}
	case !v.Pass:
		return []pipeline.Check{{ID: CheckGate, Severity: pipeline.Error,
			Message: "gate failed: " + v.Detail + " (Prometheus: " + v.Where + ")",
			Hint:    "kubectl mesh canary abort sends all traffic back to the stable version"}}
	}
	return []pipeline.Check{{ID: CheckGate, Severity: pipeline.Info, Message: "gate passed: " + v.Detail}}
}
