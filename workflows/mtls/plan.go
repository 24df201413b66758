package mtls

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// migration is one planned move: the snapshot, the policies as they will
// be, and the namespaces the change reaches.
type migration struct {
	snap      *Snapshot
	namespace string // whose namespace-wide policy changes (the root namespace for --mesh-wide)
	mode      string
	targets   map[string]bool
	after     []mesh.PeerAuth
}

// Plan implements pipeline.Workflow.
func (o *Options) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	selectors := map[exception]map[string]string{}
	for _, e := range o.exceptions {
		sel, err := workloadSelector(ctx, cl.Dynamic, o.snap, e)
		if err != nil {
			return nil, exitcode.New(exitcode.Usage, err)
		}
		selectors[e] = sel
	}
	m, plan, err := o.build(selectors, c.Now())
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err)
	}
	if o.Stage == StageStrict {
		checks, err := o.telemetry(ctx, c, m)
		if err != nil {
			return nil, err
		}
		plan.Checks = append(plan.Checks, checks...)
	}
	plan.Verify = []pipeline.VerifyStep{m.verify(cl.Dynamic)}
	return plan, nil
}

var workloadKinds = map[string]schema.GroupVersionResource{
	"Deployment":  {Group: "apps", Version: "v1", Resource: "deployments"},
	"StatefulSet": {Group: "apps", Version: "v1", Resource: "statefulsets"},
	"DaemonSet":   {Group: "apps", Version: "v1", Resource: "daemonsets"},
	"ReplicaSet":  {Group: "apps", Version: "v1", Resource: "replicasets"},
}

// workloadSelector checks an exception against the running workload (it
// exists, has a sidecar, declares the port) and returns the labels a
// PeerAuthentication selector can use: the controller's matchLabels.
func workloadSelector(ctx context.Context, dyn dynamic.Interface, s *Snapshot, e exception) (map[string]string, error) {
	var found *mesh.Workload
	for i, w := range s.Workloads {
		if w.Namespace == e.Namespace && w.Name == e.Workload {
			found = &s.Workloads[i]
			break
		}
	}
	if found == nil {
		return nil, fmt.Errorf("--exception %s:%d: no running workload %q in namespace %s", e.Workload, e.Port, e.Workload, e.Namespace)
	}
	pod := found.Pods[0].Object
	ports := appPorts(pod)
	if !containsPort(ports, e.Port) {
		hint := fmt.Sprintf("it declares %s", joinPorts(ports))
		for _, svc := range s.Services {
			if svc.Namespace != e.Namespace || len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				if uint32(sp.Port) == e.Port {
					if t := resolveTargetPort(sp.TargetPort, sp.Port, pod); t != 0 && t != e.Port {
						hint = fmt.Sprintf("%d is Service %s's port; the container port is %d", e.Port, svc.Name, t)
					}
				}
			}
		}
		return nil, fmt.Errorf("--exception %s:%d: port %d is not a container port of %s (%s); PeerAuthentication port exceptions take container ports", e.Workload, e.Port, e.Port, found.Ref(), hint)
	}
	gvr, ok := workloadKinds[found.Kind]
	if !ok {
		return nil, fmt.Errorf("--exception %s:%d: %s has no controller with a label selector; add the exception to a Deployment, StatefulSet or DaemonSet", e.Workload, e.Port, found.Ref())
	}
	obj, err := dyn.Resource(gvr).Namespace(e.Namespace).Get(ctx, e.Workload, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("--exception %s:%d: reading %s: %w", e.Workload, e.Port, found.Ref(), err)
	}
	sel, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "selector", "matchLabels")
	if exprs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "selector", "matchExpressions"); len(exprs) > 0 || len(sel) == 0 {
		return nil, fmt.Errorf("--exception %s:%d: %s selects its pods with matchExpressions, which a PeerAuthentication selector cannot express; write the policy by hand", e.Workload, e.Port, found.Ref())
	}
	return sel, nil
}

func containsPort(ports []uint32, p uint32) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}

func joinPorts(ports []uint32) string {
	if len(ports) == 0 {
		return "no ports"
	}
	var s []string
	for _, p := range ports {
		s = append(s, strconv.Itoa(int(p)))
	}
	return "ports " + strings.Join(s, ",")
}

// targets are the namespaces the change reaches: the namespace, or for
// --mesh-wide every namespace in the mesh without a mode of its own.
func (o *Options) targets() map[string]bool {
	t := map[string]bool{}
	if !o.MeshWide {
		t[o.Namespace] = true
		return t
	}
	for ns := range o.snap.Namespaces {
		wide := mesh.NamespaceWide(o.snap.PAs, ns)
		if ns != o.root && inMesh(o.snap, ns) && (len(wide) == 0 || wide[0].Mode == mesh.ModeUnset) {
			t[ns] = true
		}
	}
	return t
}

// build is the pure part of Plan: the policies, the checks (without
// telemetry), the report.
func (o *Options) build(selectors map[exception]map[string]string, now time.Time) (*migration, *pipeline.Plan, error) {
	m := &migration{snap: o.snap, namespace: o.Namespace, mode: mesh.ModeStrict, targets: o.targets()}
	if o.Stage == StagePermissive {
		m.mode = mesh.ModePermissive
	}

	nsChange, nsPolicy := m.namespacePolicy(now)
	exChanges, exPolicies, err := m.exceptionPolicies(o.exceptions, selectors, now)
	if err != nil {
		return nil, nil, err
	}
	m.after = replacePolicies(o.snap.PAs, append(exPolicies, nsPolicy))

	plan := &pipeline.Plan{Title: fmt.Sprintf("%s for %s", m.mode, o.scopeName())}
	if len(exChanges) > 0 {
		// Make before break: the exceptions exist before STRICT does.
		plan.Phases = append(plan.Phases, pipeline.Phase{Name: "port exceptions", Changes: exChanges})
	}
	plan.Phases = append(plan.Phases, pipeline.Phase{Name: fmt.Sprintf("%s: %s", o.scopeName(), m.mode), Changes: []pipeline.Change{nsChange}})

	checks := m.checks()
	if o.Stage == StagePermissive {
		// PERMISSIVE breaks nothing: what STRICT will need is shown early,
		// without blocking. Conflicting policies still block any edit.
		for i := range checks {
			if checks[i].ID != CheckConflict {
				checks[i].Severity = pipeline.Info
				checks[i].Message = "before STRICT: " + checks[i].Message
			}
		}
		plan.Notes = append(plan.Notes, "stage 1 of 2: an explicit PERMISSIVE policy first, so the move to STRICT is one field and undo is exact (never DISABLE → STRICT in one step: istio/istio#48290)")
	} else {
		plan.Notes = append(plan.Notes, "stage 2 of 2: STRICT; sidecars refuse plaintext on every port not listed as an exception")
	}
	for _, p := range exPolicies {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%s keeps port(s) %s PERMISSIVE", p.Ref(), portList(p.Ports)))
	}
	plan.Checks = checks
	plan.Report = m.report
	plan.Result = func(_ context.Context, _ *reads.Reader, w io.Writer) {
		mode, source := mesh.ChainFor(m.snap.Root, m.after, m.namespace, nil).Mode(0)
		fmt.Fprintf(w, "%s is %s (%s).\n", o.scopeName(), mode, source)
		if m.mode == mesh.ModePermissive {
			args := "-n " + o.Namespace
			if o.MeshWide {
				args = "--mesh-wide"
			}
			fmt.Fprintf(w, "Next: once callers show mutual_tls in telemetry, run: kubectl mesh migrate-mtls %s --stage strict\n", args)
		}
	}
	return m, plan, nil
}

func portList(ports map[uint32]string) string {
	var ps []uint32
	for p := range ports {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return strings.TrimPrefix(joinPorts(ps), "ports ")
}

// namespacePolicy sets the mode on the namespace-wide policy Istio uses.
func (m *migration) namespacePolicy(now time.Time) (pipeline.Change, mesh.PeerAuth) {
	return mesh.NamespacePolicy(m.snap.PAs, m.namespace, m.mode, now)
}

func peerAuthentication(ns, name string) *unstructured.Unstructured {
	return manifest.New("security.istio.io/v1", "PeerAuthentication", ns, name)
}

// exceptionPolicies builds one workload policy per excepted workload:
// selector = the controller's matchLabels, portLevelMtls PERMISSIVE, and no
// mtls block so everything else inherits the namespace's mode. Istio
// applies only the oldest workload policy, so a workload that already has
// one cannot get a second.
func (m *migration) exceptionPolicies(exs []exception, selectors map[exception]map[string]string, now time.Time) ([]pipeline.Change, []mesh.PeerAuth, error) {
	byWorkload := map[string]*mesh.PeerAuth{}
	var order []string
	for _, e := range exs {
		if e.Namespace != m.namespace && !m.targets[e.Namespace] {
			return nil, nil, fmt.Errorf("--exception %s/%s:%d: namespace %s is not part of this migration", e.Namespace, e.Workload, e.Port, e.Namespace)
		}
		name := e.Workload + "-mtls-exception"
		key := e.Namespace + "/" + name
		if byWorkload[key] == nil {
			sel := selectors[e]
			for _, p := range m.snap.PAs {
				if p.Namespace == e.Namespace && p.Name != name && len(p.Selector) > 0 && p.Selects(sel) {
					return nil, nil, fmt.Errorf("--exception %s:%d: %s already selects %s and Istio applies only one workload policy: add portLevelMtls {%d: PERMISSIVE} to it instead", e.Workload, e.Port, p.Ref(), e.Workload, e.Port)
				}
			}
			byWorkload[key] = &mesh.PeerAuth{Namespace: e.Namespace, Name: name, Created: now, Selector: sel, Mode: mesh.ModeUnset, Ports: map[uint32]string{}}
			order = append(order, key)
		}
		byWorkload[key].Ports[e.Port] = mesh.ModePermissive
	}
	var changes []pipeline.Change
	var out []mesh.PeerAuth
	for _, key := range order {
		p := byWorkload[key]
		obj := peerAuthentication(p.Namespace, p.Name)
		sel := map[string]any{}
		for k, v := range p.Selector {
			sel[k] = v
		}
		ports := map[string]any{}
		for port := range p.Ports {
			ports[strconv.Itoa(int(port))] = map[string]any{"mode": mesh.ModePermissive}
		}
		obj.Object["spec"] = map[string]any{"selector": map[string]any{"matchLabels": sel}, "portLevelMtls": ports}
		p.Object = obj
		changes = append(changes, pipeline.Change{Op: pipeline.Apply, Object: obj})
		out = append(out, *p)
	}
	return changes, out, nil
}

// replacePolicies returns pas with planned policies swapped in by name.
func replacePolicies(pas, planned []mesh.PeerAuth) []mesh.PeerAuth {
	out := make([]mesh.PeerAuth, 0, len(pas)+len(planned))
	replaced := map[string]bool{}
	for _, p := range pas {
		for _, q := range planned {
			if q.Namespace == p.Namespace && q.Name == p.Name {
				q.Created = p.Created
				p = q
				replaced[q.Namespace+"/"+q.Name] = true
			}
		}
		out = append(out, p)
	}
	for _, q := range planned {
		if !replaced[q.Namespace+"/"+q.Name] {
			out = append(out, q)
		}
	}
	return out
}

// telemetry gates STRICT on the traffic Prometheus saw.
func (o *Options) telemetry(ctx context.Context, c *cli.Context, m *migration) ([]pipeline.Check, error) {
	if o.SkipTelemetry {
		return []pipeline.Check{{
			ID: CheckNoTelemetry, Severity: pipeline.Warning,
			Message: "--skip-telemetry: moving to STRICT without evidence about plaintext callers",
		}}, nil
	}
	prom, err := telemetry.ConnectWith(ctx, c, o.PrometheusURL, o.root)
	if err != nil {
		return nil, err
	}
	if prom == nil {
		return nil, exitcode.New(exitcode.Unavailable, fmt.Errorf("no Prometheus found in the cluster to look for plaintext callers: pass --prometheus-url URL, or --skip-telemetry to move to STRICT without traffic evidence"))
	}
	var namespaces []string
	for ns := range m.targets {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	if len(namespaces) == 0 {
		return nil, nil
	}
	flows, err := prom.Flows(ctx, namespaces, o.window, c.Now())
	if err != nil {
		return nil, err
	}
	return m.trafficChecks(flows, prom.Where, o.Window), nil
}

// report prints the effective mode of every workload and port, now and
// after the plan.
func (m *migration) report(w io.Writer) { m.modes(w, true) }

// modes prints the effective mode of every workload and port in scope, and
// with after also the mode once the plan is applied and what decides it.
func (m *migration) modes(w io.Writer, after bool) {
	ws := m.workloads()
	if len(ws) == 0 {
		fmt.Fprintln(w, "No running workloads in scope.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if after {
		fmt.Fprintln(tw, "WORKLOAD\tSIDECARS\tPORT\tNOW\tAFTER\tDECIDED BY (AFTER)")
	} else {
		fmt.Fprintln(tw, "WORKLOAD\tSIDECARS\tPORT\tMODE\tDECIDED BY")
	}
	for _, wl := range ws {
		pod := wl.Pods[0].Object
		now := mesh.ChainFor(m.snap.Root, m.snap.PAs, wl.Namespace, pod.Labels)
		then := mesh.ChainFor(m.snap.Root, m.after, wl.Namespace, pod.Labels)
		ports := appPorts(pod)
		if len(ports) == 0 {
			ports = []uint32{0}
		}
		for _, port := range ports {
			nowMode, nowSource := now.Mode(port)
			afterMode, source := then.Mode(port)
			if !after {
				source = nowSource
			}
			if source == "" {
				source = "Istio default"
			}
			if wl.Injected() == 0 {
				nowMode, afterMode, source = "plaintext", "plaintext", "no sidecar"
			}
			p := "*"
			if port != 0 {
				p = strconv.Itoa(int(port))
			}
			if after {
				fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\n", wref(wl), wl.Injected(), len(wl.Pods), p, nowMode, afterMode, source)
			} else {
				fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\n", wref(wl), wl.Injected(), len(wl.Pods), p, nowMode, source)
			}
		}
	}
	_ = tw.Flush()
}

func (m *migration) sortedTargets() []string {
	var out []string
	for ns := range m.targets {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// verify re-reads the policies and checks that every workload in scope now
// has the mode the plan computed (another policy created meanwhile would
// show up here).
func (m *migration) verify(dyn dynamic.Interface) pipeline.VerifyStep {
	return pipeline.VerifyStep{
		Name:    "effective mTLS modes",
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, progress pipeline.Progress) error {
			list, err := dyn.Resource(mesh.PeerAuthentications).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			var live []mesh.PeerAuth
			for i := range list.Items {
				p, err := mesh.ParsePeerAuth(&list.Items[i])
				if err != nil {
					return err
				}
				live = append(live, p)
			}
			for _, wl := range m.workloads() {
				pod := wl.Pods[0].Object
				for _, port := range append(appPorts(pod), 0) {
					got, by := mesh.ChainFor(m.snap.Root, live, wl.Namespace, pod.Labels).Mode(port)
					want, _ := mesh.ChainFor(m.snap.Root, m.after, wl.Namespace, pod.Labels).Mode(port)
					if got != want {
						return fmt.Errorf("%s port %d is %s (%s), not %s as planned: another PeerAuthentication changed meanwhile", wref(wl), port, got, by, want)
					}
				}
			}
			progress("every workload in scope has its planned mode")
			return nil
		},
	}
}

// Findings are the checks a move of ns to STRICT would face, reported
// without blocking (the permissive stage's view): for workflows that put a
// namespace with running workloads in PERMISSIVE first, such as onboard.
func Findings(ctx context.Context, c *cli.Context, ns string) ([]pipeline.Check, error) {
	o := New()
	o.Namespace, o.root, o.Stage = ns, c.Engine.IstioNamespace, StagePermissive
	if err := o.parse(); err != nil {
		return nil, err
	}
	snap, err := read(ctx, c, o.root, ns)
	if err != nil {
		return nil, err
	}
	o.snap = snap
	_, plan, err := o.build(nil, c.Now())
	if err != nil {
		return nil, err
	}
	return plan.Checks, nil
}
