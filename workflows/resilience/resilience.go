// Package resilience is `kubectl mesh resilience`: a route timeout, retries
// of reads only, outlier detection sized to the pool and a connection pool
// from the Service's observed latency, merged into the team's
// VirtualService and DestinationRule.
package resilience

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	lint "github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Options of the resilience workflow.
type Options struct {
	Namespace, Service string
	Window             string
	PrometheusURL      string
	Override           bool
	MinRequests        int
	// Flags for every value; unset ones come from the evidence.
	Timeout, PerTryTimeout, Interval, BaseEjectionTime time.Duration
	Attempts, Consecutive5xx, MaxEjectionPercent       int
	MaxConnections, MaxPending                         int
	RetryOn                                            string

	window   time.Duration
	flags    *pflag.FlagSet
	svc      *corev1.Service
	pods     int
	vs, dr   *unstructured.Unstructured // the team's, or nil
	observed telemetry.Latency
	where    string
	set      Settings
	shown    bool
}

// New returns the workflow with its defaults.
func New() *Options { return &Options{Window: "7d", MinRequests: 100} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resilience SERVICE",
		Short: "Timeouts, retries of reads and circuit breaking for a Service, from its observed latency",
		Long: `Reads the Service's destination-reported latency (p50, p99, p99.9 from
istio_request_duration_milliseconds), error and request rates over --window, and
its pod count, and proposes — with the reason for each number:

  - a route timeout (p99.9 × 2, within 250ms–30s), and retries of GET and HEAD
    only (a route matching them, with attempts, perTryTimeout and
    retryOn connect-failure,refused-stream,unavailable,cancelled,503), with
    retries.attempts: 0 on the route that takes writes, overriding Istio's
    implicit default retry;
  - DestinationRule outlierDetection whose maxEjectionPercent leaves a healthy
    endpoint (none on a single pod), and a connectionPool from the observed
    concurrency.

They are merged into the team's VirtualService and DestinationRule: other
routes, match order, subsets and TLS kept, and a field the team already set
kept unless --override. Every value has a flag. The resilience lint (KM0101–
KM0105) runs on the result, as on every plan.`,
		Example: `  kubectl mesh resilience -n shop reviews
  kubectl mesh resilience -n shop reviews --timeout 2s --attempts 1 --yes`,
		Args: cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&o.Window, "window", o.Window, "How far back to read latency (a Prometheus duration)")
	f.StringVar(&o.PrometheusURL, "prometheus-url", "", "Prometheus to read Istio telemetry from (default: a Prometheus Service in the cluster, through the API server)")
	f.IntVar(&o.MinRequests, "min-requests", o.MinRequests, "Fewest requests in --window for the figures to count (fewer is inconclusive)")
	f.BoolVar(&o.Override, "override", false, "Replace timeout, retries, outlierDetection and connectionPool the team already set")
	f.DurationVar(&o.Timeout, "timeout", 0, "Route timeout (default: p99.9 × 2)")
	f.DurationVar(&o.PerTryTimeout, "per-try-timeout", 0, "Timeout of each try of a read (default: p99 × 1.5, within timeout / tries)")
	f.IntVar(&o.Attempts, "attempts", 0, "Retries of a read (default 2)")
	f.StringVar(&o.RetryOn, "retry-on", "", "Envoy retry conditions for reads (default "+retryOnReads+")")
	f.IntVar(&o.Consecutive5xx, "consecutive-5xx", 0, "5xx in a row that eject a pod (default 5, 10 above a 5% error rate)")
	f.DurationVar(&o.Interval, "interval", 0, "Outlier detection sweep interval (default 10s)")
	f.DurationVar(&o.BaseEjectionTime, "base-ejection-time", 0, "How long a pod stays ejected, at least (default 30s)")
	f.IntVar(&o.MaxEjectionPercent, "max-ejection-percent", 0, "Most of the pool ejected at once (default: leaves a healthy pod)")
	f.IntVar(&o.MaxConnections, "max-connections", 0, "connectionPool.tcp.maxConnections (default: observed concurrency × 4)")
	f.IntVar(&o.MaxPending, "max-pending", 0, "connectionPool.http.http1MaxPendingRequests (default: observed concurrency × 2)")
	o.flags = f
	return cmd
}

// positive are the numeric flags that must be above zero when given.
func (o *Options) parse() error {
	w, err := telemetry.ParseOptions(o.Window, o.PrometheusURL)
	if err != nil {
		return err
	}
	o.window = w
	if o.flags == nil {
		return nil
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"timeout", o.Timeout}, {"per-try-timeout", o.PerTryTimeout}, {"interval", o.Interval}, {"base-ejection-time", o.BaseEjectionTime}} {
		if o.flags.Changed(d.flag) && d.v <= 0 {
			return fmt.Errorf("invalid --%s %s: use a positive duration such as 2s", d.flag, d.v)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
		min  int
	}{{"attempts", o.Attempts, 0}, {"consecutive-5xx", o.Consecutive5xx, 1}, {"max-ejection-percent", o.MaxEjectionPercent, 0}, {"max-connections", o.MaxConnections, 1}, {"max-pending", o.MaxPending, 1}, {"min-requests", o.MinRequests, 1}} {
		if o.flags.Changed(n.flag) && n.v < n.min {
			return fmt.Errorf("invalid --%s %d: use a whole number of at least %d", n.flag, n.v, n.min)
		}
	}
	if o.flags.Changed("max-ejection-percent") && o.MaxEjectionPercent > 100 {
		return fmt.Errorf("invalid --max-ejection-percent %d: use 0 to 100", o.MaxEjectionPercent)
	}
	return nil
}

// Complete reads the Service, its routing and its traffic, then settles
// every value: a flag, else the evidence — asked on a terminal.
func (o *Options) Complete(ctx context.Context, c *cli.Context, args []string) error {
	if err := o.parse(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	if len(args) == 0 {
		return exitcode.Usagef("name the Service: kubectl mesh resilience -n NS SERVICE")
	}
	o.Service = args[0]
	ns, _, err := c.Namespace()
	if err != nil {
		return err
	}
	o.Namespace = ns
	if err := o.read(ctx, c); err != nil {
		return err
	}
	prom, err := telemetry.Require(ctx, c, o.PrometheusURL, c.Engine.IstioNamespace, "read "+o.Service+"'s latency from")
	if err != nil {
		return err
	}
	o.where = prom.Where
	if o.observed, err = prom.Latency(ctx, ns, o.Service, o.window, c.Now()); err != nil {
		return err
	}
	o.settle()
	if c.CanPrompt() {
		return o.ask(c)
	}
	return nil
}

// read gets the Service, counts its pods and finds the team's
// VirtualService and DestinationRule for it (a LIST of each kind in the
// namespace, or none when the plan's analysis lists them cluster-wide).
func (o *Options) read(ctx context.Context, c *cli.Context) error {
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	svcs, err := reads.List[*corev1.Service](ctx, rd, reads.Request{Resource: mesh.Services, Namespace: o.Namespace})
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	for _, svc := range svcs {
		if svc.Name == o.Service {
			o.svc = svc
		}
	}
	if o.svc == nil {
		return exitcode.Usagef("service %q not found in namespace %s: pick another, or another namespace with -n", o.Service, o.Namespace)
	}
	if len(o.svc.Spec.Selector) > 0 {
		pods, err := reads.List[*corev1.Pod](ctx, rd, reads.Request{Resource: mesh.Pods, Namespace: o.Namespace, Labels: labels.SelectorFromSet(o.svc.Spec.Selector).String()})
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
				o.pods++
			}
		}
	}
	fqdn := lint.FQDN(o.Service, o.Namespace)
	vss, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.VirtualServices, Namespace: o.Namespace})
	if err != nil {
		return fmt.Errorf("listing virtualservices: %w", err)
	}
	for _, vs := range vss {
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		for _, h := range hosts {
			if lint.FQDN(h, o.Namespace) == fqdn {
				o.vs = vs
			}
		}
	}
	drs, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.DestinationRules, Namespace: o.Namespace})
	if err != nil {
		return fmt.Errorf("listing destinationrules: %w", err)
	}
	for _, dr := range drs {
		if h, _, _ := unstructured.NestedString(dr.Object, "spec", "host"); lint.FQDN(h, o.Namespace) == fqdn {
			o.dr = dr
		}
	}
	return nil
}

// settle fills every value: the flag when given, else the proposal.
func (o *Options) settle() {
	s := propose(o.observed, o.pods)
	f := o.flags
	byFlag := func(flag string) bool {
		if f != nil && f.Changed(flag) {
			s.Why[flag] = "--" + flag
			return true
		}
		return false
	}
	if byFlag("timeout") {
		s.Timeout = o.Timeout
	}
	if byFlag("per-try-timeout") {
		s.PerTryTimeout = o.PerTryTimeout
	}
	if byFlag("attempts") {
		s.Attempts = o.Attempts
	}
	if byFlag("retry-on") {
		s.RetryOn = o.RetryOn
	}
	if byFlag("consecutive-5xx") {
		s.Consecutive5xx = o.Consecutive5xx
	}
	if byFlag("interval") {
		s.Interval = o.Interval
	}
	if byFlag("base-ejection-time") {
		s.BaseEjectionTime = o.BaseEjectionTime
	}
	if byFlag("max-ejection-percent") {
		s.MaxEjectionPercent, s.Outlier = o.MaxEjectionPercent, true
	}
	if byFlag("max-connections") {
		s.MaxConnections = o.MaxConnections
	}
	if byFlag("max-pending") {
		s.MaxPending = o.MaxPending
	}
	o.set = s
}

// ask shows the observed figures and the proposal, and lets each value be
// accepted (Enter) or edited; a value given by flag is not asked.
func (o *Options) ask(c *cli.Context) error {
	var b strings.Builder
	o.printObserved(&b)
	c.Prompter.Tell(b.String())
	o.shown = true
	p := c.Prompter
	dur := func(flag, q string, into *time.Duration) error {
		if o.flags.Changed(flag) {
			return nil
		}
		ans, err := p.Input(fmt.Sprintf("%s (%s):", q, o.set.Why[flag]), into.String())
		if err != nil {
			return err
		}
		d, err := time.ParseDuration(strings.TrimSpace(ans))
		if err != nil || d <= 0 {
			return exitcode.Usagef("invalid %s %q: use a positive duration such as 2s", q, ans)
		}
		*into = d
		return nil
	}
	num := func(flag, q string, into *int, minimum int) error {
		if o.flags.Changed(flag) {
			return nil
		}
		ans, err := p.Input(fmt.Sprintf("%s (%s):", q, o.set.Why[flag]), strconv.Itoa(*into))
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(strings.TrimSpace(ans))
		if err != nil || n < minimum {
			return exitcode.Usagef("invalid %s %q: use a whole number of at least %d", q, ans, minimum)
		}
		*into = n
		return nil
	}
	s := &o.set
	for _, step := range []func() error{
		func() error { return dur("timeout", "Route timeout", &s.Timeout) },
		func() error { return num("attempts", "Retries of reads", &s.Attempts, 0) },
		func() error { return dur("per-try-timeout", "Timeout of each try", &s.PerTryTimeout) },
		func() error {
			if o.flags.Changed("retry-on") {
				return nil
			}
			ans, err := p.Input("Retry reads on (Envoy conditions):", s.RetryOn)
			if ans = strings.TrimSpace(ans); err == nil && ans != "" {
				s.RetryOn = ans
			}
			return err
		},
		func() error {
			if !s.Outlier {
				return nil // a single pod: no outlier detection to tune
			}
			for _, step := range []func() error{
				func() error { return num("consecutive-5xx", "5xx in a row that eject a pod", &s.Consecutive5xx, 1) },
				func() error { return dur("interval", "Outlier detection interval", &s.Interval) },
				func() error { return dur("base-ejection-time", "Shortest ejection", &s.BaseEjectionTime) },
				func() error {
					return num("max-ejection-percent", "Most of the pool ejected at once, %", &s.MaxEjectionPercent, 0)
				},
			} {
				if err := step(); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return num("max-connections", "Connection pool: max connections", &s.MaxConnections, 1) },
		func() error { return num("max-pending", "Connection pool: max pending requests", &s.MaxPending, 1) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error { return o.parse() }
