package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"istio.io/istio/istioctl/pkg/util/formatting"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/schema/collections"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
)

type analyzeOptions struct {
	allNamespaces bool
	suppress      []string
	useKube       bool
	recursive     bool
}

func newAnalyze(c *cli.Context) *cobra.Command {
	o := &analyzeOptions{useKube: true}
	cmd := &cobra.Command{
		Use:   "analyze [FILE...]",
		Short: "Run Istio's analyzers on the cluster, optionally with files as a what-if",
		Long: `Runs Istio's configuration analyzers in-process (the engine behind istioctl
analyze) over the live cluster plus the given files, as if the files were
applied. Exits 79 when a message reaches --failure-threshold.`,
		Example: `  kubectl mesh analyze -n bookinfo
  kubectl mesh analyze -A
  kubectl mesh analyze -n bookinfo new-virtualservice.yaml
  kubectl mesh analyze --use-kube=false samples/*.yaml
  kubectl mesh analyze -A -S "IST0103=Pod bookinfo/*"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, c, args)
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Analyze every namespace")
	cmd.Flags().StringArrayVarP(&o.suppress, "suppress", "S", nil, `Suppress a message code on a resource: "CODE=Kind namespace/name" (globs allowed, e.g. "IST0101=VirtualService bookinfo/*"); repeatable`)
	cmd.Flags().BoolVar(&o.useKube, "use-kube", true, "Include the live cluster; false analyzes the files only")
	cmd.Flags().BoolVarP(&o.recursive, "recursive", "R", false, "Read directories given as FILE recursively")
	return cmd
}

func (o *analyzeOptions) run(cmd *cobra.Command, c *cli.Context, args []string) error {
	ctx := cmd.Context()
	format := c.Engine.Output
	if format == "" {
		format = formatting.LogFormat
	}
	if !formatting.MsgOutputFormats[format] {
		return exitcode.Usagef("invalid -o/--output %q for analyze: use log, json or yaml", format)
	}
	threshold, err := analysis.ParseLevel(c.Engine.FailureThreshold)
	if err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	var sups []analysis.Suppression
	for _, s := range o.suppress {
		sup, err := analysis.ParseSuppression(s)
		if err != nil {
			return exitcode.New(exitcode.Usage, err)
		}
		sups = append(sups, sup)
	}
	if !o.useKube && len(args) == 0 {
		return exitcode.Usagef("--use-kube=false needs at least one FILE to analyze")
	}
	files, err := manifest.Read(args, c.Streams.In, o.recursive)
	if err != nil {
		return err
	}
	var sources []analysis.Source
	for _, f := range files {
		for _, obj := range f.Objects {
			gvk := obj.GroupVersionKind()
			// GitOps directories mix kinds (Certificates, Applications, Helm
			// output): Istio's reader passes over what it has no schema for,
			// so the rest of the file is analyzed, as istioctl does.
			if _, ok := collections.All.FindByGroupVersionAliasesKind(config.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}); !ok {
				fmt.Fprintf(c.Streams.ErrOut, "skipping %s %q (%s) in %s: not a kind Istio's analyzers read\n", gvk.Kind, obj.GetName(), obj.GetAPIVersion(), f.Name)
			}
		}
		sources = append(sources, analysis.Source{Name: f.Name, Reader: strings.NewReader(string(f.Data))})
	}

	ns, explicit, err := c.Namespace()
	if err != nil {
		return err
	}
	target := "namespace: " + ns
	switch {
	case o.allNamespaces:
		ns, target = "", "all namespaces"
	case !o.useKube && !explicit:
		// Files only: report on every namespace the files name.
		ns, target = "", "files"
	}
	opts := analysis.Options{Namespace: ns, IstioNamespace: c.Engine.IstioNamespace, Files: sources, Suppress: sups}
	if o.useKube {
		if err := requireCluster(ctx, c, ns); err != nil {
			return err
		}
		if opts.Live, err = c.RESTConfig(); err != nil {
			return err
		}
	}
	var msgs diag.Messages
	if o.useKube {
		kube, err := c.Kube()
		if err != nil {
			return err
		}
		all, err := analysis.RunChecked(ctx, kube, opts)
		var denied *analysis.DeniedError
		if errors.As(err, &denied) {
			return exitcode.New(exitcode.NoPerm, fmt.Errorf("Istio's analyzers read the whole cluster, but you %s: ask for read access, or analyze files only with --use-kube=false", denied))
		} else if err != nil {
			return err
		}
		msgs = all[0]
	} else if msgs, err = analysis.Run(ctx, opts); err != nil {
		return err
	}
	msgs = msgs.SetDocRef("kubectl-mesh-analyze").FilterOutLowerThan(diag.Info)
	text, err := formatting.Print(msgs, format, format == formatting.LogFormat && cli.Color(c.Streams.Out))
	if err != nil {
		return err
	}
	if len(msgs) == 0 && format == formatting.LogFormat {
		fmt.Fprintf(c.Streams.ErrOut, "\u2714 No validation issues found when analyzing %s.\n", target)
	} else {
		fmt.Fprintln(c.Streams.Out, text)
	}
	worst := 0
	for _, m := range msgs {
		if m.Type.Level().IsWorseThanOrEqualTo(threshold) {
			worst++
		}
	}
	if worst > 0 {
		return exitcode.Blockedf("analysis found %d message(s) at or above %s in %s", worst, threshold, target)
	}
	return nil
}

// requireCluster checks what analysis of a live cluster needs: the API
// server answers, the namespace exists, and Istio's CRDs are installed.
func requireCluster(ctx context.Context, c *cli.Context, ns string) error {
	kube, err := c.Kube()
	if err != nil {
		return err
	}
	if ns != "" {
		if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return exitcode.Usagef("namespace %q not found: pick an existing one with -n, or use -A", ns)
		} else if err != nil {
			return err
		}
	}
	if _, err := kube.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1"); apierrors.IsNotFound(err) {
		return exitcode.New(exitcode.Unavailable, fmt.Errorf("the Istio CRDs are not installed in this cluster: install Istio first (kubectl mesh install), or analyze files only with --use-kube=false"))
	} else if err != nil {
		return err
	}
	return nil
}
