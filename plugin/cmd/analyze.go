package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"istio.io/istio/istioctl/pkg/util/formatting"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/schema/collections"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

type analyzeOptions struct {
	allNamespaces   bool
	suppress        []string
	useKube         bool
	recursive       bool
	meshConfigFile  string
	outputThreshold string
	listAnalyzers   bool
	analyzers       []string
	revision        string
	ignoreUnknown   bool

	c     *cli.Context
	files []string
}

var _ pipeline.Inspector = (*analyzeOptions)(nil)

func newAnalyze(c *cli.Context) *analyzeOptions {
	return &analyzeOptions{useKube: true, outputThreshold: "Info", revision: mesh.DefaultRevision, c: c}
}

// Command implements pipeline.Inspector.
func (o *analyzeOptions) Command() *cobra.Command {
	c := o.c
	cmd := &cobra.Command{
		Use:   "analyze [FILE...]",
		Short: "Run Istio's analyzers on the cluster, optionally with files as a what-if",
		Long: `Runs Istio's configuration analyzers in-process (the engine behind istioctl
analyze) over the live cluster plus the given files, as if the files were
applied. Exits 79 when a message reaches --failure-threshold. Flags that
istioctl analyze has keep its names and meanings.`,
		Example: `  kubectl mesh analyze -n bookinfo
  kubectl mesh analyze -A
  kubectl mesh analyze -n bookinfo new-virtualservice.yaml
  kubectl mesh analyze --use-kube=false samples/*.yaml
  kubectl mesh analyze -A -S "IST0103=Pod bookinfo/*"
  kubectl mesh analyze -n bookinfo --revision canary
  kubectl mesh analyze -A --use-kube=false --meshConfigFile mesh.yaml -R gitops/`,
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Analyze every namespace")
	// istioctl analyze's -o and --failure-threshold, with its meanings.
	cmd.Flags().StringVarP(&c.Engine.Output, "output", "o", "", "Output format: log, json or yaml (default log)")
	cmd.Flags().StringVar(&c.Engine.FailureThreshold, "failure-threshold", c.Engine.FailureThreshold, "Lowest severity of a message that makes the exit code 79: Info, Warning or Error")
	cmd.Flags().StringArrayVarP(&o.suppress, "suppress", "S", nil, `Suppress a message code on a resource: "CODE=Kind namespace/name" (globs allowed, e.g. "IST0101=VirtualService bookinfo/*"); repeatable`)
	cmd.Flags().BoolVarP(&o.useKube, "use-kube", "k", true, "Include the live cluster; false analyzes the files only")
	cmd.Flags().BoolVarP(&o.recursive, "recursive", "R", false, "Read directories given as FILE recursively")
	cmd.Flags().StringVar(&o.meshConfigFile, "meshConfigFile", "", "Analyze with the mesh config in this file instead of the cluster's (or the defaults)")
	cmd.Flags().StringVar(&o.outputThreshold, "output-threshold", o.outputThreshold, "Lowest severity of a message to show: Info, Warning or Error (--failure-threshold still counts all)")
	cmd.Flags().BoolVarP(&o.listAnalyzers, "list-analyzers", "L", false, "List Istio's analyzers and exit")
	cmd.Flags().StringArrayVar(&o.analyzers, "analyzer", nil, `Run only this analyzer (repeatable; names from --list-analyzers, e.g. "gateway.ConflictingGatewayAnalyzer")`)
	cmd.Flags().StringVarP(&o.revision, "revision", "r", o.revision, "Control-plane revision (or tag) whose configuration and mesh config to analyze")
	cmd.Flags().BoolVar(&o.ignoreUnknown, "ignore-unknown", false, "Do not fail on documents that cannot be parsed; analyze the rest")
	return cmd
}

// Complete implements pipeline.Inspector: the files to analyze.
func (o *analyzeOptions) Complete(_ context.Context, _ *cli.Context, args []string) error {
	o.files = args
	return nil
}

// Validate implements pipeline.Inspector; the flags are checked as they
// are parsed in Inspect, with istioctl's messages.
func (o *analyzeOptions) Validate() error { return nil }

// Inspect implements pipeline.Inspector: analyze and print.
func (o *analyzeOptions) Inspect(ctx context.Context, c *cli.Context) error {
	args := o.files
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
	outThreshold, err := analysis.ParseLevel(o.outputThreshold)
	if err != nil {
		return exitcode.Usagef("--output-threshold: %v", err)
	}
	if err := analysis.CheckAnalyzerNames(o.analyzers); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	if o.listAnalyzers {
		fmt.Fprint(c.Streams.Out, analysis.Analyzers())
		return nil
	}
	if !o.useKube && len(args) == 0 {
		return exitcode.Usagef("--use-kube=false needs at least one FILE to analyze")
	}
	if !o.useKube && o.revision != mesh.DefaultRevision && o.meshConfigFile == "" {
		return exitcode.Usagef("--revision selects a control plane in the cluster: drop --use-kube=false, or give its mesh config with --meshConfigFile")
	}
	meshConfig := ""
	if o.meshConfigFile != "" {
		b, err := os.ReadFile(o.meshConfigFile)
		if err != nil {
			return exitcode.Dataf("cannot read --meshConfigFile: %v", err)
		}
		if err := analysis.ValidateMeshConfig(string(b)); err != nil {
			return exitcode.Dataf("--meshConfigFile %s is not a valid mesh config: %s", o.meshConfigFile, exitcode.OneLine(err.Error()))
		}
		meshConfig = string(b)
	}
	// Istio's reader parses the files itself, skipping what it cannot read
	// and reporting it; decoding here only names the kinds it passes over.
	files, err := manifest.ReadData(args, c.Streams.In, o.recursive)
	if err != nil {
		return err
	}
	var sources []analysis.Source
	var fileObjs []*unstructured.Unstructured
	for _, f := range files {
		objs, _ := manifest.Decode(f.Data) // unparseable documents are reported by Istio's reader below
		fileObjs = append(fileObjs, objs...)
		for _, obj := range objs {
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
	opts := analysis.Options{Namespace: ns, IstioNamespace: c.Engine.IstioNamespace, Files: sources, Suppress: sups, MeshConfig: meshConfig, Analyzers: o.analyzers}
	var msgs diag.Messages
	var snap *analysis.Snapshot
	var runErr error
	if o.useKube {
		if msgs, snap, runErr = o.analyzeLive(ctx, c, ns, opts); runErr != nil && !errors.As(runErr, new(*analysis.ParseError)) {
			return runErr
		}
	} else {
		msgs, runErr = analysis.Run(ctx, opts)
	}
	var parseErr *analysis.ParseError
	if errors.As(runErr, &parseErr) {
		for _, e := range parseErr.Errs {
			fmt.Fprintf(c.Streams.ErrOut, "cannot parse: %s\n", exitcode.OneLine(e.Error()))
		}
	} else if runErr != nil {
		return runErr
	}
	var rd *reads.Reader
	if o.useKube {
		if rd, err = c.Reads(); err != nil {
			return err
		}
	}
	lint, err := o.lint(ctx, rd, snap, ns, meshConfig, fileObjs, sups)
	if err != nil {
		return err
	}
	msgs = append(msgs, lint...)
	// Like istioctl: the exit code counts every message; the output threshold only hides.
	shown := msgs.SetDocRef("kubectl-mesh-analyze").FilterOutLowerThan(outThreshold)
	text, err := analysis.Print(shown, format, format == formatting.LogFormat && cli.Color(c.Streams.Out))
	if err != nil {
		return err
	}
	switch {
	case len(shown) == 0 && format == formatting.LogFormat && parseErr != nil:
		fmt.Fprintf(c.Streams.ErrOut, "No validation issues found when analyzing %s (but %d document(s) could not be parsed).\n", target, len(parseErr.Errs))
	case len(shown) == 0 && format == formatting.LogFormat:
		fmt.Fprintf(c.Streams.ErrOut, "\u2714 No validation issues found when analyzing %s.\n", target)
	default:
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
	if parseErr != nil && !o.ignoreUnknown {
		return exitcode.Dataf("%d document(s) could not be parsed (listed above): fix them, or pass --ignore-unknown to analyze only the rest", len(parseErr.Errs))
	}
	return nil
}

// lint runs the resilience lint over the VirtualServices and
// DestinationRules analyzed: the cluster's (in scope, read through rd from
// the LISTs the analyzers read, every revision's; rd is nil for files
// only) with the files' objects in place of the live ones they name.
func (o *analyzeOptions) lint(ctx context.Context, rd *reads.Reader, snap *analysis.Snapshot, ns, meshConfig string, files []*unstructured.Unstructured, sups []analysis.Suppression) (diag.Messages, error) {
	if len(o.analyzers) > 0 {
		return nil, nil // --analyzer selects Istio's analyzers only
	}
	byRef := map[string]*unstructured.Unstructured{}
	var order []string
	add := func(u *unstructured.Unstructured) {
		if k := u.GetKind(); k != "VirtualService" && k != "DestinationRule" {
			return
		}
		if u.GetNamespace() == "" {
			u = u.DeepCopy()
			u.SetNamespace(map[bool]string{true: ns, false: metav1.NamespaceDefault}[ns != ""])
		}
		if ns != "" && u.GetNamespace() != ns {
			return
		}
		key := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
		if byRef[key] == nil {
			order = append(order, key)
		}
		byRef[key] = u
	}
	retryOn := resilience.MeshRetryOnYAML(meshConfig)
	if snap != nil {
		for _, gvr := range []schema.GroupVersionResource{mesh.VirtualServices, mesh.DestinationRules} {
			objs, err := rd.Unstructured(ctx, reads.Request{Resource: gvr, Namespace: ns})
			if apierrors.IsNotFound(err) {
				continue
			} else if err != nil {
				return nil, err
			}
			for _, u := range objs {
				add(u)
			}
		}
		if meshConfig == "" {
			retryOn = resilience.MeshRetryOnYAML(snap.MeshConfig())
		}
	}
	for _, u := range files {
		add(u)
	}
	in := resilience.Input{MeshRetryOn: retryOn}
	for _, k := range order {
		if u := byRef[k]; u.GetKind() == "VirtualService" {
			in.VirtualServices = append(in.VirtualServices, u)
		} else {
			in.DestinationRules = append(in.DestinationRules, u)
		}
	}
	var kept []resilience.Finding
	for _, f := range resilience.Lint(in) {
		if !analysis.Suppressed(sups, f.Code, f.Ref()) {
			kept = append(kept, f)
		}
	}
	return analysis.LintMessages(kept), nil
}

// analyzeLive analyzes the cluster (with the files as a what-if); a
// *analysis.ParseError comes with the messages of what could be read.
func (o *analyzeOptions) analyzeLive(ctx context.Context, c *cli.Context, ns string, opts analysis.Options) (diag.Messages, *analysis.Snapshot, error) {
	rd, err := c.Reads()
	if err != nil {
		return nil, nil, err
	}
	// Whether the namespace exists and the Istio CRDs are served is asked
	// while the snapshot is read (its LISTs take most of the time); the
	// answer comes first, and a refusal cancels the read.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	required := make(chan error, 1)
	go func() {
		err := requireCluster(ctx, c, ns)
		if err != nil {
			cancel()
		}
		required <- err
	}()
	snap, err := o.read(ctx, rd, &opts)
	if rerr := <-required; rerr != nil {
		return nil, nil, rerr
	}
	var denied *analysis.DeniedError
	if errors.As(err, &denied) {
		return nil, nil, exitcode.New(exitcode.NoPerm, fmt.Errorf("Istio's analyzers read the whole cluster, but you %s: ask for read access, or analyze files only with --use-kube=false", denied))
	} else if err != nil {
		return nil, nil, err
	}
	opts.Snapshot = snap
	msgs, err := analysis.Run(ctx, opts)
	return msgs, snap, err
}

// read takes the analyzers' snapshot of the revision analyzed.
func (o *analyzeOptions) read(ctx context.Context, rd *reads.Reader, opts *analysis.Options) (*analysis.Snapshot, error) {
	if err := o.selectRevision(ctx, rd, opts); err != nil {
		return nil, err
	}
	return analysis.Read(ctx, rd, *opts)
}

// selectRevision points the analysis at one control plane: its config
// objects (istio.io/rev) and, unless --meshConfigFile overrides it, its mesh
// config, which a revision keeps in istio-<rev> rather than the istio
// ConfigMap Istio's analyzer reads.
func (o *analyzeOptions) selectRevision(ctx context.Context, rd *reads.Reader, opts *analysis.Options) error {
	if o.revision == mesh.DefaultRevision {
		// As istioctl: unlabelled config and the istio ConfigMap, whatever
		// is installed (and no extra read a restricted user may lack).
		return nil
	}
	planes, err := mesh.Revisions(ctx, rd)
	if err != nil {
		return err
	}
	cp, ok := mesh.Resolve(planes, o.revision)
	if !ok {
		return exitcode.Usagef("revision %q is not installed: use one of %v", o.revision, mesh.Names(planes))
	}
	opts.Revision = cp.Revision
	if cp.Revision == mesh.DefaultRevision || opts.MeshConfig != "" {
		return nil
	}
	// The Istio namespace (-i) first: a revision's control plane can run
	// elsewhere too, but its mesh config lives where its istiod reads it.
	name := "istio-" + cp.Revision
	for _, ns := range slices.Compact([]string{opts.IstioNamespace, cp.Namespace}) {
		cm, err := reads.ConfigMap(ctx, rd, ns, name)
		if err != nil {
			return fmt.Errorf("cannot read revision %s's mesh config (ConfigMap %s/%s): %w", cp.Revision, ns, name, err)
		} else if cm != nil {
			opts.MeshConfig, opts.IstioNamespace = cm.Data["mesh"], ns
			return nil
		}
	}
	return exitcode.Usagef("revision %s has no mesh config: ConfigMap %s not found in %s; name its namespace with -i, or give the mesh config with --meshConfigFile", cp.Revision, name, strings.Join(slices.Compact([]string{opts.IstioNamespace, cp.Namespace}), " or "))
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
