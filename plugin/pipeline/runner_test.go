package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"istio.io/istio/pkg/config/analysis/diag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli/clitest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/journal"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// fakeCluster is the client seam's test side: a typed fake for the
// journal, and a dynamic fake whose writes honour dryRun=All the way the
// API server does (the result is returned, nothing is stored), which
// client-go's fakes do not. An apply overlays the applied fields on the
// live object; that is all server-side apply means for these tests.
type fakeCluster struct {
	kube *kubefake.Clientset
	dyn  *dynamicfake.FakeDynamicClient

	mu sync.Mutex
	// events are the real writes, verify steps and notes in order.
	events []string
	// onWrite runs before the n-th real write (0-based).
	onWrite func(n int)
	// onGet runs before every GET of the named object.
	onGet  func(name string)
	writes int
}

var (
	cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	nsGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

func newFakeCluster(t *testing.T, objs ...*unstructured.Unstructured) *fakeCluster {
	t.Helper()
	f := &fakeCluster{kube: kubefake.NewClientset()}
	var ros []runtime.Object
	for _, o := range objs {
		ros = append(ros, o)
	}
	f.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{cmGVR: "ConfigMapList", nsGVR: "NamespaceList"}, ros...)
	tracker := f.dyn.Tracker()
	f.dyn.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if f.onGet != nil {
			f.onGet(a.(k8stesting.GetAction).GetName())
		}
		return false, nil, nil
	})
	f.dyn.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchActionImpl)
		applied := &unstructured.Unstructured{}
		if err := json.Unmarshal(p.Patch, &applied.Object); err != nil {
			return true, nil, err
		}
		result := applied
		cur, err := tracker.Get(p.Resource, p.Namespace, p.Name)
		switch {
		case err == nil:
			result = cur.(*unstructured.Unstructured).DeepCopy()
			overlay(result.Object, applied.Object)
		case !apierrors.IsNotFound(err):
			return true, nil, err
		}
		if len(p.PatchOptions.DryRun) > 0 {
			return true, result, nil
		}
		f.write("apply", applied)
		if cur == nil {
			return true, result, tracker.Create(p.Resource, result, p.Namespace)
		}
		return true, result, tracker.Update(p.Resource, result, p.Namespace)
	})
	f.dyn.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.UpdateActionImpl)
		obj := u.Object.(*unstructured.Unstructured).DeepCopy()
		cur, err := tracker.Get(u.Resource, u.Namespace, obj.GetName())
		if err != nil {
			return true, nil, err
		}
		if rv := cur.(*unstructured.Unstructured).GetResourceVersion(); rv != obj.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(u.Resource.GroupResource(), obj.GetName(), fmt.Errorf("resourceVersion %s is not %s", obj.GetResourceVersion(), rv))
		}
		if len(u.UpdateOptions.DryRun) > 0 {
			return true, obj, nil
		}
		f.write("update", obj)
		obj.SetResourceVersion(obj.GetResourceVersion() + "1")
		return true, obj, tracker.Update(u.Resource, obj, u.Namespace)
	})
	f.dyn.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		if len(d.DeleteOptions.DryRun) > 0 {
			_, err := tracker.Get(d.Resource, d.Namespace, d.Name)
			return true, nil, err
		}
		f.write("delete", &unstructured.Unstructured{Object: map[string]any{"kind": d.Resource.Resource, "metadata": map[string]any{"name": d.Name, "namespace": d.Namespace}}})
		return true, nil, tracker.Delete(d.Resource, d.Namespace, d.Name)
	})
	return f
}

func overlay(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				overlay(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func (f *fakeCluster) write(op string, o *unstructured.Unstructured) {
	f.mu.Lock()
	n := f.writes
	f.writes++
	f.mu.Unlock()
	if f.onWrite != nil {
		f.onWrite(n)
	}
	f.event(fmt.Sprintf("%s %s/%s", op, o.GetKind(), o.GetName()))
}

func (f *fakeCluster) event(e string) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

// changeSets is what the journal holds.
func (f *fakeCluster) changeSets(t *testing.T) []*journal.ChangeSet {
	t.Helper()
	sets, err := (&journal.Store{Kube: f.kube, Namespace: "kubectl-mesh"}).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

// runner returns a Runner on the fake cluster whose analysis finds after
// (on the cluster as planned) and nothing on the cluster as it is.
func runner(f *fakeCluster, after ...diag.Message) (*Runner, *bytes.Buffer) {
	var out bytes.Buffer
	c := cli.New(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
	c.Source = clitest.Source{Kube: f.kube, Dynamic: f.dyn, Kinds: map[schema.GroupVersionKind]bool{
		{Version: "v1", Kind: "ConfigMap"}: true, {Version: "v1", Kind: "Namespace"}: false,
	}}
	c.Args = []string{"kubectl-mesh", "test"}
	c.Engine.ProxySyncTimeout = 0
	return &Runner{C: c, Analyze: func(context.Context, *reads.Reader, ...analysis.Options) ([]diag.Messages, error) {
		return []diag.Messages{nil, after}, nil
	}}, &out
}

func configMap(name string, data map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "shop"},
		"data":     data,
	}}
}

func namespace(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
}

func applyPhase(name string, objs ...*unstructured.Unstructured) Phase {
	ph := Phase{Name: name}
	for _, o := range objs {
		ph.Changes = append(ph.Changes, Change{Op: Apply, Object: o})
	}
	return ph
}

func code(err error) int {
	c, _ := exitcode.Describe(err)
	return c
}

// TestRunnerOrder: phases in order, namespaces first within a phase, a
// phase's verify steps before the next phase, the plan's verify last.
func TestRunnerOrder(t *testing.T) {
	f := newFakeCluster(t)
	r, out := runner(f)
	r.C.Engine.Yes = true
	verify := func(name string) VerifyStep {
		return VerifyStep{Name: name, Timeout: time.Second, Run: func(context.Context, Progress) error { f.event("verify " + name); return nil }}
	}
	first := applyPhase("config", configMap("a", map[string]any{"k": "1"}), namespace("shop"))
	first.Verify = []VerifyStep{verify("config")}
	plan := &Plan{Title: "t", Phases: []Phase{first, applyPhase("more", configMap("b", nil))}, Verify: []VerifyStep{verify("plan")}}
	if err := r.Run(context.Background(), plan); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "apply Namespace/shop, apply ConfigMap/a, verify config, apply ConfigMap/b, verify plan"
	if got := strings.Join(f.events, ", "); got != want {
		t.Errorf("order:\n got %s\nwant %s", got, want)
	}
	sets := f.changeSets(t)
	if len(sets) != 1 || sets[0].Status != journal.StatusApplied || len(sets[0].Entries) != 3 || r.C.ChangeSets[0] != sets[0].ID {
		t.Errorf("journal: %+v, recorded IDs %v", sets, r.C.ChangeSets)
	}
}

// TestRunnerJournalBeforeFirstWrite: the change set, with the prior state
// of each object, exists before anything is written.
func TestRunnerJournalBeforeFirstWrite(t *testing.T) {
	f := newFakeCluster(t, configMap("a", map[string]any{"k": "old"}))
	r, out := runner(f)
	r.C.Engine.Yes = true
	var atFirstWrite []*journal.ChangeSet
	f.onWrite = func(n int) {
		if n == 0 {
			atFirstWrite = f.changeSets(t)
		}
	}
	if err := r.Run(context.Background(), &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", map[string]any{"k": "new"}))}}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(atFirstWrite) != 1 || atFirstWrite[0].Status != journal.StatusApplying {
		t.Fatalf("at the first write the journal held %+v, want one change set being applied", atFirstWrite)
	}
	e := atFirstWrite[0].Entries[0]
	if !e.Existed || e.Prior == nil || e.Prior.Object["data"].(map[string]any)["k"] != "old" {
		t.Errorf("prior state not recorded: %+v", e)
	}
}

func TestRunnerNoChanges(t *testing.T) {
	cm := configMap("a", map[string]any{"k": "1"})
	cm.SetLabels(map[string]string{journal.LabelManagedBy: journal.ManagedByValue})
	f := newFakeCluster(t, cm)
	r, out := runner(f)
	r.C.Engine.Yes = true
	if err := r.Run(context.Background(), &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", map[string]any{"k": "1"}))}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "No changes: the cluster already matches the plan.") || len(f.events) != 0 || len(f.changeSets(t)) != 0 {
		t.Errorf("a plan the cluster matches: events %v, change sets %d\n%s", f.events, len(f.changeSets(t)), out)
	}
}

// TestRunnerBlocking: a blocking check or an introduced analyzer error
// stops the plan before any write, unless accepted; an undo is never
// blocked by analysis.
func TestRunnerBlocking(t *testing.T) {
	plan := func() *Plan {
		return &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", nil))},
			Checks: []Check{{ID: "TEST-BLOCK", Severity: Error, Message: "would break"}}}
	}
	f := newFakeCluster(t)
	r, out := runner(f)
	r.C.Engine.Yes = true
	err := r.Run(context.Background(), plan())
	if code(err) != exitcode.Blocked || !strings.Contains(err.Error(), "TEST-BLOCK") || len(f.events) != 0 || len(f.changeSets(t)) != 0 {
		t.Fatalf("blocking check: %v (exit %d), events %v\n%s", err, code(err), f.events, out)
	}
	r.C.Engine.Accept = []string{"TEST-BLOCK"}
	if err := r.Run(context.Background(), plan()); err != nil {
		t.Fatalf("accepted check: %v\n%s", err, out)
	}
	if sets := f.changeSets(t); len(sets) != 1 || strings.Join(sets[0].Accepted, ",") != "TEST-BLOCK" {
		t.Errorf("the acceptance is not recorded: %+v", sets)
	}

	finding := diag.NewMessage(diag.NewMessageType(diag.Error, "IST0101", "Referenced %s not found"), nil, "host")
	f = newFakeCluster(t)
	r, out = runner(f, finding)
	r.C.Engine.Yes = true
	p := &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", nil))}}
	if err := r.Run(context.Background(), p); code(err) != exitcode.Blocked || !strings.Contains(err.Error(), "IST0101") {
		t.Fatalf("introduced analyzer error: %v\n%s", err, out)
	}
	p.UndoOf = "cs-20261202-000000-abcdef"
	if err := r.Run(context.Background(), p); err != nil {
		t.Fatalf("an undo was blocked: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "Error [IST0101]") || len(f.events) != 1 {
		t.Errorf("the undo's finding is reported and the undo applied: events %v\n%s", f.events, out)
	}
}

// TestRunnerRefusesConcurrentEdit: an object edited between the diff and
// the write is reported, never overwritten.
func TestRunnerRefusesConcurrentEdit(t *testing.T) {
	f := newFakeCluster(t, configMap("a", map[string]any{"k": "old"}))
	r, out := runner(f)
	r.C.Engine.Yes = true
	gets := 0
	f.onGet = func(name string) {
		if gets++; gets == 2 { // the re-read before the write: someone edited it since the diff
			_ = f.dyn.Tracker().Update(cmGVR, configMap("a", map[string]any{"k": "theirs"}), "shop")
		}
	}
	err := r.Run(context.Background(), &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", map[string]any{"k": "new"}))}})
	if err == nil || !strings.Contains(err.Error(), "changed by someone else after the diff") {
		t.Fatalf("concurrent edit: %v\n%s", err, out)
	}
	if len(f.events) != 0 {
		t.Errorf("the edited object was overwritten: %v", f.events)
	}
	live, _ := f.dyn.Tracker().Get(cmGVR, "shop", "a")
	if live.(*unstructured.Unstructured).Object["data"].(map[string]any)["k"] != "theirs" {
		t.Errorf("their edit is gone: %v", live)
	}
	if sets := f.changeSets(t); len(sets) != 1 || sets[0].Status != journal.StatusFailed {
		t.Errorf("journal after a refused write: %+v", sets)
	}
}

// TestRunnerCtrlCBetweenWrites: an interrupt stops before the next write,
// never inside one, and the change set says what was applied.
func TestRunnerCtrlCBetweenWrites(t *testing.T) {
	f := newFakeCluster(t)
	r, out := runner(f)
	r.C.Engine.Yes = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.onWrite = func(n int) {
		if n == 0 {
			cancel() // Ctrl-C while the first write is in flight
		}
	}
	err := r.Run(ctx, &Plan{Title: "t", Phases: []Phase{applyPhase("p", configMap("a", nil), configMap("b", nil))}})
	if code(err) != exitcode.Interrupted || !strings.Contains(err.Error(), "interrupted after 1 of 2 change(s)") {
		t.Fatalf("Ctrl-C: %v (exit %d)\n%s", err, code(err), out)
	}
	if strings.Join(f.events, ", ") != "apply ConfigMap/a" {
		t.Errorf("writes after Ctrl-C: %v", f.events)
	}
	sets := f.changeSets(t)
	if len(sets) != 1 || sets[0].Status != journal.StatusInterrupted || !sets[0].Entries[0].Applied || sets[0].Entries[1].Applied {
		t.Errorf("journal after Ctrl-C: %+v", sets)
	}
}

// TestWait: the engine's pause between a Sequence's plans is skipped at
// zero, says what it waits for, and a Ctrl-C ends it with the command
// that continues.
func TestWait(t *testing.T) {
	var out bytes.Buffer
	if err := Wait(context.Background(), &out, Pause{}); err != nil || out.Len() != 0 {
		t.Fatalf("zero pause: %v %q", err, out.String())
	}
	if err := Wait(context.Background(), &out, Pause{For: time.Millisecond, Before: "the next gate"}); err != nil || out.String() != "Waiting 1ms before the next gate…\n" {
		t.Fatalf("short pause: %v %q", err, out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := Wait(ctx, &out, Pause{For: time.Hour, Before: "the next gate", Resume: "kubectl mesh canary step -n shop reviews"})
	if code(err) != exitcode.Interrupted || !strings.Contains(err.Error(), "continue with kubectl mesh canary step -n shop reviews") || time.Since(start) > time.Second {
		t.Fatalf("interrupted pause: %v (exit %d) after %s", err, code(err), time.Since(start))
	}
}

// TestRunnerStartsFromThePlannersRead: a change that carries the object
// as the planner read it is not read again for the diff (one GET, the
// re-read before the write); when that copy is stale, nothing is written.
func TestRunnerStartsFromThePlannersRead(t *testing.T) {
	live := configMap("a", map[string]any{"k": "old"})
	live.SetResourceVersion("5")
	edited := live.DeepCopy()
	edited.Object["data"] = map[string]any{"k": "new"}
	replace := func() *Plan {
		return &Plan{Title: "t", Phases: []Phase{{Name: "p", Changes: []Change{{Op: Replace, Object: edited.DeepCopy(), Known: true, Live: live.DeepCopy()}}}}}
	}

	f := newFakeCluster(t, live.DeepCopy())
	gets := 0
	f.onGet = func(string) { gets++ }
	r, out := runner(f)
	r.C.Engine.Yes = true
	if err := r.Run(context.Background(), replace()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if gets != 1 || strings.Join(f.events, ", ") != "update ConfigMap/a" {
		t.Errorf("GETs %d (want 1: the re-read before the write), events %v", gets, f.events)
	}

	theirs := configMap("a", map[string]any{"k": "theirs"})
	theirs.SetResourceVersion("6")
	f = newFakeCluster(t, theirs)
	r, out = runner(f)
	r.C.Engine.Yes = true
	err := r.Run(context.Background(), replace())
	if err == nil || !strings.Contains(err.Error(), "changed after the diff was shown") || len(f.events) != 0 {
		t.Fatalf("stale planner's copy: %v, events %v\n%s", err, f.events, out)
	}
}
