package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
)

// VersionInfo is what `kubectl mesh version -o json` prints.
type VersionInfo struct {
	Plugin       string         `json:"plugin"`
	IstioLibrary string         `json:"istioLibrary"`
	GoVersion    string         `json:"goVersion"`
	Kubernetes   string         `json:"kubernetes,omitempty"`
	ControlPlane []ControlPlane `json:"controlPlane,omitempty"`
	ClusterError string         `json:"clusterError,omitempty"`
}

// ControlPlane is one istiod revision found in the cluster.
type ControlPlane struct {
	Revision  string `json:"revision"`
	Namespace string `json:"namespace"`
	Version   string `json:"version"`
	Ready     string `json:"ready"`
}

func newVersion(c *cli.Context) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin, Istio library, Kubernetes and Istio control-plane versions",
		Example: `  kubectl mesh version
  kubectl mesh version --client   # no cluster access
  kubectl mesh version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := c.Engine.Output
			if out != "" && out != "json" && out != "yaml" {
				return exitcode.Usagef("invalid -o/--output %q for version: use json or yaml", out)
			}
			info := clientVersion()
			var clusterErr error
			if !clientOnly {
				if clusterErr = serverVersion(cmd.Context(), c, &info); clusterErr != nil {
					info.ClusterError = clusterErr.Error()
				}
			}
			if err := printVersion(c.Streams.Out, out, info); err != nil {
				return err
			}
			if clusterErr != nil {
				return fmt.Errorf("cannot read the cluster's versions: %w", clusterErr)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print only the plugin's own versions; touches no network")
	cmd.Flags().StringVarP(&c.Engine.Output, "output", "o", "", "Output format: json or yaml (default: text)")
	return cmd
}

func clientVersion() VersionInfo {
	info := VersionInfo{Plugin: cli.Version, IstioLibrary: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "istio.io/istio" {
				info.IstioLibrary = d.Version
			}
		}
	}
	return info
}

func serverVersion(ctx context.Context, c *cli.Context, info *VersionInfo) error {
	kube, err := c.Kube()
	if err != nil {
		return err
	}
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	info.Kubernetes = v.GitVersion
	// istiod Deployments carry app=istiod and, for revisioned installs, istio.io/rev.
	deps, err := kube.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
	if err != nil {
		return err
	}
	for _, d := range deps.Items {
		rev := d.Labels["istio.io/rev"]
		if rev == "" {
			rev = "default"
		}
		ver := "unknown"
		for _, ct := range d.Spec.Template.Spec.Containers {
			if ct.Name == "discovery" {
				if i := strings.LastIndex(ct.Image, ":"); i > 0 {
					ver = ct.Image[i+1:]
				}
			}
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		info.ControlPlane = append(info.ControlPlane, ControlPlane{
			Revision: rev, Namespace: d.Namespace, Version: ver,
			Ready: fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want),
		})
	}
	sort.Slice(info.ControlPlane, func(i, j int) bool { return info.ControlPlane[i].Revision < info.ControlPlane[j].Revision })
	return nil
}

func printVersion(w io.Writer, format string, info VersionInfo) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(info)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	fmt.Fprintf(w, "kubectl-mesh: %s\n", info.Plugin)
	fmt.Fprintf(w, "istio libraries: istio.io/istio %s\n", info.IstioLibrary)
	if info.Kubernetes == "" {
		return nil
	}
	fmt.Fprintf(w, "kubernetes: %s\n", info.Kubernetes)
	if len(info.ControlPlane) == 0 {
		fmt.Fprintln(w, "istio control plane: none found")
		return nil
	}
	fmt.Fprintln(w, "istio control plane:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  REVISION\tNAMESPACE\tVERSION\tREADY")
	for _, cp := range info.ControlPlane {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cp.Revision, cp.Namespace, cp.Version, cp.Ready)
	}
	return tw.Flush()
}
