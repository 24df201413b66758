package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"istio.io/istio/pkg/config/analysis/diag"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/journal"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Runner executes plans. It is the only code that writes to the cluster.
type Runner struct {
	C *cli.Context
	// Analyze runs Istio's analyzers on the cluster and on the cluster as
	// planned (analysis.RunLive when nil); unit tests hand in findings.
	Analyze func(ctx context.Context, r *reads.Reader, opts ...analysis.Options) ([]diag.Messages, error)
}

// writeTimeout bounds one object's re-read and write, which a Ctrl-C does
// not cut short.
const writeTimeout = time.Minute

// Run takes a plan through diff → analyze and checks → confirm → journal →
// apply → verify, stopping where the engine flags say.
func (r *Runner) Run(ctx context.Context, plan *Plan) error {
	e := r.C.Engine
	if err := e.Validate(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	stderr := r.C.Streams.ErrOut
	stampManaged(plan)
	sortPhases(plan)
	threshold, _ := cli.ParseSeverity(e.FailureThreshold)

	if e.Output != "" || e.OutputDir != "" {
		// The manifests go to stdout; what the user should know about
		// them to stderr.
		for _, n := range plan.Notes {
			fmt.Fprintf(stderr, "note: %s\n", n)
		}
		if e.ReportFile != "" {
			if err := r.writeReport(ctx, plan, Severity(threshold)); err != nil {
				return err
			}
		}
		return r.export(plan)
	}
	if e.DryRun == cli.DryRunClient {
		return r.printPlan(plan)
	}

	if plan.Report != nil {
		plan.Report(stderr)
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}

	// The diff comes first: it is where bad credentials, missing
	// permissions and invalid objects surface, quickly and per object.
	srv, err := r.server()
	if err != nil {
		return err
	}
	diffs, err := r.diff(ctx, srv, plan)
	if err != nil {
		return err
	}
	changed := 0
	for _, d := range diffs {
		if d.Changed() {
			changed++
		}
	}
	if changed == 0 {
		// Nothing to analyze or confirm: a re-run costs one read per object.
		fmt.Fprintln(stderr, "No changes: the cluster already matches the plan.")
		r.C.ForgetReads()
		r.result(ctx, plan)
		return nil
	}
	var blocked []string
	if len(plan.Objects()) > 0 {
		fs, err := r.analyze(ctx, plan, Severity(threshold))
		if err != nil {
			return err
		}
		// An undo must always be possible: its findings are reported, never blocking.
		if plan.UndoOf == "" {
			blocked = append(blocked, fs...)
		}
	}
	plan.Checks = append(plan.Checks, r.resilienceChecks(ctx, plan)...)
	blocked = append(blocked, r.printChecks(plan, Severity(threshold))...)
	if err := r.showDiff(plan, diffs); err != nil {
		return err
	}
	r.summary(diffs)
	if len(blocked) > 0 {
		slices.Sort(blocked)
		blocked = slices.Compact(blocked)
		if err := r.acceptOnTerminal(blocked); err != nil {
			return err
		}
	}
	if e.DryRun == cli.DryRunServer {
		return exitcode.Silent{Code: exitcode.Changes}
	}
	if err := r.confirm(changed); err != nil {
		return err
	}
	// What was read for the plan is not what verify steps and results
	// must see once it is applied.
	r.C.ForgetReads()
	return r.apply(ctx, srv, plan, diffs)
}

// stampManaged labels every applied object so it can be found later.
func stampManaged(plan *Plan) {
	for _, ph := range plan.Phases {
		for _, c := range ph.Changes {
			if c.Op != Apply || c.Partial {
				continue
			}
			l := c.Object.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			l[journal.LabelManagedBy] = journal.ManagedByValue
			c.Object.SetLabels(l)
		}
	}
}

// sortPhases keeps the plan's order but makes sure CRDs and namespaces come
// first within a phase (last for deletes).
func sortPhases(plan *Plan) {
	for _, ph := range plan.Phases {
		sort.SliceStable(ph.Changes, func(i, j int) bool {
			return changeOrder(ph.Changes[i]) < changeOrder(ph.Changes[j])
		})
	}
}

// changeOrder: CRDs, namespaces, other writes, other deletes, then deletes
// of namespaces and CRDs (which would take their contents with them).
func changeOrder(c Change) int {
	if c.Op == Delete {
		return 10 - kindOrder(c.Object)
	}
	return kindOrder(c.Object)
}

func (r *Runner) server() (*server, error) {
	dyn, err := r.C.Dynamic()
	if err != nil {
		return nil, err
	}
	mapper, err := r.C.Mapper()
	if err != nil {
		return nil, err
	}
	return &server{dyn: dyn, mapper: mapper, fieldManager: r.C.Engine.FieldManager, force: r.C.Engine.ForceConflicts}, nil
}

// printChecks prints the plan's preflight findings and returns the IDs of
// those that block (at or above the threshold and not accepted).
func (r *Runner) printChecks(plan *Plan, threshold Severity) []string {
	var blocked []string
	for _, c := range plan.Checks {
		accepted := slices.Contains(r.C.Engine.Accept, c.ID)
		line := fmt.Sprintf("%s [%s] %s", c.Severity, c.ID, c.Message)
		if len(c.Objects) > 0 {
			line += " (" + strings.Join(c.Objects, ", ") + ")"
		}
		if accepted {
			line += " — accepted"
		}
		fmt.Fprintln(r.C.Streams.ErrOut, line)
		if c.Hint != "" {
			fmt.Fprintf(r.C.Streams.ErrOut, "    hint: %s\n", c.Hint)
		}
		if c.URL != "" {
			fmt.Fprintf(r.C.Streams.ErrOut, "    see: %s\n", c.URL)
		}
		if r.blocks(c.ID, c.Severity, threshold) {
			blocked = append(blocked, c.ID)
		}
	}
	return blocked
}

// diff dry-runs every change on the server.
func (r *Runner) diff(ctx context.Context, srv *server, plan *Plan) ([]*ObjectDiff, error) {
	newNamespaces := map[string]bool{}
	newKinds := map[string]bool{}
	for _, ph := range plan.Phases {
		for _, c := range ph.Changes {
			if c.Op == Delete {
				continue
			}
			if c.Object.GetKind() == "Namespace" {
				newNamespaces[c.Object.GetName()] = true
			}
			if isCRD(c.Object) {
				g, _, _ := unstructured.NestedString(c.Object.Object, "spec", "group")
				k, _, _ := unstructured.NestedString(c.Object.Object, "spec", "names", "kind")
				newKinds[g+"/"+k] = true
			}
		}
	}
	var out []*ObjectDiff
	for p, ph := range plan.Phases {
		for _, c := range ph.Changes {
			d := &ObjectDiff{Change: c, Ref: Ref(c.Object), phase: p}
			out = append(out, d)
			gk := c.Object.GroupVersionKind().GroupKind()
			live, err := c.Live.DeepCopy(), error(nil)
			if !c.Known {
				live, err = srv.get(ctx, c.Object)
			}
			if meta.IsNoMatchError(err) && c.Op == Delete {
				continue // the kind is not served, so there is nothing to delete
			}
			if meta.IsNoMatchError(err) && newKinds[gk.Group+"/"+gk.Kind] {
				d.Pending, d.After = "its CRD is created by this plan", c.Object
				continue
			}
			if err != nil {
				return nil, explain(c, err)
			}
			d.Before = live
			after, err := srv.do(ctx, c, live, true)
			if apierrors.IsNotFound(err) && newNamespaces[c.Object.GetNamespace()] {
				d.Pending, d.After = "namespace "+c.Object.GetNamespace()+" is created by this plan", c.Object
				continue
			}
			if err != nil {
				return nil, explain(c, err)
			}
			d.After = after
		}
	}
	return out, nil
}

func (r *Runner) summary(diffs []*ObjectDiff) {
	counts := map[string]int{}
	for _, d := range diffs {
		counts[d.Action()]++
	}
	fmt.Fprintf(r.C.Streams.ErrOut, "Plan: %d to create, %d to update, %d to delete, %d unchanged.\n",
		counts["create"], counts["update"], counts["delete"], counts["unchanged"])
}

// acceptOnTerminal asks about each blocking finding, as --accept ID would
// accept it; without a terminal, with --yes or for a dry run it blocks. An
// accepted finding is recorded in the change set like a flag's.
func (r *Runner) acceptOnTerminal(blocked []string) error {
	e := r.C.Engine
	refuse := exitcode.Blockedf("blocked by %d finding(s) at or above %s: %s; fix them, or accept one with --accept ID",
		len(blocked), e.FailureThreshold, strings.Join(blocked, ", "))
	if !r.C.CanPrompt() || e.Yes || e.DryRun != cli.DryRunNone {
		return refuse
	}
	for _, id := range blocked {
		ok, err := r.C.Prompter.Confirm(fmt.Sprintf("Accept finding %s (above) and go on? (recorded; --accept %s)", id, id), false)
		if errors.Is(err, prompt.ErrInterrupted) {
			return exitcode.New(exitcode.Interrupted, errors.New("interrupted: nothing was changed"))
		}
		if err != nil {
			return err
		}
		if !ok {
			return refuse
		}
	}
	r.C.Engine.Accept = append(r.C.Engine.Accept, blocked...)
	return nil
}

func (r *Runner) confirm(changed int) error {
	if r.C.Engine.Yes {
		return nil
	}
	if !r.C.CanPrompt() {
		return exitcode.Usagef("refusing to apply %d change(s) without confirmation: no terminal to ask on; re-run with --yes (or --dry-run=server to only see the diff)", changed)
	}
	question := "Apply 1 change?"
	if changed != 1 {
		question = fmt.Sprintf("Apply %d changes?", changed)
	}
	ok, err := r.C.Prompter.Confirm(question, false)
	if errors.Is(err, prompt.ErrInterrupted) {
		return exitcode.New(exitcode.Interrupted, errors.New("interrupted: nothing was changed"))
	}
	if err != nil {
		return err
	}
	if !ok {
		return exitcode.New(exitcode.Failure, errors.New("not confirmed: nothing was changed"))
	}
	return nil
}

func (r *Runner) result(ctx context.Context, plan *Plan) {
	if plan.Result == nil {
		return
	}
	rd, err := r.C.Reads()
	if err != nil {
		fmt.Fprintf(r.C.Streams.ErrOut, "warning: cannot show the result: %v\n", err)
		return
	}
	plan.Result(ctx, rd, r.C.Streams.Out)
}

// apply records the change set, then writes phase by phase.
func (r *Runner) apply(ctx context.Context, srv *server, plan *Plan, diffs []*ObjectDiff) error {
	kube, err := r.C.Kube()
	if err != nil {
		return err
	}
	store := &journal.Store{Kube: kube, Namespace: r.C.Engine.JournalNamespace}
	cs := &journal.ChangeSet{
		ID:       journal.NewID(r.C.Now()),
		Title:    plan.Title,
		Command:  strings.Join(append([]string{"kubectl mesh"}, argsAfterBinary(r.C.Args)...), " "),
		User:     whoami(ctx, r.C),
		Created:  r.C.Now().UTC(),
		Status:   journal.StatusApplying,
		Accepted: r.C.Engine.Accept,
		Notes:    plan.Notes,
		UndoOf:   plan.UndoOf,
	}
	var todo []*ObjectDiff
	for _, d := range diffs {
		if !d.Changed() {
			continue
		}
		todo = append(todo, d)
		o := d.Change.Object
		cs.Entries = append(cs.Entries, journal.Entry{
			APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName(),
			Op: string(d.Change.Op), Existed: d.Before != nil, Prior: d.Before,
		})
	}
	// The record exists before the first write: whatever happens next, undo
	// knows the prior state.
	if err := store.Save(ctx, cs); err != nil {
		return err
	}
	fmt.Fprintf(r.C.Streams.ErrOut, "Recorded change set %s.\n", cs.ID)
	r.C.ChangeSets = append(r.C.ChangeSets, cs.ID)
	sync := r.startProxySync(ctx, todo)

	finish := func(status string, cause error) error {
		cs.Status = status
		if cause != nil {
			cs.Error = cause.Error()
		}
		// Record the outcome even when ctx was cancelled (Ctrl-C).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := store.Save(sctx, cs); err != nil {
			fmt.Fprintf(r.C.Streams.ErrOut, "warning: could not update change set %s (%v); it stays marked %q\n", cs.ID, err, journal.StatusApplying)
		}
		return cause
	}

	// CRDs must be established (and discovery refreshed) before anything
	// that uses them: wait as soon as a non-CRD change follows new CRDs.
	var newCRDs []Change
	settle := func() error {
		if len(newCRDs) == 0 {
			return nil
		}
		err := r.waitEstablished(ctx, srv, newCRDs)
		newCRDs = nil
		return err
	}
	for i, d := range todo {
		if !isCRD(d.Change.Object) {
			if err := settle(); err != nil {
				return finish(journal.StatusFailed, err)
			}
		}
		if ctx.Err() != nil {
			return finish(journal.StatusInterrupted, exitcode.New(exitcode.Interrupted, fmt.Errorf(
				"interrupted after %d of %d change(s); change set %s is recorded: run kubectl mesh undo %s to roll back, or re-run the command to finish", i, len(todo), cs.ID, cs.ID)))
		}
		// Ctrl-C stops between two writes, never inside one: a cancelled
		// request may still have been applied, and the journal would not
		// know whether to undo it.
		wctx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		cur, err := srv.get(wctx, d.Change.Object)
		if err == nil {
			err = unchangedSinceDiff(d, cur)
		}
		if err == nil {
			_, err = srv.do(wctx, d.Change, cur, false)
		}
		cancelWrite()
		if err != nil {
			status := journal.StatusFailed
			if ctx.Err() != nil {
				status = journal.StatusInterrupted
			}
			var ce *concurrentEdit
			if !errors.As(err, &ce) {
				err = explain(d.Change, err)
			}
			return finish(status, fmt.Errorf("apply failed after %d of %d change(s): %w; change set %s is recorded: run kubectl mesh undo %s to roll back",
				i, len(todo), err, cs.ID, cs.ID))
		}
		cs.Entries[i].Applied = true
		fmt.Fprintf(r.C.Streams.ErrOut, "%s %s\n", d.Ref, pastTense(d.Action()))
		if isCRD(d.Change.Object) && d.Change.Op != Delete {
			newCRDs = append(newCRDs, d.Change)
		}
		lastOfPhase := i+1 == len(todo) || todo[i+1].phase != d.phase
		if steps := plan.Phases[d.phase].Verify; lastOfPhase && len(steps) > 0 {
			if err := r.runVerify(ctx, steps, cs.ID); err != nil {
				if ctx.Err() != nil {
					return finish(journal.StatusInterrupted, exitcode.New(exitcode.Interrupted, fmt.Errorf(
						"interrupted while verifying after %d of %d change(s); change set %s is recorded: run kubectl mesh undo %s to roll back, or re-run the command to finish", i+1, len(todo), cs.ID, cs.ID)))
				}
				return finish(journal.StatusFailed, fmt.Errorf("stopped after %d of %d change(s): %w", i+1, len(todo), err))
			}
		}
	}
	if err := settle(); err != nil {
		return finish(journal.StatusFailed, err)
	}
	if err := finish(journal.StatusApplied, nil); err != nil {
		return err
	}
	if plan.UndoOf != "" {
		// The undo is applied; failing to mark the original only leaves
		// history showing it as not undone, so say so and go on.
		orig, err := store.Get(ctx, plan.UndoOf)
		if err == nil {
			orig.UndoneBy = cs.ID
			err = store.Save(ctx, orig)
		}
		if err != nil {
			fmt.Fprintf(r.C.Streams.ErrOut, "warning: change set %s is not marked as undone by %s (%v); history will list it as not undone\n", plan.UndoOf, cs.ID, err)
		}
	}
	fmt.Fprintf(r.C.Streams.ErrOut, "Applied change set %s (%d change(s)); undo with: kubectl mesh undo %s\n", cs.ID, len(todo), cs.ID)
	if err := r.runVerify(ctx, plan.Verify, cs.ID); err != nil {
		if ctx.Err() != nil {
			return interruptedVerifying(cs.ID)
		}
		return err
	}
	if err := r.waitProxySync(ctx, sync); err != nil {
		return interruptedVerifying(cs.ID)
	}
	r.result(ctx, plan)
	return nil
}

func interruptedVerifying(id string) error {
	return exitcode.New(exitcode.Interrupted, fmt.Errorf("interrupted while verifying; the change is applied (change set %s): check it with kubectl mesh history %s, or roll back with kubectl mesh undo %s", id, id, id))
}

func pastTense(action string) string {
	switch action {
	case "create":
		return "created"
	case "delete":
		return "deleted"
	}
	return "configured"
}

// waitEstablished waits for new CRDs to be served, then refreshes
// discovery so later phases can use the new kinds.
func (r *Runner) waitEstablished(ctx context.Context, srv *server, crds []Change) error {
	for _, c := range crds {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			live, err := srv.get(ctx, c.Object)
			if err != nil || live == nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(live.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s did not become established: %w", c.Object.GetName(), err)
		}
	}
	srv.mapper.Reset()
	if d, err := r.C.Discovery(); err == nil {
		d.Invalidate()
	}
	return nil
}

// unchangedSinceDiff detects an edit made by someone else between the diff
// the user confirmed and the write: the desired state (everything but status
// and server bookkeeping) must be what the diff was computed from. Status
// churn (a PDB's or Deployment's counters) is not an edit.
func unchangedSinceDiff(d *ObjectDiff, cur *unstructured.Unstructured) error {
	if d.Pending != "" {
		return nil
	}
	before, now := comparable(d.Before), comparable(cur)
	for _, u := range []*unstructured.Unstructured{before, now} {
		if u != nil {
			delete(u.Object, "status")
		}
	}
	if toYAML(before) == toYAML(now) {
		return nil
	}
	what := "was changed"
	switch {
	case d.Before == nil:
		what = "was created"
	case cur == nil:
		what = "was deleted"
	}
	return &concurrentEdit{ref: d.Ref, what: what}
}

type concurrentEdit struct{ ref, what string }

func (e *concurrentEdit) Error() string {
	return fmt.Sprintf("%s %s by someone else after the diff was shown; nothing was overwritten: re-run to plan against the current state", e.ref, e.what)
}

// runVerify runs verify steps with progress on stderr.
func (r *Runner) runVerify(ctx context.Context, steps []VerifyStep, id string) error {
	for _, v := range steps {
		timeout := v.Timeout
		if timeout <= 0 {
			timeout = 5 * time.Minute
		}
		vctx, cancel := context.WithTimeout(ctx, timeout)
		fmt.Fprintf(r.C.Streams.ErrOut, "Verifying: %s…\n", v.Name)
		err := v.Run(vctx, func(format string, a ...any) {
			fmt.Fprintf(r.C.Streams.ErrOut, "  "+format+"\n", a...)
		})
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("timed out after %s", timeout)
			}
			return fmt.Errorf("verify %q failed: %w; the change is applied (change set %s): inspect it, or roll back with kubectl mesh undo %s", v.Name, err, id, id)
		}
	}
	return nil
}

// whoami names the user for the journal; failures are not fatal.
func whoami(ctx context.Context, c *cli.Context) string {
	kube, err := c.Kube()
	if err != nil {
		return ""
	}
	res, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return ""
	}
	return res.Status.UserInfo.Username
}

func argsAfterBinary(args []string) []string {
	if len(args) <= 1 {
		return nil
	}
	return args[1:]
}
