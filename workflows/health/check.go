package health

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

var _ pipeline.Inspector = (*Check)(nil)

// Check is `kubectl mesh check`.
type Check struct {
	Pre    bool
	Output string
	Wait   time.Duration

	prechecks Prechecks
}

// NewCheck returns the check command's options.
func NewCheck(prechecks Prechecks) *Check { return &Check{prechecks: prechecks} }

// Prechecks are the install's prechecks (check --pre) and their notes. The
// install workflow provides them; the command tree passes them in.
type Prechecks func(ctx context.Context, c *cli.Context) ([]pipeline.Check, []string, error)

// Command implements pipeline.Workflow.
func (o *Check) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the mesh's health and posture (√ / ‼ / × with a hint for each)",
		Long: `Checks the Kubernetes API, Istio's CRDs, each revision's istiod and gateways
(availability, drain-blocking PodDisruptionBudgets), the injection and validation
webhooks (live Service, CA bundle), revision tags, namespaces' injection labels,
sidecar coverage and proxy version skew, each namespace's mTLS posture, and
common anti-patterns (sidecars without resource limits, allow-all
AuthorizationPolicies, workloads without probes, PERMISSIVE left on for long),
then runs Istio's analyzers. Exits 79 when a check fails (×); ‼ are warnings.

--pre runs only the install prechecks. -n limits the namespace checks.
-o json prints each result as a finding, as plans report theirs: an ID
(CHECK-…, an install precheck's INSTALL-…, a lint code KM01…) and a
severity, Info when the check passed.`,
		Example: `  kubectl mesh check
  kubectl mesh check --pre
  kubectl mesh check -n shop -o json
  kubectl mesh check --wait 5m`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.BoolVar(&o.Pre, "pre", false, "Run only the install prechecks")
	f.StringVarP(&o.Output, "output", "o", "table", "table or json")
	f.DurationVar(&o.Wait, "wait", 0, "Retry until no check fails or this long has passed")
	return cmd
}

// Complete implements pipeline.Workflow.
func (o *Check) Complete(context.Context, *cli.Context, []string) error { return nil }

// Validate implements pipeline.Workflow.
func (o *Check) Validate() error {
	if o.Output != "table" && o.Output != "json" {
		return fmt.Errorf("invalid -o/--output %q for check: use table or json", o.Output)
	}
	if o.Wait < 0 {
		return fmt.Errorf("invalid --wait %v: use a positive duration such as 5m", o.Wait)
	}
	return nil
}

// Inspect implements pipeline.Inspector: it runs the checks and prints
// the report.
func (o *Check) Inspect(ctx context.Context, c *cli.Context) error {
	ns, explicit, err := c.Namespace()
	if err != nil {
		return err
	}
	if !explicit {
		ns = ""
	}
	progress := progressLine(c)
	deadline := time.Now().Add(o.Wait)
	for {
		rep, err := o.run(ctx, c, ns, progress)
		if err != nil {
			progress("")
			return err
		}
		if rep.Summary.Error == 0 || time.Now().After(deadline) {
			progress("")
			if err := o.print(c.Streams.Out, rep); err != nil {
				return err
			}
			if rep.Summary.Error > 0 {
				return exitcode.Silent{Code: exitcode.Blocked}
			}
			return nil
		}
		progress(fmt.Sprintf("%d check(s) failing; retrying until %s…", rep.Summary.Error, deadline.Format("15:04:05")))
		select {
		case <-ctx.Done():
			return exitcode.New(exitcode.Interrupted, ctx.Err())
		case <-time.After(2 * time.Second):
		}
		c.ForgetReads() // the next pass reads the cluster anew
	}
}

// progressLine rewrites one line of stderr on a terminal; elsewhere it is silent.
func progressLine(c *cli.Context) step {
	if !cli.IsTerminal(c.Streams.ErrOut) {
		return func(string) {}
	}
	return func(what string) {
		fmt.Fprintf(c.Streams.ErrOut, "\r\x1b[K%s", what)
	}
}

func (o *Check) run(ctx context.Context, c *cli.Context, ns string, progress step) (*Report, error) {
	rep := &Report{}
	s, err := read(ctx, c, ns, progress, !o.Pre)
	if err != nil {
		return nil, err
	}
	checkAPI(rep, s)
	if o.Pre {
		progress("running the install prechecks")
		checks, notes, err := o.prechecks(ctx, c)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			rep.pass("pre-install", "CHECK-PRE-NOTE", n)
		}
		for _, ch := range checks {
			rep.add("pre-install", ch.ID, ch)
		}
		if len(checks) == 0 {
			rep.pass("pre-install", "CHECK-PRE-INSTALL", "the cluster is ready for kubectl mesh install")
		}
		return rep, nil
	}
	in := scope{root: c.Engine.IstioNamespace, only: ns, now: c.Now()}
	for _, check := range clusterChecks {
		check(rep, s, in)
	}
	progress("running Istio's analyzers")
	if err := checkAnalysis(ctx, rep, c, s, ns); err != nil {
		return nil, err
	}
	return rep, nil
}

// scope is what a check looks at besides the cluster read: the Istio
// namespace, the one namespace asked about ("" for all) and the time.
type scope struct {
	root, only string
	now        time.Time
}

// clusterChecks run in this order on the one read of the cluster; a new
// check is a function of the report and that read, added here. Istio's
// analyzers run after them (checkAnalysis), on the snapshot taken in the
// same read.
var clusterChecks = []func(*Report, *cluster, scope){
	func(r *Report, s *cluster, _ scope) { checkCRDs(r, s) },
	func(r *Report, s *cluster, _ scope) { checkGatewayAPI(r, s) },
	func(r *Report, s *cluster, in scope) { checkControlPlane(r, s, in.root) },
	func(r *Report, s *cluster, _ scope) { checkWebhooks(r, s) },
	func(r *Report, s *cluster, in scope) { checkNamespaces(r, s, in.only) },
	func(r *Report, s *cluster, in scope) { checkSidecars(r, s, in.only) },
	func(r *Report, s *cluster, in scope) { checkPosture(r, s, in.root, in.only, in.now) },
	func(r *Report, s *cluster, in scope) { checkAntiPatterns(r, s, in.only) },
	func(r *Report, s *cluster, in scope) { checkResilience(r, s, in.only) },
}
