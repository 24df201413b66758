package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

var _ pipeline.Inspector = (*Status)(nil)

// StatusReport is status's output; -o json prints it as is.
type StatusReport struct {
	ControlPlanes []ControlPlane    `json:"controlPlanes"`
	Namespaces    []NamespaceStatus `json:"namespaces"`
	OutsideMesh   int               `json:"namespacesOutsideMesh"`
}

// ControlPlane is one istiod revision.
type ControlPlane struct {
	Revision  string   `json:"revision"`
	Namespace string   `json:"namespace"`
	Version   string   `json:"version"`
	Ready     string   `json:"ready"`
	Tags      []string `json:"tags,omitempty"`
}

// NamespaceStatus is one row of the namespace table.
type NamespaceStatus struct {
	Name      string   `json:"name"`
	Injection string   `json:"injection,omitempty"`
	Sidecars  string   `json:"sidecars"`
	Coverage  int      `json:"coveragePercent"`
	MTLS      string   `json:"mtls"`
	Canaries  []string `json:"canaries,omitempty"`
	Team      string   `json:"team,omitempty"`
}

// Status is `kubectl mesh status`.
type Status struct{ Output string }

// NewStatus returns the status command's options.
func NewStatus() *Status { return &Status{} }

// Command implements pipeline.Workflow.
func (o *Status) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One screen: control-plane revisions, and per namespace injection, sidecar coverage, mTLS, canaries and team",
		Example: `  kubectl mesh status
  kubectl mesh status -o json`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table or json")
	return cmd
}

// Complete implements pipeline.Workflow.
func (o *Status) Complete(context.Context, *cli.Context, []string) error { return nil }

// Validate implements pipeline.Workflow.
func (o *Status) Validate() error {
	if o.Output != "table" && o.Output != "json" {
		return fmt.Errorf("invalid -o/--output %q for status: use table or json", o.Output)
	}
	return nil
}

// Inspect implements pipeline.Inspector: one screen of the mesh.
func (o *Status) Inspect(ctx context.Context, c *cli.Context) error {
	progress := progressLine(c)
	s, err := read(ctx, c, "", progress, false)
	progress("")
	if err != nil {
		return err
	}
	rep := summarize(s, c.Engine.IstioNamespace)
	if o.Output == "json" {
		enc := json.NewEncoder(c.Streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(c.Streams.Out, rep)
	return nil
}

func summarize(s *cluster, root string) *StatusReport {
	rep := &StatusReport{ControlPlanes: []ControlPlane{}, Namespaces: []NamespaceStatus{}}
	for _, cp := range s.Planes {
		row := ControlPlane{Revision: cp.Revision, Namespace: cp.Namespace, Tags: cp.Tags, Ready: "?"}
		d := s.istiod(cp)
		row.Version = imageTag(d)
		if d != nil {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			row.Ready = fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want)
		}
		rep.ControlPlanes = append(rep.ControlPlanes, row)
	}
	byNS := map[string][]mesh.Workload{}
	for _, w := range s.Workloads {
		byNS[w.Namespace] = append(byNS[w.Namespace], w)
	}
	canaries := map[string][]string{}
	for _, vs := range s.VSs {
		if raw := vs.GetAnnotations()[mesh.AnnotationCanary]; raw != "" {
			canaries[vs.GetNamespace()] = append(canaries[vs.GetNamespace()], canaryLine(vs, raw))
		}
	}
	for _, ns := range s.Namespaces {
		ws := byNS[ns.Name]
		in, total := 0, 0
		for _, w := range ws {
			in += w.Injected()
			total += len(w.Pods)
		}
		inj, team := injection(ns), ns.Labels[mesh.LabelTeam]
		// Gateways run an istio-proxy container too: the control plane's
		// namespace is not a mesh namespace because of them.
		if inj == "" && team == "" && (in == 0 || ns.Name == root) {
			rep.OutsideMesh++
			continue
		}
		mode, _ := mesh.ChainFor(root, s.PAs, ns.Name, nil).Mode(0)
		row := NamespaceStatus{Name: ns.Name, Injection: inj, Sidecars: fmt.Sprintf("%d/%d", in, total), MTLS: mode, Canaries: canaries[ns.Name], Team: team}
		if total > 0 {
			row.Coverage = 100 * in / total
		}
		rep.Namespaces = append(rep.Namespaces, row)
	}
	return rep
}

func canaryLine(vs *unstructured.Unstructured, raw string) string {
	var st struct {
		Service, Stable, Canary string
		Weight                  int
	}
	if json.Unmarshal([]byte(raw), &st) != nil {
		return vs.GetName() + " (unreadable state)"
	}
	return fmt.Sprintf("%s %s→%s %d%%", st.Service, st.Stable, st.Canary, st.Weight)
}

// printStatus keeps to about 80 columns: short headers, one row per namespace.
func printStatus(w io.Writer, rep *StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL PLANE\tNAMESPACE\tVERSION\tREADY\tTAGS")
	if len(rep.ControlPlanes) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t\t")
	}
	for _, cp := range rep.ControlPlanes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cp.Revision, cp.Namespace, cp.Version, cp.Ready, strings.Join(cp.Tags, ","))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tINJECT\tSIDECARS\tMTLS\tCANARY\tTEAM")
	for _, n := range rep.Namespaces {
		cov := n.Sidecars
		if n.Sidecars != "0/0" {
			cov = fmt.Sprintf("%s %d%%", n.Sidecars, n.Coverage)
		}
		canary := strings.Join(n.Canaries, "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, dash(n.Injection), cov, n.MTLS, dash(canary), dash(n.Team))
	}
	_ = tw.Flush()
	if rep.OutsideMesh > 0 {
		fmt.Fprintf(w, "\n%d other namespace(s) are not in the mesh.\n", rep.OutsideMesh)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
