// Package apply is `kubectl mesh apply -f`: any manifests (Istio config,
// workloads, CRDs) through the engine — Istio analysis of the cluster as it
// would be, server-side diff, confirmation, journal and undo.
package apply

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/rollout"
)

// Options of the apply workflow.
type Options struct {
	Files   []string
	Wait    bool
	Timeout time.Duration

	objects []*manifest.File
}

// New returns the workflow.
func New() *Options { return &Options{Wait: true, Timeout: 5 * time.Minute} }

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply -f FILE...",
		Short: "Apply manifests with Istio analysis, a server-side diff, confirmation and undo",
		Example: `  kubectl mesh apply -f reviews-virtualservice.yaml
  kubectl mesh apply -f ./mesh-config/ --dry-run=server
  cat policy.yaml | kubectl mesh apply -f - --yes`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringSliceVarP(&o.Files, "filename", "f", nil, `Files or directories to apply ("-" reads stdin); repeatable`)
	cmd.Flags().BoolVar(&o.Wait, "wait", o.Wait, "After applying, wait for applied Deployments, StatefulSets and DaemonSets to roll out")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "How long to wait for each rollout")
	return cmd
}

// Complete reads the files; when none were given, a terminal user is asked for one.
func (o *Options) Complete(_ context.Context, c *cli.Context, _ []string) error {
	if len(o.Files) == 0 && c.CanPrompt() {
		f, err := c.Prompter.Input("File or directory to apply:", "")
		if err != nil {
			return err
		}
		if f != "" {
			o.Files = []string{f}
		}
	}
	if len(o.Files) == 0 {
		return nil // Validate reports it
	}
	files, err := manifest.Read(o.Files, c.Streams.In, false)
	if err != nil {
		return err
	}
	o.objects = nil
	for i := range files {
		o.objects = append(o.objects, &files[i])
	}
	return nil
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error {
	if len(o.Files) == 0 {
		return errors.New("no manifests given: pass -f FILE (or -f - for stdin)")
	}
	if o.Timeout <= 0 {
		return errors.New("--timeout must be positive, e.g. 5m")
	}
	return nil
}

// Plan puts the objects in one phase (the runner applies CRDs and namespaces
// first) and fills in the namespace of namespaced objects from -n or the
// kubeconfig context, as kubectl apply does.
func (o *Options) Plan(_ context.Context, c *cli.Context) (*pipeline.Plan, error) {
	ns, _, err := c.Namespace()
	if err != nil {
		return nil, err
	}
	mapper, err := c.Mapper()
	if err != nil {
		return nil, err
	}
	plannedCRDs := map[string]bool{}
	for _, f := range o.objects {
		for _, u := range f.Objects {
			if u.GetKind() == "CustomResourceDefinition" {
				plannedCRDs[u.GetName()] = true
			}
		}
	}
	ph := pipeline.Phase{Name: "apply manifests"}
	for _, f := range o.objects {
		for _, u := range f.Objects {
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			switch {
			case err == nil:
				if m.Scope.Name() == meta.RESTScopeNameNamespace && u.GetNamespace() == "" {
					u.SetNamespace(ns)
				}
			case meta.IsNoMatchError(err) && len(plannedCRDs) > 0:
				// Kind comes from a CRD in the same apply: custom resources of
				// this tool's users are namespaced unless they say otherwise.
				if u.GetNamespace() == "" {
					u.SetNamespace(ns)
				}
			case meta.IsNoMatchError(err):
				return nil, exitcode.Dataf("%s: kind %s (%s) is not served by the cluster; install its CRD first or fix apiVersion/kind", f.Name, gvk.Kind, u.GetAPIVersion())
			default:
				return nil, err
			}
			ph.Changes = append(ph.Changes, pipeline.Change{Op: pipeline.Apply, Object: u})
		}
	}
	plan := &pipeline.Plan{Title: "apply " + strings.Join(o.Files, ", "), Phases: []pipeline.Phase{ph}}
	if o.Wait {
		kube, err := c.Kube()
		if err != nil {
			return nil, err
		}
		for _, ch := range ph.Changes {
			u := ch.Object
			switch u.GroupVersionKind().GroupKind().String() {
			case "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps":
				plan.Verify = append(plan.Verify, rollout.Step(kube, u.GetKind(), u.GetNamespace(), u.GetName(), o.Timeout))
			}
		}
	}
	return plan, nil
}
