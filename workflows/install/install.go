// Package install is `kubectl mesh install`: Istio rendered in-process with
// Istio's own renderer (the code behind istioctl manifest generate), with a
// real production profile, applied phase by phase through the engine.
package install

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
)

// Profiles offered: ours first, then Istio's.
const (
	ProfileProduction = "production"
	DefaultHub        = "docker.io/istio"
	// DefaultTag matches the Istio release of the embedded charts.
	DefaultTag = mesh.IstioRelease
)

var Profiles = []string{ProfileProduction, "default", "minimal", "demo", "ambient"}

var outboundPolicies = []string{"ALLOW_ANY", "REGISTRY_ONLY"}

// Options of the install workflow; every prompt is also a flag.
type Options struct {
	Profile            string
	Revision           string
	Ingress            bool
	IngressServiceType string
	Egress             bool
	AccessLog          bool
	TracingSampling    float64
	TracingAddress     string
	OutboundPolicy     string
	Hub, Tag           string
	Sets               []string
	Files              []string
	Explain            bool
	Wait               bool
	Timeout            time.Duration
	GatewayAPI         bool

	flags          *pflag.FlagSet
	istioNamespace string
	gatewayCRDs    map[string]gatewayCRD // installed, read by the prechecks
}

// New returns the workflow with its defaults.
func New() *Options {
	return &Options{
		Profile: ProfileProduction, Ingress: true, IngressServiceType: "LoadBalancer", AccessLog: true,
		OutboundPolicy: "ALLOW_ANY", Hub: DefaultHub, Tag: DefaultTag, Wait: true, Timeout: 5 * time.Minute,
	}
}

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Istio with a production profile, rendered in-process and applied phase by phase",
		Long: `Renders Istio with Istio's own renderer (what istioctl manifest generate does),
prechecks the cluster, and applies CRDs, the namespace, the control plane and
the gateways in that order with a diff, confirmation, journal and undo; then
waits for the rollouts. The "production" profile is Istio's default profile
plus replicas left to the autoscaler, drain-safe disruption budgets,
resources, zone and node spread, a priority class, gateways that drain
gracefully and safer mesh defaults; --explain prints every deviation and why,
and what is kept as Istio ships it. -o yaml and --output-dir render without a
cluster.`,
		Example: `  kubectl mesh install --explain
  kubectl mesh install --revision 1-31 --dry-run=server
  kubectl mesh install --revision 1-31 --yes
  kubectl mesh install --profile minimal --set meshConfig.enableTracing=true -o yaml > istio.yaml`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Profile, "profile", o.Profile, "Profile: "+strings.Join(Profiles, ", "))
	f.StringVar(&o.Revision, "revision", o.Revision, "Control-plane revision name, e.g. 1-31 (recommended: enables canary control-plane upgrades)")
	f.BoolVar(&o.Ingress, "ingress", o.Ingress, "Install the ingress gateway")
	f.StringVar(&o.IngressServiceType, "ingress-service-type", o.IngressServiceType, "Ingress gateway Service type: LoadBalancer, NodePort or ClusterIP")
	f.BoolVar(&o.Egress, "egress", o.Egress, "Install the egress gateway")
	f.BoolVar(&o.AccessLog, "access-log", o.AccessLog, "Write Envoy access logs to the proxies' stdout")
	f.Float64Var(&o.TracingSampling, "tracing-sampling", o.TracingSampling, "Tracing sampling percentage (0 turns tracing off)")
	f.StringVar(&o.TracingAddress, "tracing-address", o.TracingAddress, "Zipkin-compatible collector address host:port")
	f.StringVar(&o.OutboundPolicy, "outbound-policy", o.OutboundPolicy, "Outbound traffic policy: ALLOW_ANY or REGISTRY_ONLY")
	f.StringVar(&o.Hub, "hub", o.Hub, "Image registry")
	f.StringVar(&o.Tag, "tag", o.Tag, "Image tag (never empty or latest)")
	f.StringArrayVar(&o.Sets, "set", nil, "Extra IstioOperator value, e.g. values.pilot.env.PILOT_TRACE_SAMPLING=1; repeatable")
	f.StringArrayVarP(&o.Files, "filename", "f", nil, "IstioOperator file applied on top of the profile; repeatable")
	f.BoolVar(&o.GatewayAPI, "gateway-api", false, "Also install the Gateway API CRDs, standard channel "+mesh.GatewayAPIVersion()+" (Istio needs them for HTTPRoute; newer ones are kept)")
	f.BoolVar(&o.Explain, "explain", false, "Print why the production profile differs from Istio's default, then exit")
	f.BoolVar(&o.Wait, "wait", o.Wait, "Wait for the control plane and gateways to roll out")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "How long to wait for each rollout")
	o.flags = f
	return cmd
}

// Complete asks for what the flags left open when a terminal is attached.
func (o *Options) Complete(_ context.Context, c *cli.Context, _ []string) error {
	o.istioNamespace = c.Engine.IstioNamespace
	if o.Explain || !c.CanPrompt() || o.flags == nil {
		return nil
	}
	ask := func(flag string, fn func() error) error {
		if o.flags.Changed(flag) {
			return nil
		}
		return fn()
	}
	var err error
	steps := []struct {
		flag string
		fn   func() error
	}{
		{"profile", func() error { o.Profile, err = c.Prompter.Select("Profile:", Profiles, o.Profile); return err }},
		{"revision", func() error {
			o.Revision, err = c.Prompter.Input("Revision name (recommended, e.g. "+suggestedRevision(o.Tag)+"; empty for none):", suggestedRevision(o.Tag))
			return err
		}},
		{"ingress", func() error {
			o.Ingress, err = c.Prompter.Confirm("Install the ingress gateway?", o.Ingress)
			return err
		}},
		{"ingress-service-type", func() error {
			if !o.Ingress {
				return nil
			}
			o.IngressServiceType, err = c.Prompter.Select("Ingress gateway Service type:", []string{"LoadBalancer", "NodePort", "ClusterIP"}, o.IngressServiceType)
			return err
		}},
		{"egress", func() error { o.Egress, err = c.Prompter.Confirm("Install the egress gateway?", o.Egress); return err }},
		{"access-log", func() error { o.AccessLog, err = c.Prompter.Confirm("Access logs to stdout?", o.AccessLog); return err }},
		{"outbound-policy", func() error {
			o.OutboundPolicy, err = c.Prompter.Select("Outbound traffic policy:", outboundPolicies, o.OutboundPolicy)
			return err
		}},
		{"gateway-api", func() error {
			o.GatewayAPI, err = c.Prompter.Confirm("Install the Gateway API CRDs ("+mesh.GatewayAPIVersion()+", standard channel; Istio needs them for HTTPRoute)?", o.GatewayAPI)
			return err
		}},
		{"tracing-sampling", func() error {
			ans, err := c.Prompter.Input("Tracing sampling % (0 = off):", strconv.FormatFloat(o.TracingSampling, 'f', -1, 64))
			if err != nil {
				return err
			}
			if o.TracingSampling, err = strconv.ParseFloat(strings.TrimSpace(ans), 64); err != nil {
				return fmt.Errorf("tracing sampling %q is not a number: answer a percentage such as 1 or 0.5", ans)
			}
			return nil
		}},
		{"tracing-address", func() error {
			if o.TracingSampling == 0 {
				return nil
			}
			o.TracingAddress, err = c.Prompter.Input("Tracing collector address (host:port, Zipkin API):", o.TracingAddress)
			return err
		}},
		{"hub", func() error { o.Hub, err = c.Prompter.Input("Image hub:", o.Hub); return err }},
		{"tag", func() error { o.Tag, err = c.Prompter.Input("Image tag:", o.Tag); return err }},
	}
	for _, s := range steps {
		if err := ask(s.flag, s.fn); err != nil {
			return err
		}
	}
	return nil
}

// suggestedRevision turns a tag like 1.31.0 into the revision name 1-31.
func suggestedRevision(tag string) string {
	parts := strings.SplitN(tag, ".", 3)
	if len(parts) < 2 {
		return "stable"
	}
	return parts[0] + "-" + parts[1]
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error {
	if o.Explain {
		return nil
	}
	if !slices.Contains(Profiles, o.Profile) {
		return fmt.Errorf("unknown profile %q: use one of %s", o.Profile, strings.Join(Profiles, ", "))
	}
	if o.Revision != "" {
		if errs := validation.IsDNS1123Label(o.Revision); len(errs) > 0 {
			return fmt.Errorf("invalid --revision %q: it must be a DNS label (lowercase letters, digits and '-', e.g. 1-31)", o.Revision)
		}
		if o.Revision == "default" {
			return errors.New(`--revision default is reserved for the revision tag "default"; leave --revision empty for a default install`)
		}
	}
	if strings.TrimSpace(o.Hub) == "" {
		return errors.New("--hub must not be empty")
	}
	if t := strings.TrimSpace(o.Tag); t == "" || t == "latest" {
		return fmt.Errorf("--tag %q does not pin a release: use a concrete version such as %s", o.Tag, DefaultTag)
	}
	if !slices.Contains(outboundPolicies, o.OutboundPolicy) {
		return fmt.Errorf("invalid --outbound-policy %q: use ALLOW_ANY or REGISTRY_ONLY", o.OutboundPolicy)
	}
	switch o.IngressServiceType {
	case "LoadBalancer", "NodePort", "ClusterIP":
	default:
		return fmt.Errorf("invalid --ingress-service-type %q: use LoadBalancer, NodePort or ClusterIP", o.IngressServiceType)
	}
	if o.TracingSampling < 0 || o.TracingSampling > 100 {
		return fmt.Errorf("invalid --tracing-sampling %v: use a percentage from 0 to 100", o.TracingSampling)
	}
	for _, s := range o.Sets {
		k, _, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("invalid --set %q: use path=value, e.g. values.pilot.traceSampling=1.0", s)
		}
	}
	if o.Timeout <= 0 {
		return errors.New("--timeout must be positive, e.g. 5m")
	}
	return nil
}
