// Package inject is `kubectl mesh inject`: label a namespace for sidecar
// injection the right way for the installed control plane, report which
// workloads have sidecars, and optionally restart them one at a time.
package inject

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
)

// Options of the inject workflow.
type Options struct {
	Namespace string
	Revision  string
	Restart   bool
	Disable   bool
	Force     bool
	Wait      bool
	Timeout   time.Duration

	istioNamespace string
	planes         []mesh.ControlPlane
	// workloads is the namespace's inventory when Complete read it to ask
	// about restarts; Plan then does not read it again.
	workloads []mesh.Workload
	flags     *pflag.FlagSet
}

// New returns the workflow with its defaults.
func New() *Options { return &Options{Wait: true, Timeout: 5 * time.Minute} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Enable (or --disable) sidecar injection for a namespace and restart its workloads safely",
		Long: `Labels the namespace for the installed control plane — istio-injection=enabled
for a default install, istio.io/rev=<revision|tag> for revisioned ones, never
both — and reports which workloads have a sidecar. With --restart, workloads
that need a (new) sidecar are restarted one at a time, each waiting for its
rollout; the first failure stops the sequence.`,
		Example: `  kubectl mesh inject -n bookinfo
  kubectl mesh inject -n bookinfo --revision 1-31 --restart
  kubectl mesh inject -n bookinfo --disable --restart`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Revision, "revision", "", "Control-plane revision or tag to inject from (asked when several are installed)")
	f.BoolVar(&o.Restart, "restart", false, "Restart workloads that need a (new) sidecar, one at a time")
	f.BoolVar(&o.Disable, "disable", false, "Turn injection off: remove istio.io/rev and set istio-injection=disabled")
	f.BoolVar(&o.Force, "force", false, "Allow kube-system and the Istio control-plane namespace")
	f.BoolVar(&o.Wait, "wait", o.Wait, "With --restart, wait for each rollout before the next")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "How long to wait for each rollout")
	o.flags = f
	return cmd
}

// Complete fills the namespace and revision from flags, the cluster, or
// questions when a terminal is attached.
func (o *Options) Complete(ctx context.Context, c *cli.Context, _ []string) error {
	o.istioNamespace = c.Engine.IstioNamespace
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	ns, explicit, err := c.Namespace()
	if err != nil {
		return err
	}
	o.Namespace = ns
	if !explicit && c.CanPrompt() {
		if o.Namespace, err = mesh.AskNamespace(ctx, rd, c.Prompter, "Namespace to inject:", ns); err != nil {
			return err
		}
	}
	if _, err := namespace(ctx, rd, o.Namespace); err != nil {
		return err
	}
	if !o.Disable {
		if o.planes, err = mesh.Revisions(ctx, rd); err != nil {
			return err
		}
		if o.Revision, err = mesh.PickRevision(o.planes, o.Revision, mesh.RevisionQuestion(c.Prompter)); err != nil {
			return err
		}
	}
	return o.askRestart(ctx, c)
}

// askRestart asks, on a terminal and when --restart was not given, whether
// to restart the workloads that need it, naming them.
func (o *Options) askRestart(ctx context.Context, c *cli.Context) error {
	if !c.CanPrompt() || o.flags == nil || o.flags.Changed("restart") {
		return nil
	}
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	if o.workloads, err = mesh.Inventory(ctx, rd, o.Namespace); err != nil {
		return err
	}
	restart, _ := o.needRestart(o.workloads)
	if len(restart) == 0 {
		return nil
	}
	refs := make([]string, len(restart))
	for i, w := range restart {
		refs[i] = w.Ref()
	}
	what := "to get the sidecar from " + o.Revision
	if o.Disable {
		what = "to drop their sidecars"
	}
	o.Restart, err = c.Prompter.Confirm(fmt.Sprintf("Restart %d workload(s) %s, one at a time (%s)?", len(restart), what, strings.Join(refs, ", ")), true)
	return err
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error {
	if o.Timeout <= 0 {
		return errors.New("--timeout must be positive, e.g. 5m")
	}
	if o.Disable && o.Revision != "" {
		return errors.New("--disable and --revision do not go together: --disable removes every injection label")
	}
	if !o.Force {
		switch o.Namespace {
		case "kube-system", "kube-public", "kube-node-lease":
			return fmt.Errorf("refusing to change injection for %s: system pods must not depend on the mesh (a broken proxy would take the cluster down); add --force if you really mean it", o.Namespace)
		case o.istioNamespace:
			return fmt.Errorf("refusing to change injection for %s: the control plane's own pods cannot be injected by themselves; add --force if you really mean it", o.Namespace)
		}
	}
	return nil
}
