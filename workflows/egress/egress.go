// Package egress is `kubectl mesh migrate-egress`: from ALLOW_ANY to
// REGISTRY_ONLY for a namespace (or the mesh) in two stages — ServiceEntries
// for every external host the proxies were seen reaching through the
// passthrough path, then the lockdown, gated on nothing unregistered left.
package egress

import (
	"context"
	"fmt"
	"strconv"
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
	StageRegistry = "registry"
	StageLockdown = "lockdown"
)

// Options of the migrate-egress workflow.
type Options struct {
	Namespace        string
	MeshWide         bool
	Stage            string
	Window           string
	PrometheusURL    string
	Allow            []string
	ViaEgressGateway bool

	root   string
	window time.Duration
	extra  []host
	snap   *snapshot
	ev     *evidence
	flags  *pflag.FlagSet
	shown  bool // the inventory was printed with the questions
}

// host is one external destination to register.
type host struct {
	Name     string
	Port     uint32
	Protocol string // HTTP, HTTPS, TLS, TCP, GRPC, HTTP2
}

func (h host) String() string { return fmt.Sprintf("%s:%d/%s", h.Name, h.Port, h.Protocol) }

var protocols = []string{"HTTP", "HTTPS", "TLS", "TCP", "GRPC", "HTTP2"}

// New returns the workflow with its defaults.
func New() *Options { return &Options{Window: "7d"} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate-egress",
		Short: "Move a namespace (or the mesh) from ALLOW_ANY to REGISTRY_ONLY from the traffic the mesh saw",
		Long: `Lists what the workloads reached through Istio's passthrough path over --window
(source-reported istio_requests_total and istio_tcp_connections_opened_total to
PassthroughCluster, with the HTTP Host header or TLS SNI; BlackHoleCluster traffic
is shown as already refused), then moves in two stages:

  registry  a ServiceEntry per external host (MESH_EXTERNAL, DNS resolution, the
            ports and protocols seen, exported to the namespace unless --mesh-wide);
            --allow adds hosts the window did not see
  lockdown  outboundTrafficPolicy REGISTRY_ONLY in the namespace's default Sidecar
            (merged into an existing one, its egress hosts kept), or the root
            namespace's for --mesh-wide

Lockdown is blocked while traffic over the window went to a host:port nothing
registers (each is named) and while TCP destinations without a host remain
(register them with --allow, then accept). --via-egress-gateway also routes the
hosts through the installed egress gateway. kubectl mesh undo restores ALLOW_ANY.`,
		Example: `  kubectl mesh migrate-egress -n shop
  kubectl mesh migrate-egress -n shop --allow db.example.com:5432/TCP
  kubectl mesh migrate-egress -n shop --stage lockdown`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Stage, "stage", "", `"registry" or "lockdown" (default: the next stage)`)
	f.BoolVar(&o.MeshWide, "mesh-wide", false, "Every namespace: ServiceEntries exported mesh-wide and the root namespace's Sidecar")
	f.StringVar(&o.Window, "window", o.Window, "How far back to look for outbound traffic (a Prometheus duration: 7d catches weekly jobs)")
	f.StringVar(&o.PrometheusURL, "prometheus-url", "", "Prometheus to read Istio telemetry from (default: a Prometheus Service in the cluster, through the API server)")
	f.StringArrayVar(&o.Allow, "allow", nil, "Also register a host the window did not see: HOST:PORT[/PROTOCOL] (protocol HTTP, HTTPS, TLS, TCP, GRPC or HTTP2; default TLS on 443, HTTP otherwise); repeatable")
	f.BoolVar(&o.ViaEgressGateway, "via-egress-gateway", false, "Route the registered hosts through the installed egress gateway (Gateway, VirtualService, DestinationRule)")
	o.flags = f
	return cmd
}

// parse checks the flags' syntax; it is pure.
func (o *Options) parse() error {
	if o.Stage != "" && o.Stage != StageRegistry && o.Stage != StageLockdown {
		return fmt.Errorf("invalid --stage %q: use registry or lockdown", o.Stage)
	}
	w, err := telemetry.ParseOptions(o.Window, o.PrometheusURL)
	if err != nil {
		return err
	}
	o.window = w
	o.extra = nil
	for _, s := range o.Allow {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			h, err := parseHost(part)
			if err != nil {
				return err
			}
			o.extra = append(o.extra, h)
		}
	}
	return nil
}

// parseHost reads HOST:PORT[/PROTOCOL].
func parseHost(s string) (host, error) {
	bad := func(why string) (host, error) {
		return host{}, fmt.Errorf("invalid --allow %q: %s; use HOST:PORT[/PROTOCOL], e.g. api.stripe.com:443/TLS", s, why)
	}
	hp, proto, hasProto := strings.Cut(s, "/")
	name, portStr, ok := strings.Cut(hp, ":")
	if !ok {
		return bad("no port")
	}
	wild := strings.TrimPrefix(name, "*.")
	if name == "" || len(validation.IsDNS1123Subdomain(wild)) > 0 {
		return bad("not a host name")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return bad("port must be a number from 1 to 65535")
	}
	h := host{Name: strings.ToLower(name), Port: uint32(port), Protocol: "HTTP"}
	if port == 443 {
		h.Protocol = "TLS"
	}
	if hasProto {
		h.Protocol = strings.ToUpper(proto)
		if !contains(protocols, h.Protocol) {
			return bad("protocol must be one of " + strings.Join(protocols, ", "))
		}
	}
	return h, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Complete reads the cluster and the evidence once, and fills what flags
// left open, asking when a terminal is attached.
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
	switch {
	case o.MeshWide:
		if explicit && ns != o.root {
			return exitcode.Usagef("--mesh-wide locks down the mesh from the root namespace %s; drop -n %s", o.root, ns)
		}
		ns = o.root
	case !explicit && c.CanPrompt():
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
	if o.ev, err = o.observe(ctx, c); err != nil {
		return err
	}
	if o.Stage == "" {
		o.Stage = o.nextStage()
	}
	if c.CanPrompt() {
		if err := o.ask(c); err != nil {
			return err
		}
	}
	return nil
}

// nextStage: lockdown once every observed host is registered.
func (o *Options) nextStage() string {
	for _, e := range o.ev.Exits {
		if !e.Blocked && e.Host != "" && o.snap.covering(e.Host, e.Port, o.Namespace) == "" {
			return StageRegistry
		}
	}
	return StageLockdown
}

// ask shows the inventory and asks for the stage and extra hosts.
func (o *Options) ask(c *cli.Context) error {
	var b strings.Builder
	o.inventory(&b)
	c.Prompter.Tell(b.String())
	o.shown = true
	var err error
	if !o.flags.Changed("stage") {
		if o.Stage, err = c.Prompter.Select("Stage to apply:", []string{StageRegistry, StageLockdown}, o.Stage); err != nil {
			return err
		}
	}
	if !o.flags.Changed("allow") {
		ans, err := c.Prompter.Input("Hosts the window did not see, to register too (HOST:PORT[/PROTOCOL], comma-separated; empty for none):", "")
		if err != nil {
			return err
		}
		if ans = strings.TrimSpace(ans); ans != "" {
			o.Allow = []string{ans}
		}
	}
	if err := o.parse(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	return nil
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error { return o.parse() }
