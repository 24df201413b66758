package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/fleet"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
)

// What a command does when several contexts are given, from its
// fleetAnnotation: read-only commands combine a report per cluster; plans
// are written as one kustomize layout (--output-dir) or applied wave by
// wave. Commands without it work on one cluster.
const (
	fleetAnnotation = "kubectl-mesh.io/fleet"
	fleetRead       = "read"
	fleetPlan       = "plan"
)

// fleetFlags are the flags for several clusters.
type fleetFlags struct {
	all    bool
	waves  string
	gitops fleet.GitOps
}

// fleetRunner runs a command once per context, each in a command tree of
// its own (fresh workflows, clients and flags), in this process.
type fleetRunner struct {
	c       *cli.Context
	flags   *fleetFlags
	newRoot func(genericiooptions.IOStreams) (*cobra.Command, *cli.Context)
	// stdin is read once when a flag names it ("-f -") and handed to
	// every cluster's run.
	stdin []byte
}

// addFleetConnectionFlags documents --context a,b,c and adds --all-contexts
// to the connection flags.
func (f *fleetFlags) addConnectionFlags(conn *pflag.FlagSet) {
	if fl := conn.Lookup("context"); fl != nil {
		fl.Usage = "The name of the kubeconfig context to use; a,b,c runs the command on each of those clusters"
	}
	conn.BoolVar(&f.all, "all-contexts", false, "Run the command on every context of the kubeconfig")
}

// addPlanFlags adds the flags for plans across clusters.
func (f *fleetFlags) addPlanFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.waves, "waves", "", `With several contexts: how many clusters each wave takes, in order, e.g. "1,2,N" (N: the rest; default: one cluster per wave). Applying stops at the first cluster that fails; with --output-dir the waves become the GitOps rollout order`)
	fs.StringVar(&f.gitops.Tool, "gitops", "", `With several contexts and --output-dir: also write an Argo CD ApplicationSet ("argocd") or Flux Kustomizations ("flux") that roll the layout out wave by wave`)
	fs.StringVar(&f.gitops.Repo, "gitops-repo", "", "Git URL of the repository the output directory is committed to (--gitops argocd)")
	fs.StringVar(&f.gitops.Revision, "gitops-revision", "HEAD", "Branch, tag or commit Argo CD reads (--gitops argocd)")
	fs.StringVar(&f.gitops.Path, "gitops-path", "", "Path of the output directory inside the repository (default: --output-dir when relative)")
	fs.StringVar(&f.gitops.Source, "gitops-source", "flux-system", "Flux GitRepository that holds the repository (--gitops flux)")
}

// wrap makes every command of the tree fleet-aware.
func (f *fleetRunner) wrap(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		f.wrap(sub)
	}
	run := cmd.RunE
	if run == nil {
		return
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !fleet.Requested(*f.c.Flags.Context, f.flags.all) {
			for _, name := range []string{"waves", "gitops"} {
				if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
					return exitcode.Usagef("--%s needs several clusters: pass --context a,b,c or --all-contexts", name)
				}
			}
			return run(cmd, args)
		}
		switch cmd.Annotations[fleetAnnotation] {
		case fleetRead:
			return f.read(cmd, args)
		case fleetPlan:
			return f.plan(cmd, args)
		}
		return exitcode.Usagef("%s works on one cluster: pass a single --context", cmd.CommandPath())
	}
}

func (f *fleetRunner) members() ([]fleet.Member, error) {
	raw, err := f.c.Flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return nil, exitcode.Usagef("cannot load the kubeconfig: %v; set --kubeconfig or KUBECONFIG", err)
	}
	ms, err := fleet.Resolve(&raw, *f.c.Flags.Context, f.flags.all)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err)
	}
	if err := fleet.AssignWaves(ms, f.flags.waves); err != nil {
		return nil, exitcode.New(exitcode.Usage, err)
	}
	return ms, nil
}

// sub is one cluster's run: its command tree and its command line.
type sub struct {
	root *cobra.Command
	c    *cli.Context
	out  *bytes.Buffer
	err  *bytes.Buffer
}

// subs builds one command tree per member, one after another (cobra's
// template functions are global), with the command line of this run
// pointed at that member's context. drop names flags that only the fleet
// reads; extra adds flags per member.
func (f *fleetRunner) subs(cmd *cobra.Command, args []string, ms []fleet.Member, streams *genericiooptions.IOStreams, drop []string, extra func(fleet.Member) []string) []sub {
	base := commandPath(cmd)
	dash := false // "-f -": every cluster reads the same stdin
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if fl.Name == "context" || fl.Name == "all-contexts" || slices.Contains(drop, fl.Name) {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				base = append(base, "--"+fl.Name+"="+v)
				dash = dash || v == "-"
			}
			return
		}
		base = append(base, "--"+fl.Name+"="+fl.Value.String())
	})
	if dash && f.stdin == nil {
		f.stdin, _ = io.ReadAll(f.c.Streams.In)
	}
	out := make([]sub, len(ms))
	for i, m := range ms {
		s := sub{out: &bytes.Buffer{}, err: &bytes.Buffer{}}
		st := genericiooptions.IOStreams{In: bytes.NewReader(f.stdin), Out: s.out, ErrOut: s.err}
		if streams != nil {
			st = *streams
			if dash { // a pipe, so no questions either
				st.In = bytes.NewReader(f.stdin)
			}
		}
		line := append(slices.Clone(base), "--context="+m.Context)
		if extra != nil {
			line = append(line, extra(m)...)
		}
		line = append(append(line, "--"), args...)
		s.root, s.c = f.newRoot(st)
		s.root.SetArgs(line)
		s.c.Args = append([]string{"kubectl-mesh"}, line...)
		out[i] = s
	}
	return out
}

func commandPath(cmd *cobra.Command) []string {
	var path []string
	for p := cmd; p.HasParent(); p = p.Parent() {
		path = append([]string{p.Name()}, path...)
	}
	return path
}

func (s sub) run(ctx context.Context, m fleet.Member) fleet.Outcome {
	code, msg := exitcode.Describe(s.root.ExecuteContext(ctx))
	// With the terminal's streams (one cluster at a time) the buffers stay empty.
	return fleet.Outcome{Member: m, Code: code, Error: msg, Stdout: s.out.Bytes(), Stderr: s.err.Bytes()}
}

// read runs a read-only command on every cluster, concurrently, and
// prints one report: a section per cluster and a row per cluster, or one
// document keyed by context for -o json|yaml. An unreachable cluster is a
// row with its error; the exit code is the worst cluster's.
func (f *fleetRunner) read(cmd *cobra.Command, args []string) error {
	ms, err := f.members()
	if err != nil {
		return err
	}
	subs := f.subs(cmd, args, ms, nil, nil, nil)
	outs := fleet.Each(cmd.Context(), ms, func(ctx context.Context, i int) fleet.Outcome {
		return subs[i].run(ctx, ms[i])
	})
	w := f.c.Streams.Out
	format := ""
	if fl := cmd.Flags().Lookup("output"); fl != nil {
		format = fl.Value.String()
	}
	if format == "json" || format == "yaml" {
		if err := fleet.WriteStructured(w, format, outs); err != nil {
			return err
		}
	} else {
		fleet.WriteText(w, outs)
	}
	if code := fleet.Worst(outs); code != 0 {
		return exitcode.Silent{Code: code}
	}
	return nil
}

// plan runs a workflow on every cluster: into one kustomize layout with
// --output-dir, else applied (or dry-run) cluster by cluster, wave by wave.
func (f *fleetRunner) plan(cmd *cobra.Command, args []string) error {
	e := f.c.Engine
	if e.Output != "" {
		return exitcode.Usagef("-o prints one cluster's plan: for several contexts write a layout with --output-dir DIR")
	}
	if e.OutputDir == "" && f.flags.gitops.Tool != "" {
		return exitcode.Usagef("--gitops describes an --output-dir layout: add --output-dir DIR")
	}
	ms, err := f.members()
	if err != nil {
		return err
	}
	if e.OutputDir != "" {
		return f.layout(cmd, args, ms)
	}
	return f.apply(cmd, args, ms)
}

// layout writes the fleet's plans as base/ + clusters/<context>/ (see
// fleet.Layout), each cluster's report.json, and the GitOps objects.
func (f *fleetRunner) layout(cmd *cobra.Command, args []string, ms []fleet.Member) error {
	dir := f.c.Engine.OutputDir
	g := f.flags.gitops
	if g.Path == "" && !filepath.IsAbs(dir) {
		g.Path = filepath.ToSlash(filepath.Clean(dir))
	}
	g.Namespace = map[string]string{"argocd": "argocd", "flux": "flux-system"}[g.Tool]
	if err := g.Validate(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return exitcode.Usagef("--output-dir %s is not empty: give a new or empty directory (the layout is written whole)", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return exitcode.Usagef("cannot read --output-dir %s: %v", dir, err)
	}
	tmp, err := os.MkdirTemp("", "kubectl-mesh-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	drop := []string{"output-dir", "waves", "gitops", "gitops-repo", "gitops-revision", "gitops-path", "gitops-source"}
	subs := f.subs(cmd, args, ms, nil, drop, func(m fleet.Member) []string {
		return []string{"--output-dir=" + filepath.Join(tmp, m.Dir)}
	})
	for i, m := range ms {
		subs[i].c.Engine.ReportFile = filepath.Join(tmp, m.Dir+".report.json")
	}
	outs := fleet.Each(cmd.Context(), ms, func(ctx context.Context, i int) fleet.Outcome {
		return subs[i].run(ctx, ms[i])
	})
	if fleet.Worst(outs) != 0 {
		var failed []fleet.Outcome
		for _, o := range outs {
			if o.Code != 0 {
				failed = append(failed, o)
			}
		}
		fleet.WriteText(f.c.Streams.ErrOut, failed)
		return exitcode.New(fleet.Worst(outs), fmt.Errorf("no layout written: %d of %d cluster(s) could not be planned (above)", len(failed), len(outs)))
	}

	plans := make([]fleet.ClusterPlan, len(ms))
	for i, m := range ms {
		p := fleet.ClusterPlan{Member: m}
		b, err := os.ReadFile(subs[i].c.Engine.ReportFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The workflow had nothing to plan there (no plan reached the
			// Runner): the cluster gets base only, and says so.
			p.Report = map[string]any{"title": "nothing to plan", "checks": []any{}, "analysis": []any{}, "blocked": []any{}}
		case err != nil:
			return fmt.Errorf("cluster %s: %w", m.Context, err)
		default:
			if err := json.Unmarshal(b, &p.Report); err != nil {
				return fmt.Errorf("cluster %s: report: %w", m.Context, err)
			}
			if p.Objects, err = readOutputDir(filepath.Join(tmp, m.Dir)); err != nil {
				return fmt.Errorf("cluster %s: %w", m.Context, err)
			}
		}
		plans[i] = p
	}
	files, err := fleet.Layout(plans)
	if err != nil {
		return err
	}
	switch g.Tool {
	case "argocd":
		b, err := yaml.Marshal(fleet.ApplicationSet(ms, g).Object)
		if err != nil {
			return err
		}
		files["argocd/applicationset.yaml"] = b
	case "flux":
		var buf bytes.Buffer
		for _, k := range fleet.FluxKustomizations(ms, g) {
			b, err := yaml.Marshal(k.Object)
			if err != nil {
				return err
			}
			buf.WriteString("---\n")
			buf.Write(b)
		}
		files["flux/kustomizations.yaml"] = buf.Bytes()
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return exitcode.Usagef("cannot create --output-dir %s: %v", dir, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return exitcode.Usagef("cannot write --output-dir %s: %v", dir, err)
		}
	}
	w := f.c.Streams.ErrOut
	for _, o := range outs { // the plans' notes, each under its cluster
		for _, l := range strings.Split(strings.TrimRight(string(o.Stderr), "\n"), "\n") {
			if l != "" {
				fmt.Fprintf(w, "%s: %s\n", o.Context, l)
			}
		}
	}
	printLayoutSummary(w, plans)
	fmt.Fprintf(w, "Wrote the layout for %d clusters to %s: kustomize build %s renders a cluster's plan.\n", len(ms), dir, filepath.Join(dir, "clusters", ms[0].Dir))
	return nil
}

func printLayoutSummary(w io.Writer, plans []fleet.ClusterPlan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tWAVE\tOBJECTS\tBLOCKED")
	for _, p := range plans {
		blocked := "-"
		if b, _ := p.Report["blocked"].([]any); len(b) > 0 {
			var ids []string
			for _, id := range b {
				ids = append(ids, fmt.Sprint(id))
			}
			blocked = strings.Join(ids, ",")
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", p.Context, p.Wave, len(p.Objects), blocked)
	}
	tw.Flush()
}

// readOutputDir reads a single cluster's --output-dir back, in its
// kustomization's (apply) order.
func readOutputDir(dir string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	paths := make([]string, len(k.Resources))
	for i, r := range k.Resources {
		paths[i] = filepath.Join(dir, r)
	}
	files, err := manifest.Read(paths, nil, false)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		out = append(out, f.Objects...)
	}
	return out, nil
}

// apply runs the workflow on each cluster through the normal pipeline,
// wave after wave, after checking that every cluster answers (nothing is
// written to any cluster when one cannot be reached). Without --yes the
// clusters of a wave go one at a time so each can be confirmed; with it
// they go concurrently and their output is printed per cluster. The first
// wave with a failing cluster is the last one; the summary says what was
// applied where and how to undo it.
func (f *fleetRunner) apply(cmd *cobra.Command, args []string, ms []fleet.Member) error {
	if err := f.reachable(cmd.Context(), ms); err != nil {
		return err
	}
	e := f.c.Engine
	dryRun := e.DryRun != cli.DryRunNone
	drop := []string{"waves"}
	var outs []fleet.Outcome
	var undo [][]string
	done := 0
	stopped := false
	for _, wave := range fleet.Waves(ms) {
		var waveOuts []fleet.Outcome
		if e.Yes || dryRun {
			// No questions: the wave's clusters run at once, each into one
			// transcript (stdout and stderr in the order written), printed
			// whole when the wave is done.
			subs := f.subs(cmd, args, wave, nil, drop, nil)
			for _, s := range subs {
				s.c.Streams.ErrOut = s.c.Streams.Out
				s.root.SetErr(s.c.Streams.Out)
			}
			waveOuts = fleet.Each(cmd.Context(), wave, func(ctx context.Context, i int) fleet.Outcome {
				return subs[i].run(ctx, wave[i])
			})
			for i, o := range waveOuts {
				fmt.Fprintf(f.c.Streams.ErrOut, "=== wave %d: %s (%s) ===\n", o.Wave, o.Context, o.Server)
				f.c.Streams.ErrOut.Write(o.Stdout)
				if o.Error != "" {
					fmt.Fprintf(f.c.Streams.ErrOut, "error: %s\n", o.Error)
				}
				undo = append(undo, subs[i].c.ChangeSets)
			}
		} else {
			for _, m := range wave {
				fmt.Fprintf(f.c.Streams.ErrOut, "=== wave %d: %s (%s) ===\n", m.Wave, m.Context, m.Server)
				s := f.subs(cmd, args, []fleet.Member{m}, &f.c.Streams, drop, nil)[0]
				o := s.run(cmd.Context(), m)
				if o.Error != "" {
					fmt.Fprintf(f.c.Streams.ErrOut, "error: %s\n", o.Error)
				}
				waveOuts = append(waveOuts, o)
				undo = append(undo, s.c.ChangeSets)
				if failed(o, dryRun) {
					break
				}
			}
		}
		outs = append(outs, waveOuts...)
		done += len(waveOuts)
		if slices.ContainsFunc(waveOuts, func(o fleet.Outcome) bool { return failed(o, dryRun) }) {
			stopped = true
			break
		}
	}
	w := f.c.Streams.ErrOut
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tWAVE\tRESULT\tUNDO")
	for i, o := range outs {
		// The error is in the cluster's section above.
		result, how := fmt.Sprintf("failed (exit %d)", o.Code), "-"
		switch {
		case o.Code == 0:
			result = "ok"
		case dryRun && o.Code == exitcode.Changes && o.Error == "":
			result = "changes (dry run)"
		}
		if ids := undo[i]; len(ids) > 0 {
			if o.Code == 0 {
				result = "applied " + strings.Join(ids, ", ")
			}
			how = fmt.Sprintf("kubectl mesh undo %s --context %s", ids[len(ids)-1], o.Context)
		} else if o.Code == 0 && !dryRun {
			result = "no changes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", o.Context, o.Wave, result, how)
	}
	for _, m := range ms[done:] {
		fmt.Fprintf(tw, "%s\t%d\tnot started\t-\n", m.Context, m.Wave)
	}
	tw.Flush()
	if stopped && done < len(ms) {
		fmt.Fprintf(w, "Stopped after wave %d: %d cluster(s) were not started.\n", outs[len(outs)-1].Wave, len(ms)-done)
	}
	if code := fleet.Worst(outs); code != 0 { // a dry run with changes: 1, as for one cluster
		return exitcode.Silent{Code: code}
	}
	return nil
}

// failed: an error, not a dry run reporting its changes (exit 1).
func failed(o fleet.Outcome, dryRun bool) bool {
	return o.Code != 0 && !(dryRun && o.Code == exitcode.Changes && o.Error == "")
}

// reachable asks every cluster for its version, concurrently: a plan is
// applied to none of them when one cannot be reached.
func (f *fleetRunner) reachable(ctx context.Context, ms []fleet.Member) error {
	raw, err := f.c.Flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return err
	}
	outs := fleet.Each(ctx, ms, func(ctx context.Context, i int) fleet.Outcome {
		o := fleet.Outcome{Member: ms[i]}
		cfg, err := clientcmd.NewNonInteractiveClientConfig(raw, ms[i].Context, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err == nil {
			cfg.Timeout = 10 * time.Second
			var dc *discovery.DiscoveryClient
			if dc, err = discovery.NewDiscoveryClientForConfig(cfg); err == nil {
				_, err = dc.ServerVersion()
			}
		}
		if err != nil {
			o.Code, o.Error = exitcode.Describe(err)
		}
		return o
	})
	for _, o := range outs {
		if o.Code != 0 {
			return exitcode.New(exitcode.Unavailable, fmt.Errorf("context %s (%s) cannot be reached: %s; nothing was applied to any cluster", o.Context, o.Server, o.Error))
		}
	}
	return nil
}
