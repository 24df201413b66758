package cli

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Dry-run modes, as in kubectl.
const (
	DryRunNone   = "none"
	DryRunServer = "server"
	DryRunClient = "client"
)

// Severity levels for --failure-threshold, named as Istio's analyzers name them.
var Severities = []string{"Info", "Warning", "Error"}

// EngineOptions are the flags every workflow shares; the pipeline runner
// reads them, workflows never do.
type EngineOptions struct {
	Yes              bool
	DryRun           string
	Output           string
	OutputDir        string
	FieldManager     string
	ForceConflicts   bool
	IstioNamespace   string
	FailureThreshold string
	Accept           []string
	ShowSecrets      bool
	JournalNamespace string
	// ProxySyncTimeout bounds the wait for proxies to acknowledge an
	// applied change to Istio configuration; 0 skips it.
	ProxySyncTimeout time.Duration
	// Diff is "full" (summary first when long, paged on a terminal) or
	// "summary" (the table only).
	Diff string
	// ReportFile, when set with OutputDir, receives the plan's checks and
	// analysis as JSON (pipeline.Report). The fleet sets it per cluster;
	// it is not a flag.
	ReportFile string
}

// Analyzes reports whether a plan is analyzed against the cluster: not for
// a client-side dry run, nor for manifests printed or written (unless a
// report goes with them).
func (o *EngineOptions) Analyzes() bool {
	if o.Output != "" || o.OutputDir != "" {
		return o.ReportFile != ""
	}
	return o.DryRun != DryRunClient
}

// DefaultEngineOptions returns the defaults documented in --help.
func DefaultEngineOptions() *EngineOptions {
	return &EngineOptions{
		DryRun:           DryRunNone,
		FieldManager:     "kubectl-mesh",
		IstioNamespace:   "istio-system",
		FailureThreshold: "Error",
		JournalNamespace: "kubectl-mesh",
		ProxySyncTimeout: 30 * time.Second,
		Diff:             "full",
	}
}

// AddScopeFlags binds the flags every command takes: where Istio and the
// journal live.
func (o *EngineOptions) AddScopeFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.IstioNamespace, "istio-namespace", "i", o.IstioNamespace, "Namespace of the Istio control plane")
	fs.StringVar(&o.JournalNamespace, "journal-namespace", o.JournalNamespace, "Namespace where change sets are recorded for history and undo")
}

// AddChangeFlags binds the flags of commands that change the cluster:
// how a plan is confirmed, previewed, exported, gated and applied.
func (o *EngineOptions) AddChangeFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.Yes, "yes", "y", o.Yes, "Apply without asking for confirmation")
	fs.StringVar(&o.DryRun, "dry-run", o.DryRun, `"none" applies; "server" shows the server-side diff and stops (exit 1 when there are changes); "client" prints the plan without contacting the API server for validation`)
	fs.Lookup("dry-run").NoOptDefVal = DryRunServer
	fs.StringVarP(&o.Output, "output", "o", o.Output, "Print the plan's manifests instead of applying: yaml or json")
	fs.StringVar(&o.OutputDir, "output-dir", o.OutputDir, "Write the plan's manifests and a kustomization.yaml to this directory instead of applying")
	fs.StringVar(&o.FieldManager, "field-manager", o.FieldManager, "Field manager used for server-side apply")
	fs.BoolVar(&o.ForceConflicts, "force-conflicts", o.ForceConflicts, "Take ownership of fields another field manager owns")
	fs.StringVar(&o.FailureThreshold, "failure-threshold", o.FailureThreshold, "Lowest severity of a finding that blocks: Info, Warning or Error")
	fs.StringSliceVar(&o.Accept, "accept", o.Accept, "Accept a blocking finding by its check ID (recorded in the journal); repeatable")
	fs.BoolVar(&o.ShowSecrets, "show-secrets", o.ShowSecrets, "Show Secret values in diffs and output instead of ***")
	fs.StringVar(&o.Diff, "diff", o.Diff, `"full": the diff (after a summary table when longer than a screen, through $KUBECTL_MESH_PAGER or $PAGER on a terminal); "summary": the table only`)
	fs.DurationVar(&o.ProxySyncTimeout, "proxy-sync-timeout", o.ProxySyncTimeout, "After a change to Istio configuration, how long to wait for the connected proxies to acknowledge it (istiod read through the API server; 0 skips the wait; never fails the apply)")
}

// Validate checks the engine flags; it is pure so it runs before any network call.
func (o *EngineOptions) Validate() error {
	if !slices.Contains([]string{DryRunNone, DryRunServer, DryRunClient}, o.DryRun) {
		return fmt.Errorf("invalid --dry-run %q: use none, server or client", o.DryRun)
	}
	if o.Output != "" && o.Output != "yaml" && o.Output != "json" {
		return fmt.Errorf("invalid -o/--output %q: use yaml or json", o.Output)
	}
	if _, err := ParseSeverity(o.FailureThreshold); err != nil {
		return err
	}
	if o.Diff != "full" && o.Diff != "summary" {
		return fmt.Errorf("invalid --diff %q: use full or summary", o.Diff)
	}
	if o.ProxySyncTimeout < 0 {
		return fmt.Errorf("--proxy-sync-timeout must not be negative")
	}
	if strings.TrimSpace(o.FieldManager) == "" {
		return fmt.Errorf("--field-manager must not be empty")
	}
	return nil
}

// ParseSeverity returns the rank of a severity name (Info=0, Warning=1, Error=2).
func ParseSeverity(s string) (int, error) {
	for i, v := range Severities {
		if strings.EqualFold(v, s) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("invalid severity %q: use Info, Warning or Error", s)
}
