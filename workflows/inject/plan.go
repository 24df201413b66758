package inject

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/rollout"
)

// RestartAnnotation is what `kubectl rollout restart` sets on the pod template.
const RestartAnnotation = "kubectl.kubernetes.io/restartedAt"

// namespace is the live Namespace name, from the command's reader (the
// plan's analysis lists Namespaces too).
func namespace(ctx context.Context, rd *reads.Reader, name string) (*unstructured.Unstructured, error) {
	all, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.Namespaces})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for _, ns := range all {
		if ns.GetName() == name {
			return ns, nil
		}
	}
	return nil, exitcode.Usagef("namespace %q not found: create it first, or pick another with -n", name)
}

// Plan implements pipeline.Workflow.
func (o *Options) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	live, err := namespace(ctx, rd, o.Namespace)
	if err != nil {
		return nil, err
	}
	workloads := o.workloads
	if workloads == nil {
		if workloads, err = mesh.Inventory(ctx, rd, o.Namespace); err != nil {
			return nil, err
		}
	}
	return o.build(live, workloads, c.Now().UTC().Format("2006-01-02T15:04:05Z"), cl.Kube), nil
}

// needRestart sorts the workloads whose pods must be recreated to pick up
// the change: those a restart replaces, and those it does not (bare pods).
func (o *Options) needRestart(workloads []mesh.Workload) (restart, manual []mesh.Workload) {
	for _, w := range workloads {
		need := w.NeedsRestart(o.Revision)
		if o.Disable {
			need = w.Injected() > 0
		}
		switch {
		case !need:
		case w.Restartable():
			restart = append(restart, w)
		default:
			manual = append(manual, w)
		}
	}
	return restart, manual
}

// build is the pure part of Plan: from the live namespace and its
// workloads to the plan. now stamps the restart annotation.
func (o *Options) build(live *unstructured.Unstructured, workloads []mesh.Workload, now string, kube kubernetes.Interface) *pipeline.Plan {
	ns := pipeline.Edit(live)
	labels := ns.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	var notes []string
	prevRev, prevInj := labels[mesh.LabelRev], labels[mesh.LabelInjection]
	delete(labels, mesh.LabelRev)
	delete(labels, mesh.LabelInjection)
	verb := "enable sidecar injection"
	if o.Disable {
		verb = "disable sidecar injection"
		labels[mesh.LabelInjection] = "disabled"
		notes = append(notes, "istio-injection=disabled is set (not just removed) so no default-revision webhook injects the namespace")
	} else {
		for k, v := range mesh.InjectionLabels(o.Revision) {
			labels[k] = v
		}
		if o.Revision == mesh.DefaultRevision {
			notes = append(notes, "default revision: labelled istio-injection=enabled")
		} else {
			notes = append(notes, fmt.Sprintf("revision %s: labelled istio.io/rev=%s (canary upgrades move the label, not the workloads)", o.Revision, o.Revision))
		}
	}
	if prevRev != "" && prevInj != "" {
		notes = append(notes, fmt.Sprintf("the namespace had both istio-injection=%s and istio.io/rev=%s (IST0123); only one is kept", prevInj, prevRev))
	}
	ns.SetLabels(labels)

	plan := &pipeline.Plan{
		Title:  fmt.Sprintf("%s in namespace %s", verb, o.Namespace),
		Phases: []pipeline.Phase{{Name: "label namespace " + o.Namespace, Changes: []pipeline.Change{{Op: pipeline.Replace, Object: ns}}}},
	}

	restart, manual := o.needRestart(workloads)
	for _, w := range manual {
		notes = append(notes, fmt.Sprintf("%s -n %s must be recreated manually (a restart does not replace it)", w.Ref(), o.Namespace))
	}
	if o.Restart {
		for _, w := range restart {
			plan.Phases = append(plan.Phases, o.restartPhase(w, now, kube))
		}
	} else if len(restart) > 0 {
		var refs []string
		for _, w := range restart {
			refs = append(refs, w.Ref())
		}
		notes = append(notes, fmt.Sprintf("still need a restart to pick up the change: %s (re-run with --restart)", strings.Join(refs, ", ")))
	}
	plan.Notes = notes
	plan.Report = func(w io.Writer) { fmt.Fprintln(w, "Before:"); printCoverage(w, workloads, o.Revision) }
	plan.Result = func(ctx context.Context, rd *reads.Reader, w io.Writer) {
		after, err := mesh.Inventory(ctx, rd, o.Namespace)
		if err != nil {
			fmt.Fprintf(w, "cannot read the namespace's pods: %v\n", err)
			return
		}
		fmt.Fprintln(w, "After:")
		printCoverage(w, after, o.Revision)
	}
	return plan
}

// restartPhase bumps the pod template's restart annotation, the way
// kubectl rollout restart does, and waits for the rollout.
func (o *Options) restartPhase(w mesh.Workload, now string, kube kubernetes.Interface) pipeline.Phase {
	u := manifest.New("apps/v1", w.Kind, o.Namespace, w.Name)
	_ = unstructured.SetNestedField(u.Object, map[string]any{RestartAnnotation: now}, "spec", "template", "metadata", "annotations")
	ph := pipeline.Phase{Name: "restart " + w.Ref(), Changes: []pipeline.Change{{Op: pipeline.Apply, Object: u, Partial: true}}}
	if o.Wait {
		ph.Verify = []pipeline.VerifyStep{rollout.Step(kube, w.Kind, o.Namespace, w.Name, o.Timeout)}
	}
	return ph
}

func printCoverage(w io.Writer, ws []mesh.Workload, target string) {
	if len(ws) == 0 {
		fmt.Fprintln(w, "  no pods in the namespace")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WORKLOAD\tSIDECARS\tNOTES")
	for _, wl := range ws {
		fmt.Fprintf(tw, "  %s\t%d/%d\t%s\n", wl.Ref(), wl.Injected(), len(wl.Pods), podNotes(wl, target))
	}
	fmt.Fprintf(tw, "  total\t%s\t\n", mesh.Coverage(ws))
	_ = tw.Flush()
}

func podNotes(w mesh.Workload, target string) string {
	var n []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			n = append(n, s)
		}
	}
	for _, p := range w.Pods {
		switch {
		case p.HostNetwork:
			add("hostNetwork (never injected)")
		case p.OptOut:
			add("opted out (sidecar.istio.io/inject=false)")
		case p.HasSidecar && target != "" && p.Revision != target:
			add(fmt.Sprintf("proxy from revision %s, not %s (IST0158)", p.Revision, target))
		}
		if p.UID1337 {
			add("runs as UID 1337, the proxy's UID (IST0144)")
		}
	}
	return strings.Join(n, "; ")
}
