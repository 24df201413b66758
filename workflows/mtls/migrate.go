// Package mtls is `kubectl mesh migrate-mtls`: move a namespace (or the
// whole mesh) from PERMISSIVE to STRICT mTLS in two stages, each gated by
// preflight checks and, for STRICT, by the plaintext traffic Prometheus saw.
package mtls

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Stages of the migration.
const (
	StagePermissive = "permissive"
	StageStrict     = "strict"
)

// Options of the migrate-mtls workflow.
type Options struct {
	Namespace     string
	MeshWide      bool
	Stage         string
	Exceptions    []string
	PrometheusURL string
	Window        string
	SkipTelemetry bool

	root       string
	window     time.Duration
	exceptions []exception
	snap       *Snapshot
}

// exception keeps one container port of one workload PERMISSIVE.
type exception struct {
	Namespace, Workload string
	Port                uint32
}

// New returns the workflow with its defaults.
func New() *Options { return &Options{Window: "7d"} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate-mtls",
		Short: "Move a namespace (or the mesh) from PERMISSIVE to STRICT mTLS without an outage",
		Long: `Reports the effective mTLS mode of every workload and port (mesh-wide policy →
namespace policy → workload policy → portLevelMtls), then moves the namespace in
two stages: an explicit PERMISSIVE PeerAuthentication first, STRICT second.

STRICT is blocked while a check finds something it would break — pods without
a sidecar, DestinationRules that turn auto-mTLS off, webhooks the API server
calls, un-rewritten probes, port exceptions that cannot work — or while
Prometheus shows callers that sent plaintext over --window. Accept a finding
with --accept ID (recorded in the change set), or keep one container port
PERMISSIVE with --exception WORKLOAD:PORT.

Prometheus is --prometheus-url, or a Prometheus Service found in the cluster and
reached through the API server's service proxy. Without one, STRICT needs
--skip-telemetry. kubectl mesh undo restores the previous PeerAuthentications.`,
		Example: `  # stage 1: explicit PERMISSIVE
  kubectl mesh migrate-mtls -n shop
  # stage 2: STRICT, keeping the metrics port of a legacy scraper open
  kubectl mesh migrate-mtls -n shop --stage strict --exception api:9100
  kubectl mesh migrate-mtls --mesh-wide --stage strict --prometheus-url http://localhost:9090`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Stage, "stage", "", `"permissive" or "strict" (default: the next stage for the namespace)`)
	f.StringArrayVar(&o.Exceptions, "exception", nil, "Keep a container port PERMISSIVE under STRICT: [NAMESPACE/]WORKLOAD:PORT (repeatable)")
	f.BoolVar(&o.MeshWide, "mesh-wide", false, "Change the mesh-wide policy in the Istio root namespace instead of one namespace")
	f.StringVar(&o.PrometheusURL, "prometheus-url", "", "Prometheus to read Istio telemetry from (default: a Prometheus Service in the cluster, through the API server)")
	f.StringVar(&o.Window, "window", o.Window, "How far back to look for plaintext callers (a Prometheus duration: 7d catches weekly jobs)")
	f.BoolVar(&o.SkipTelemetry, "skip-telemetry", false, "Move to STRICT without traffic evidence (recorded in the change set)")
	return cmd
}

// parse checks the flags' syntax; it is pure.
func (o *Options) parse() error {
	if o.Stage != "" && o.Stage != StagePermissive && o.Stage != StageStrict {
		return fmt.Errorf("invalid --stage %q: use permissive or strict", o.Stage)
	}
	w, err := telemetry.ParseOptions(o.Window, o.PrometheusURL)
	if err != nil {
		return err
	}
	o.window = w
	o.exceptions = nil
	for _, s := range o.Exceptions {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			e, err := parseException(part, o.Namespace)
			if err != nil {
				return err
			}
			o.exceptions = append(o.exceptions, e)
		}
	}
	if len(o.exceptions) > 0 && o.Stage == StagePermissive {
		return fmt.Errorf("--exception only applies with --stage strict: under PERMISSIVE every port already accepts plaintext")
	}
	return nil
}

// parseException reads [NAMESPACE/]WORKLOAD:PORT.
func parseException(s, defaultNS string) (exception, error) {
	bad := func(why string) (exception, error) {
		return exception{}, fmt.Errorf("invalid --exception %s: %s; use WORKLOAD:PORT, e.g. api:8080", strconv.Quote(s), why)
	}
	name, portStr, ok := strings.Cut(s, ":")
	if !ok {
		return bad("no port")
	}
	e := exception{Namespace: defaultNS, Workload: name}
	if ns, w, ok := strings.Cut(name, "/"); ok {
		e.Namespace, e.Workload = ns, w
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return bad("namespace is not a valid name")
		}
	}
	if len(validation.IsDNS1123Subdomain(e.Workload)) > 0 {
		return bad("workload is not a valid name")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return bad("port must be a number from 1 to 65535")
	}
	e.Port = uint32(port)
	return e, nil
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
	switch {
	case o.MeshWide:
		if explicit && ns != o.root {
			return exitcode.Usagef("--mesh-wide changes the policy in the root namespace %s; drop -n %s (or use -i to name the Istio namespace)", o.root, ns)
		}
		ns = o.root
	case !explicit && c.CanPrompt():
		if ns, err = mesh.AskNamespace(ctx, rd, c.Prompter, "Namespace to migrate:", ns); err != nil {
			return err
		}
	}
	o.Namespace = ns
	if err := o.parse(); err != nil { // exceptions default to the chosen namespace
		return exitcode.New(exitcode.Usage, err)
	}
	scope := ns
	if o.MeshWide {
		scope = ""
	}
	if o.snap, err = read(ctx, c, o.root, scope); err != nil {
		return err
	}
	if _, ok := o.snap.Namespaces[ns]; !ok {
		return exitcode.Usagef("namespace %q not found: pick another with -n", ns)
	}
	if !o.MeshWide && !inMesh(o.snap, ns) {
		return exitcode.Usagef("namespace %s is not in the mesh (no injection label and no pod with a sidecar): run kubectl mesh inject -n %s --restart first", ns, ns)
	}
	if o.Stage == "" && c.CanPrompt() {
		return o.ask(c)
	}
	return nil
}

// ask shows where the namespace stands and asks for the stage and exceptions.
func (o *Options) ask(c *cli.Context) error {
	now, source := o.currentMode()
	if source == "" {
		source = "Istio's default"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is %s (%s); sidecars: %s pods\n", o.scopeName(), now, source, mesh.Coverage(o.snap.Workloads))
	(&migration{snap: o.snap, targets: o.targets(), after: o.snap.PAs}).modes(&b, false)
	c.Prompter.Tell(b.String())
	var err error
	if o.Stage, err = c.Prompter.Select("Stage to apply:", []string{StagePermissive, StageStrict}, o.nextStage()); err != nil {
		return err
	}
	if o.Stage == StageStrict && len(o.Exceptions) == 0 {
		ans, err := c.Prompter.Input("Ports to keep PERMISSIVE (WORKLOAD:PORT, comma-separated; empty for none):", "")
		if err != nil {
			return err
		}
		if ans != "" {
			o.Exceptions = []string{ans}
		}
	}
	if err := o.parse(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	return nil
}

func (o *Options) scopeName() string {
	if o.MeshWide {
		return "the mesh-wide policy (namespace " + o.root + ")"
	}
	return "namespace " + o.Namespace
}

// currentMode is the namespace's effective default mode and its source.
func (o *Options) currentMode() (string, string) {
	return mesh.ChainFor(o.root, o.snap.PAs, o.Namespace, nil).Mode(0)
}

// nextStage: PERMISSIVE first unless a namespace policy already says
// PERMISSIVE or STRICT explicitly.
func (o *Options) nextStage() string {
	if wide := mesh.NamespaceWide(o.snap.PAs, o.Namespace); len(wide) > 0 {
		if m := wide[0].Mode; m == mesh.ModePermissive || m == mesh.ModeStrict {
			return StageStrict
		}
	}
	return StagePermissive
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error {
	if err := o.parse(); err != nil {
		return err
	}
	if o.snap == nil {
		return nil
	}
	if o.Stage == "" {
		o.Stage = o.nextStage()
	}
	if now, source := o.currentMode(); o.Stage == StageStrict && now == mesh.ModeDisable {
		return fmt.Errorf("%s is DISABLE (%s): going straight to STRICT breaks callers until their sidecars learn to send mTLS (istio/istio#48290); run --stage permissive first", o.scopeName(), source)
	}
	return nil
}

func inMesh(s *Snapshot, ns string) bool {
	if mesh.InjectedFrom(s.Namespaces[ns]) != "" {
		return true
	}
	for _, w := range s.Workloads {
		if w.Namespace == ns && w.Injected() > 0 {
			return true
		}
	}
	return false
}
