// Package authz is `kubectl mesh migrate-authz`: deny-by-default
// authorization for a namespace from the callers Prometheus saw, in two
// stages — dry-run policies Istio evaluates without enforcing (audit), then
// the same policies enforced once nothing observed would be denied.
package authz

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Stages of the migration.
const (
	StageAudit   = "audit"
	StageEnforce = "enforce"
)

// Options of the migrate-authz workflow.
type Options struct {
	Namespace     string
	Stage         string
	Window        string
	PrometheusURL string
	AllowFrom     []string

	root   string
	window time.Duration
	extra  []caller
	snap   *snapshot
	ev     *evidence
	flags  *pflag.FlagSet
	// edgesShown: the questions were asked over the callers' table, which
	// the plan's report then does not repeat.
	edgesShown bool
}

// caller is an --allow-from value: one principal or every identity of a namespace.
type caller struct {
	Principal string // cluster.local/ns/NS/sa/SA
	Namespace string // ns/NAME
}

func (c caller) String() string {
	if c.Namespace != "" {
		return "ns/" + c.Namespace
	}
	return c.Principal
}

// New returns the workflow with its defaults.
func New() *Options { return &Options{Window: "7d"} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate-authz",
		Short: "Deny-by-default authorization for a namespace, from the callers the mesh saw",
		Long: `Turns the traffic Prometheus saw into a namespace's workloads over --window
(destination-reported istio_requests_total and istio_tcp_connections_opened_total,
by caller identity) into one ALLOW AuthorizationPolicy per workload naming exactly
the observed principals, plus a namespace-wide allow-nothing policy.

Two stages. audit applies them with Istio's istio.io/dry-run annotation:
evaluated and logged by the proxies, never enforced. enforce removes the
annotation, and is blocked unless every request observed over the window is
allowed by the audited rules (each caller that would be denied is named), the
workloads are STRICT (principals come from mTLS), no plaintext caller remains and
the proxies' shadow-rule metrics show no would-be denials.

The team's ALLOW policies are kept and their callers not repeated; DENY and
CUSTOM policies are left alone; a namespace already deny-by-default gets no
second allow-nothing. Callers the window cannot show (a monthly job) are added
with --allow-from, recorded on the policies. kubectl mesh undo restores the
previous state.`,
		Example: `  # stage 1: dry-run policies from the last week of traffic
  kubectl mesh migrate-authz -n shop
  # stage 2: enforce, once the audit has soaked
  kubectl mesh migrate-authz -n shop --stage enforce
  # a caller the window did not see
  kubectl mesh migrate-authz -n shop --allow-from cluster.local/ns/batch/sa/reports`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Stage, "stage", "", `"audit" or "enforce" (default: the next stage for the namespace)`)
	f.StringVar(&o.Window, "window", o.Window, "How far back to look for callers (a Prometheus duration: 7d catches weekly jobs)")
	f.StringVar(&o.PrometheusURL, "prometheus-url", "", "Prometheus to read Istio telemetry from (default: a Prometheus Service in the cluster, through the API server)")
	f.StringSliceVar(&o.AllowFrom, "allow-from", nil, "Also allow a caller the window did not see: a principal (cluster.local/ns/NS/sa/SA) or ns/NAMESPACE (comma-separated, repeatable)")
	o.flags = f
	return cmd
}

// parse checks the flags' syntax; it is pure.
func (o *Options) parse() error {
	if o.Stage != "" && o.Stage != StageAudit && o.Stage != StageEnforce {
		return fmt.Errorf("invalid --stage %q: use audit or enforce", o.Stage)
	}
	w, err := telemetry.ParseOptions(o.Window, o.PrometheusURL)
	if err != nil {
		return err
	}
	o.window = w
	o.extra = nil
	for _, s := range o.AllowFrom {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		c, err := parseCaller(s)
		if err != nil {
			return err
		}
		o.extra = append(o.extra, c)
	}
	return nil
}

// parseCaller reads a principal (cluster.local/ns/NS/sa/SA, "spiffe://"
// allowed) or ns/NAMESPACE.
func parseCaller(s string) (caller, error) {
	bad := func(why string) (caller, error) {
		return caller{}, fmt.Errorf("invalid --allow-from %q: %s; use a principal such as cluster.local/ns/batch/sa/reports, or ns/NAMESPACE", s, why)
	}
	if ns, ok := strings.CutPrefix(s, "ns/"); ok {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return bad("not a namespace name")
		}
		return caller{Namespace: ns}, nil
	}
	p := strings.TrimPrefix(s, "spiffe://")
	parts := strings.Split(p, "/")
	if len(parts) != 5 || parts[0] == "" || parts[1] != "ns" || parts[3] != "sa" {
		return bad("neither a principal nor ns/NAME")
	}
	if len(validation.IsDNS1123Label(parts[2])) > 0 || len(validation.IsDNS1123Subdomain(parts[4])) > 0 {
		return bad("the namespace or service account is not a valid name")
	}
	return caller{Principal: p}, nil
}

// Complete reads the cluster once and fills what flags left open, asking
// when a terminal is attached.
func (o *Options) Complete(ctx context.Context, c *cli.Context, _ []string) error {
	o.root = c.Engine.IstioNamespace
	if err := o.parse(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	ns, explicit, err := c.Namespace()
	if err != nil {
		return err
	}
	if !explicit && c.CanPrompt() {
		if ns, err = mesh.AskNamespace(ctx, rd, c.Prompter, "Namespace to lock down:", ns); err != nil {
			return err
		}
	}
	o.Namespace = ns
	if o.snap, err = read(ctx, c, o.root, ns); err != nil {
		return err
	}
	if !o.snap.NamespaceExists {
		return exitcode.Usagef("namespace %q not found: pick another with -n", ns)
	}
	if o.Stage == "" {
		o.Stage = o.nextStage()
	}
	if o.Stage == StageEnforce && len(o.snap.audit()) == 0 {
		return exitcode.Usagef("namespace %s has no audited policies to enforce: run kubectl mesh migrate-authz -n %s --stage audit first, and let it soak", ns, ns)
	}
	// The evidence comes before the questions: they are asked over the
	// table of observed callers.
	if o.ev, err = o.observe(ctx, c); err != nil {
		return err
	}
	if c.CanPrompt() {
		return o.ask(c, o.ev.Edges, o.ev.Where)
	}
	return nil
}

// nextStage: audit first; enforce once this workflow's policies exist,
// and again (never back to dry-run) once they are enforced.
func (o *Options) nextStage() string {
	if len(o.snap.audit()) > 0 {
		return StageEnforce
	}
	return StageAudit
}

// ask shows the observed callers and asks for the stage and extra callers.
func (o *Options) ask(c *cli.Context, edges []telemetry.Edge, where string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Callers of namespace %s over the last %s (Prometheus: %s):\n", o.Namespace, o.Window, where)
	printEdges(&b, edges)
	c.Prompter.Tell(b.String())
	o.edgesShown = true
	var err error
	if !o.flags.Changed("stage") {
		if o.Stage, err = c.Prompter.Select("Stage to apply:", []string{StageAudit, StageEnforce}, o.Stage); err != nil {
			return err
		}
		if o.Stage == StageEnforce && len(o.snap.audit()) == 0 {
			return exitcode.Usagef("namespace %s has no audited policies to enforce: apply the audit stage first", o.Namespace)
		}
	}
	if !o.flags.Changed("allow-from") {
		ans, err := c.Prompter.Input("Callers the window did not see, to allow too (principals or ns/NAME, comma-separated; empty for none):", "")
		if err != nil {
			return err
		}
		if ans = strings.TrimSpace(ans); ans != "" {
			o.AllowFrom = strings.Split(ans, ",")
		}
	}
	if err := o.parse(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	return nil
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error { return o.parse() }
