// Package pipeline is the engine every workflow plugs into. A workflow only
// builds a Plan from what it read; the Runner owns every side effect:
// analyze → diff → confirm → journal → apply → verify.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Op is what the runner does with an object.
type Op string

const (
	// Apply is a server-side apply of the fields the plan sets.
	Apply Op = "apply"
	// Replace puts the whole object back as given (undo of a change).
	Replace Op = "replace"
	// Delete removes the object if it exists.
	Delete Op = "delete"
)

// Change is one object operation.
type Change struct {
	Op     Op
	Object *unstructured.Unstructured
	// Partial marks an apply of a few fields of an object the plan does not
	// own (a restart annotation on a team's Deployment): it is not labelled
	// managed-by kubectl-mesh.
	Partial bool
	// Known says the planner read the object with a consistent read: Live
	// is it, or nil when it does not exist. The diff starts from that
	// instead of reading it again. Should it have changed since, the write
	// is refused as a concurrent edit (a Replace's dry run already
	// conflicts on its resourceVersion).
	Known bool
	Live  *unstructured.Unstructured
}

// Phase is a group of changes applied together; phases run in order so that
// what later phases need (CRDs, namespaces, subsets) exists first.
type Phase struct {
	Name    string
	Changes []Change
	// Verify runs right after this phase is applied, before the next one
	// starts (one workload restarted at a time, each waiting for its rollout).
	Verify []VerifyStep
}

// Severity of a check.
type Severity int

const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string { return cli.Severities[s] }

// MarshalText writes the severity's name (Info, Warning, Error), as
// istioctl analyze -o json does.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	i, err := cli.ParseSeverity(string(b))
	*s = Severity(i)
	return err
}

// Check is the one finding type: a plan's preflight finding, reported like
// an Istio analyzer message, and each outcome of kubectl mesh check (Info
// when the check passed).
type Check struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message,omitempty"`
	Objects  []string `json:"objects,omitempty"`
	Hint     string   `json:"hint,omitempty"`
	URL      string   `json:"url,omitempty"`
}

// Progress reports what a verify step is waiting for.
type Progress func(format string, a ...any)

// VerifyStep runs after apply and waits for the change to take effect.
type VerifyStep struct {
	Name    string
	Timeout time.Duration
	Run     func(ctx context.Context, progress Progress) error
}

// Plan is what a workflow wants done. It holds no clients and does no I/O.
type Plan struct {
	Title  string
	Phases []Phase
	Checks []Check
	Verify []VerifyStep
	Notes  []string
	// UndoOf is the change set this plan reverses, if it is an undo.
	UndoOf string
	// Done, when set, says why there is nothing (more) to apply (a canary
	// at the end of its steps): the engine prints it and applies nothing.
	Done string
	// Output, when set, is what an informational flag asked for (install
	// --explain): the engine prints it on stdout and applies nothing.
	Output string
	// Report is printed on stderr before the diff (an inventory, a coverage
	// table): what the user needs to judge the plan.
	Report func(w io.Writer)
	// Result is printed after a successful apply (or instead of one when
	// nothing changes); workflows use it for summaries. It reads the
	// cluster as applied through the reader the Runner hands it (a new
	// one: what was read for the plan is forgotten once it is applied).
	Result func(ctx context.Context, rd *reads.Reader, w io.Writer)
}

// Objects returns every object the plan applies or replaces, in order.
func (p *Plan) Objects() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, ph := range p.Phases {
		for _, c := range ph.Changes {
			if c.Op != Delete {
				out = append(out, c.Object)
			}
		}
	}
	return out
}

// Ref names an object as kubectl does: "kind/name -n ns".
func Ref(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	kind := gvk.Kind
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	if ns := u.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s/%s -n %s", kind, u.GetName(), ns)
	}
	return kind + "/" + u.GetName()
}

// Command is anything the root command can mount: a Workflow or a Group.
type Command interface {
	Command() *cobra.Command
}

// Group is a command whose subcommands are workflows and inspectors
// (kubectl mesh canary start|step|promote|abort|status); its own command
// only carries help and shared flags.
type Group interface {
	Command
	// Subcommands are each a Workflow or an Inspector.
	Subcommands() []Command
}

// Sequence is a workflow that runs several plans one after another (a
// canary stepping itself with --auto): after each applied plan the engine
// waits the sequence's Pause, then asks for the next plan; nil ends the
// sequence.
type Sequence interface {
	Pause() Pause
	Next(ctx context.Context, c *cli.Context) (*Plan, error)
}

// Pause is the wait between two plans of a Sequence: how long, before
// what ("the next gate"), and the command that continues after a Ctrl-C.
type Pause struct {
	For    time.Duration
	Before string
	Resume string
}

// Wait waits p.For (nothing when zero), saying so on w; a cancelled ctx
// (Ctrl-C) ends the wait with exit 130 and the command to continue.
func Wait(ctx context.Context, w io.Writer, p Pause) error {
	if p.For <= 0 {
		return nil
	}
	fmt.Fprintf(w, "Waiting %s before %s…\n", p.For, p.Before)
	t := time.NewTimer(p.For)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return exitcode.New(exitcode.Interrupted, fmt.Errorf("interrupted while waiting before %s; what is applied stays: continue with %s", p.Before, p.Resume))
	case <-t.C:
		return nil
	}
}

// Workflow is the contract of a command that changes the cluster.
type Workflow interface {
	// Command returns the cobra command with flags bound to the workflow's options.
	Command() *cobra.Command
	// Complete fills options from args and, where flags left gaps and the
	// context can prompt, from questions.
	Complete(ctx context.Context, c *cli.Context, args []string) error
	// Validate checks the options without I/O.
	Validate() error
	// Plan reads the cluster and returns what should change; it never
	// writes. A nil plan means there is nothing (more) to run (a canary
	// sequence at its end); an informational flag returns Plan.Output.
	Plan(ctx context.Context, c *cli.Context) (*Plan, error)
}

// KindWriter is a workflow that names the kinds its plans write. The
// engine then starts the LISTs Istio's analyzers will need to analyze such
// a plan before the workflow reads anything, so that the workflow's own
// reads of those kinds (the pods of its namespace, the Services it
// routes) are served from them instead of costing requests of their own.
// Name the kinds a plan usually writes: a kind named but not written costs
// the LISTs of its analyzers' inputs for nothing; a kind written but not
// named costs only what it did before.
type KindWriter interface {
	Writes() []schema.GroupVersionKind
}

// Prefetch starts, in c's reader, the LISTs a plan of w will be analyzed
// with, when w names its kinds and the plan will be analyzed.
func Prefetch(ctx context.Context, c *cli.Context, w any) {
	kw, ok := w.(KindWriter)
	if !ok || !c.Engine.Analyzes() {
		return
	}
	if rd, err := c.Reads(); err == nil {
		rd.Prefetch(ctx, analysis.Requests(AnalysisOptions(c.Engine.IstioNamespace, kw.Writes()...))...)
	}
}

// Permission is an RBAC grant a workflow needs: verbs on a resource, in
// the namespace it works on or cluster-wide.
type Permission struct {
	Group, Resource string
	Verbs           []string
	ClusterWide     bool
	// ResourceNames narrows a grant (a namespace the workflow edits).
	ResourceNames []string
}

// Permissioned workflows declare what they need, for kubectl mesh rbac;
// with their default options when the grants depend on them (install).
type Permissioned interface {
	Permissions(namespace string) ([]Permission, error)
}

// Grant builds permissions for several resources of one API group.
func Grant(group string, clusterWide bool, verbs []string, resources ...string) []Permission {
	out := make([]Permission, len(resources))
	for i, r := range resources {
		out[i] = Permission{Group: group, Resource: r, Verbs: verbs, ClusterWide: clusterWide}
	}
	return out
}

// Inspector is a command that only reads the cluster and reports (check,
// status, canary status): no plan, none of the flags for changes. Complete
// and Validate mean what they mean for a Workflow; Inspect reads and
// prints, and its error sets the exit code.
type Inspector interface {
	Command() *cobra.Command
	Complete(ctx context.Context, c *cli.Context, args []string) error
	Validate() error
	Inspect(ctx context.Context, c *cli.Context) error
}

// Verbs the engine uses: reads, and writes with server-side apply, update
// (restores) and delete (undo).
var (
	Read  = []string{"get", "list"}
	Write = []string{"get", "list", "create", "update", "patch", "delete"}
)

// Edit returns a copy of a live object to change and put back whole with a
// Replace: the team owns it and the workflow changes only its parts. The
// field owners and status go; the server records the workflow as the
// manager of what it changed.
func Edit(live *unstructured.Unstructured) *unstructured.Unstructured {
	c := live.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(c.Object, "status")
	return c
}
