package install

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Uninstall is `kubectl mesh uninstall`: a plan that deletes what an
// install of the revision created, keeping what other revisions still use.
type Uninstall struct {
	Revision string
	Purge    bool

	istioNamespace string
	flags          *pflag.FlagSet
}

// NewUninstall returns the workflow.
func NewUninstall() *Uninstall { return &Uninstall{} }

// Command implements pipeline.Workflow.
func (u *Uninstall) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove an Istio control-plane revision (CRDs only with --purge)",
		Long: `Deletes the objects an install of the revision created, with a diff,
confirmation, journal and undo. Objects shared with other installed revisions
(gateways, cluster roles) stay while another revision is installed. CRDs stay
unless --purge: deleting them deletes every Istio config object with them.`,
		Example: `  kubectl mesh uninstall --revision 1-30 --dry-run=server
  kubectl mesh uninstall --revision 1-30 --yes
  kubectl mesh uninstall --purge --yes`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&u.Revision, "revision", "", "Revision to remove (empty: the revision-less default install)")
	cmd.Flags().BoolVar(&u.Purge, "purge", false, "Also delete Istio's CRDs and with them every Istio config object")
	u.flags = cmd.Flags()
	return cmd
}

// Complete implements pipeline.Workflow. On a terminal it asks which
// revision to remove and, for the last one, whether the CRDs go too.
func (u *Uninstall) Complete(ctx context.Context, c *cli.Context, _ []string) error {
	u.istioNamespace = c.Engine.IstioNamespace
	if !c.CanPrompt() || c.Engine.Yes || u.flags == nil {
		return nil
	}
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	planes, err := mesh.Revisions(ctx, rd)
	if err != nil || len(planes) == 0 {
		return err // Plan reports that nothing is installed
	}
	if !u.flags.Changed("revision") {
		revs := make([]string, len(planes))
		for i, cp := range planes {
			revs[i] = cp.Revision
		}
		rev, err := c.Prompter.Select("Revision to uninstall:", revs, revs[0])
		if err != nil {
			return err
		}
		if u.Revision = rev; rev == mesh.DefaultRevision {
			u.Revision = "" // the revision-less install
		}
	}
	if !u.flags.Changed("purge") && len(planes) == 1 {
		if u.Purge, err = c.Prompter.Confirm("It is the last revision: also delete Istio's CRDs, and with them every Istio config object?", false); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements pipeline.Workflow.
func (u *Uninstall) Validate() error {
	if u.Revision == mesh.DefaultRevision {
		return errors.New(`--revision default names the revision-less install: leave --revision empty`)
	}
	return nil
}

// Plan deletes every object an install of the revision renders that exists,
// found by kind and name from a render (so nothing else is touched).
func (u *Uninstall) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	planes, err := mesh.Revisions(ctx, rd)
	if err != nil {
		return nil, err
	}
	want := u.Revision
	if want == "" {
		want = mesh.DefaultRevision
	}
	if _, ok := mesh.Resolve(planes, want); !ok {
		return nil, exitcode.Usagef("revision %q is not installed (installed: %v)", want, mesh.Names(planes))
	}
	last := len(planes) == 1
	o := New()
	o.Revision, o.Egress, o.istioNamespace = u.Revision, true, u.istioNamespace
	objs, err := o.Render()
	if err != nil {
		return nil, err
	}
	dyn, err := c.Dynamic()
	if err != nil {
		return nil, err
	}
	// Deletes of objects that are gone (or of kinds no longer served) are
	// "unchanged" in the runner's diff, which reads each object anyway.
	plan := &pipeline.Plan{Title: fmt.Sprintf("uninstall Istio revision %s", want)}
	var config, crds []pipeline.Change
	for _, obj := range objs {
		isCRD := obj.GetKind() == "CustomResourceDefinition"
		shared := obj.GetLabels()[mesh.LabelRev] == "" || obj.GetAnnotations()["kubectl-mesh.io/component"] == "IngressGateways" || obj.GetAnnotations()["kubectl-mesh.io/component"] == "EgressGateways"
		switch {
		case isCRD && !u.Purge:
			continue
		case !isCRD && shared && !last:
			continue // another revision still uses it
		}
		ch := pipeline.Change{Op: pipeline.Delete, Object: ref(obj)}
		if isCRD {
			crds = append(crds, ch)
		} else {
			config = append(config, ch)
		}
	}
	if len(config) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "control plane and gateways", Changes: config})
	}
	if len(crds) > 0 {
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "Istio CRDs", Changes: crds})
		n, err := countConfig(ctx, dyn, crds)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			plan.Checks = append(plan.Checks, pipeline.Check{
				ID: "UNINSTALL-PURGE-CONFIG", Severity: pipeline.Error,
				Message: fmt.Sprintf("--purge deletes %d Istio config object(s) with the CRDs; undo restores the CRDs, not those objects", n),
				Hint:    "export them first (kubectl get virtualservices,destinationrules,... -A -o yaml), then accept with --accept UNINSTALL-PURGE-CONFIG",
			})
		}
	} else if last {
		plan.Notes = append(plan.Notes, "Istio's CRDs and config objects stay; --purge removes them")
	}
	if !last {
		plan.Notes = append(plan.Notes, "gateways and cluster-wide objects stay: other revisions are installed")
	}
	return plan, nil
}

func ref(obj *unstructured.Unstructured) *unstructured.Unstructured {
	r := &unstructured.Unstructured{}
	r.SetAPIVersion(obj.GetAPIVersion())
	r.SetKind(obj.GetKind())
	r.SetNamespace(obj.GetNamespace())
	r.SetName(obj.GetName())
	return r
}

// countConfig counts the custom resources of the CRDs to delete (one
// metadata-sized list per CRD).
func countConfig(ctx context.Context, dyn dynamic.Interface, crds []pipeline.Change) (int, error) {
	n := 0
	for _, ch := range crds {
		crd, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).Get(ctx, ch.Object.GetName(), metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return 0, err
		}
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		for _, v := range versions {
			vm := v.(map[string]any)
			if vm["storage"] != true {
				continue
			}
			list, err := dyn.Resource(schema.GroupVersionResource{Group: group, Version: vm["name"].(string), Resource: plural}).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			n += len(list.Items)
		}
	}
	return n, nil
}
