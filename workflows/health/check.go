package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"istio.io/istio/pkg/config/analysis/diag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

// Result states.
const (
	OK   = "ok"
	Warn = "warn"
	Fail = "fail"
)

// Result is one check's outcome.
type Result struct {
	Category string `json:"category"`
	Check    string `json:"check"`
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Hint     string `json:"hint,omitempty"`
	URL      string `json:"url,omitempty"`
}

// Report is check's output; -o json prints it as is.
type Report struct {
	Results []Result `json:"results"`
	Summary struct {
		OK   int `json:"ok"`
		Warn int `json:"warn"`
		Fail int `json:"fail"`
	} `json:"summary"`
}

func (r *Report) add(category, check, status, message, hint, url string) {
	r.Results = append(r.Results, Result{category, check, status, message, hint, url})
	switch status {
	case OK:
		r.Summary.OK++
	case Warn:
		r.Summary.Warn++
	default:
		r.Summary.Fail++
	}
}

// permissiveTooLong is when an explicit PERMISSIVE policy counts as a
// migration that stalled.
const permissiveTooLong = 30 * 24 * time.Hour

// Check is `kubectl mesh check`.
type Check struct {
	Pre    bool
	Output string
	Wait   time.Duration

	prechecks Prechecks
}

// NewCheck returns the check command's options.
func NewCheck(prechecks Prechecks) *Check { return &Check{prechecks: prechecks} }

// Prechecks are the install's prechecks (check --pre) and their notes. The
// install workflow provides them; the command tree passes them in.
type Prechecks func(ctx context.Context, c *cli.Context) ([]pipeline.Check, []string, error)

// Command implements pipeline.Workflow.
func (o *Check) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the mesh's health and posture (√ / ‼ / × with a hint for each)",
		Long: `Checks the Kubernetes API, Istio's CRDs, each revision's istiod and gateways
(availability, drain-blocking PodDisruptionBudgets), the injection and validation
webhooks (live Service, CA bundle), revision tags, namespaces' injection labels,
sidecar coverage and proxy version skew, each namespace's mTLS posture, and
common anti-patterns (sidecars without resource limits, allow-all
AuthorizationPolicies, workloads without probes, PERMISSIVE left on for long),
then runs Istio's analyzers. Exits 79 when a check fails (×); ‼ are warnings.

--pre runs only the install prechecks. -n limits the namespace checks.`,
		Example: `  kubectl mesh check
  kubectl mesh check --pre
  kubectl mesh check -n shop -o json
  kubectl mesh check --wait 5m`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.BoolVar(&o.Pre, "pre", false, "Run only the install prechecks")
	f.StringVarP(&o.Output, "output", "o", "table", "table or json")
	f.DurationVar(&o.Wait, "wait", 0, "Retry until no check fails or this long has passed")
	return cmd
}

// Complete implements pipeline.Workflow.
func (o *Check) Complete(context.Context, *cli.Context, []string) error { return nil }

// Validate implements pipeline.Workflow.
func (o *Check) Validate() error {
	if o.Output != "table" && o.Output != "json" {
		return fmt.Errorf("invalid -o/--output %q for check: use table or json", o.Output)
	}
	if o.Wait < 0 {
		return fmt.Errorf("invalid --wait %v: use a positive duration such as 5m", o.Wait)
	}
	return nil
}

// Plan runs the checks, prints the report and plans nothing.
func (o *Check) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	ns, explicit, err := c.Namespace()
	if err != nil {
		return nil, err
	}
	if !explicit {
		ns = ""
	}
	progress := progressLine(c)
	deadline := time.Now().Add(o.Wait)
	for {
		rep, err := o.run(ctx, c, ns, progress)
		if err != nil {
			progress("")
			return nil, err
		}
		if rep.Summary.Fail == 0 || time.Now().After(deadline) {
			progress("")
			if err := o.print(c.Streams.Out, rep); err != nil {
				return nil, err
			}
			if rep.Summary.Fail > 0 {
				return nil, exitcode.Silent{Code: exitcode.Blocked}
			}
			return nil, nil
		}
		progress(fmt.Sprintf("%d check(s) failing; retrying until %s…", rep.Summary.Fail, deadline.Format("15:04:05")))
		select {
		case <-ctx.Done():
			return nil, exitcode.New(exitcode.Interrupted, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// progressLine rewrites one line of stderr on a terminal; elsewhere it is silent.
func progressLine(c *cli.Context) step {
	if !cli.IsTerminal(c.Streams.ErrOut) {
		return func(string) {}
	}
	return func(what string) {
		fmt.Fprintf(c.Streams.ErrOut, "\r\x1b[K%s", what)
	}
}

func (o *Check) run(ctx context.Context, c *cli.Context, ns string, progress step) (*Report, error) {
	rep := &Report{}
	s, err := read(ctx, c, ns, progress)
	if err != nil {
		return nil, err
	}
	checkAPI(rep, s)
	if o.Pre {
		progress("running the install prechecks")
		checks, notes, err := o.prechecks(ctx, c)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			rep.add("pre-install", n, OK, "", "", "")
		}
		for _, ch := range checks {
			status := Warn
			if ch.Severity == pipeline.Error {
				status = Fail
			}
			rep.add("pre-install", ch.ID, status, ch.Message, ch.Hint, ch.URL)
		}
		if len(checks) == 0 {
			rep.add("pre-install", "the cluster is ready for kubectl mesh install", OK, "", "", "")
		}
		return rep, nil
	}
	checkCRDs(rep, s)
	checkGatewayAPI(rep, s)
	checkControlPlane(rep, s, c.Engine.IstioNamespace)
	checkWebhooks(rep, s)
	checkNamespaces(rep, s, ns)
	checkSidecars(rep, s, ns)
	checkPosture(rep, s, c.Engine.IstioNamespace, ns, c.Now())
	checkAntiPatterns(rep, s, ns)
	checkResilience(rep, s, ns)
	progress("running Istio's analyzers")
	if err := checkAnalysis(ctx, rep, c, ns); err != nil {
		return nil, err
	}
	return rep, nil
}

func (o *Check) print(w io.Writer, rep *Report) error {
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	last := ""
	for _, r := range rep.Results {
		if r.Category != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s\n%s\n", r.Category, strings.Repeat("-", len(r.Category)))
			last = r.Category
		}
		mark := map[string]string{OK: "√", Warn: "‼", Fail: "×"}[r.Status]
		fmt.Fprintf(w, "%s %s\n", mark, r.Check)
		if r.Message != "" {
			fmt.Fprintf(w, "    %s\n", r.Message)
		}
		if r.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
		if r.URL != "" {
			fmt.Fprintf(w, "    see: %s\n", r.URL)
		}
	}
	fmt.Fprintf(w, "\nStatus check results: %d √, %d ‼, %d ×\n", rep.Summary.OK, rep.Summary.Warn, rep.Summary.Fail)
	return nil
}

func checkAPI(rep *Report, s *cluster) {
	const cat = "kubernetes-api"
	rep.add(cat, "can reach the API server ("+s.Version+")", OK, "", "", "")
	v, err := version.ParseGeneric(s.Version)
	if err == nil && v.LessThan(version.MustParseGeneric(mesh.MinKubernetes)) {
		rep.add(cat, "Kubernetes is "+mesh.MinKubernetes+" or newer", Fail, "the cluster runs "+s.Version, "upgrade the cluster before installing or upgrading Istio", "https://istio.io/latest/docs/releases/supported-releases/")
		return
	}
	rep.add(cat, "Kubernetes is "+mesh.MinKubernetes+" or newer", OK, "", "", "")
}

// coreCRDs are the kinds every Istio install serves.
var coreCRDs = []string{
	"virtualservices.networking.istio.io", "destinationrules.networking.istio.io", "gateways.networking.istio.io",
	"peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io", "sidecars.networking.istio.io",
}

func checkCRDs(rep *Report, s *cluster) {
	var missing []string
	for _, c := range coreCRDs {
		if !slices.Contains(s.IstioCRDs, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		rep.add("istio-crds", "Istio CRDs are installed", Fail, "missing: "+strings.Join(missing, ", "), "install Istio: kubectl mesh install", "")
		return
	}
	rep.add("istio-crds", fmt.Sprintf("Istio CRDs are installed (%d)", len(s.IstioCRDs)), OK, "", "", "")
	// The CRD set can be compared with a control plane of the embedded
	// release only: another release ships other kinds.
	embedded := minor(mesh.IstioRelease)
	for _, cp := range s.Planes {
		if minor(imageTag(s.istiod(cp))) != embedded {
			continue
		}
		var older, extra []string
		for _, c := range s.ShippedCRDs {
			if !slices.Contains(s.IstioCRDs, c) {
				older = append(older, c)
			}
		}
		for _, c := range s.IstioCRDs {
			if !slices.Contains(s.ShippedCRDs, c) {
				extra = append(extra, c)
			}
		}
		name := fmt.Sprintf("CRDs match the control plane (Istio %s, revision %s)", embedded, cp.Revision)
		switch {
		case len(older) > 0:
			rep.add("istio-crds", name, Warn, "missing kinds the control plane serves: "+short(older)+" (CRDs older than istiod)",
				"upgrade the CRDs with the control plane: kubectl mesh install --revision "+cp.Revision, "https://istio.io/latest/docs/setup/upgrade/")
		case len(extra) > 0:
			rep.add("istio-crds", name, Warn, "kinds this release does not ship (left by another version): "+short(extra),
				"check nothing uses them, then delete the CRDs", "")
		default:
			rep.add("istio-crds", name, OK, "", "", "")
		}
		return
	}
}

// minor is "1.31" of "1.31.0" (or of "1.31-dev").
func minor(tag string) string {
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)
	if len(parts) < 2 {
		return tag
	}
	return parts[0] + "." + strings.SplitN(parts[1], "-", 2)[0]
}

// drainBlocking reports a PDB that lets no pod of d be evicted.
func drainBlocking(s *cluster, d appsv1.Deployment) string {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	for _, p := range s.PDBs {
		if p.Namespace != d.Namespace || p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		switch {
		case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() == 0 && p.Spec.MaxUnavailable.StrVal == "":
			return fmt.Sprintf("PodDisruptionBudget %s allows no unavailable pod", p.Name)
		case p.Spec.MinAvailable != nil && p.Spec.MinAvailable.StrVal == "" && p.Spec.MinAvailable.IntVal >= replicas:
			return fmt.Sprintf("PodDisruptionBudget %s needs %d available of %d replica(s)", p.Name, p.Spec.MinAvailable.IntVal, replicas)
		case p.Spec.MinAvailable != nil && p.Spec.MinAvailable.StrVal == "100%":
			return fmt.Sprintf("PodDisruptionBudget %s needs 100%% available", p.Name)
		}
	}
	return ""
}

func available(d appsv1.Deployment) (string, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	switch {
	case d.Status.AvailableReplicas == 0 && want > 0:
		return Fail, fmt.Sprintf("0/%d replicas available", want)
	case d.Status.AvailableReplicas < want:
		return Warn, fmt.Sprintf("%d/%d replicas available", d.Status.AvailableReplicas, want)
	}
	return OK, ""
}

func isGateway(d appsv1.Deployment) bool {
	l := d.Spec.Template.Labels
	return l["istio"] == "ingressgateway" || l["istio"] == "egressgateway" || l["gateway.istio.io/managed"] != ""
}

func checkControlPlane(rep *Report, s *cluster, istioNS string) {
	const cat = "control-plane"
	if len(s.Planes) == 0 {
		rep.add(cat, "an istiod is installed", Fail, "no Deployment labelled app=istiod", "install the control plane: kubectl mesh install", "")
		return
	}
	for _, d := range s.Deployments {
		if d.Labels["app"] != "istiod" && !isGateway(d) {
			continue
		}
		name := fmt.Sprintf("Deployment %s/%s is available", d.Namespace, d.Name)
		status, msg := available(d)
		rep.add(cat, name, status, msg, "kubectl describe deployment -n "+d.Namespace+" "+d.Name, "")
		if why := drainBlocking(s, d); why != "" {
			rep.add(cat, fmt.Sprintf("Deployment %s/%s can be drained", d.Namespace, d.Name), Warn, why+": node drains and cluster upgrades will hang",
				"scale to at least 2 replicas (kubectl mesh install's production profile runs 2–5) or relax the budget", "https://istio.io/latest/docs/ops/deployment/best-practices/")
		}
	}
	if len(s.Deployments) == 0 {
		rep.add(cat, "control-plane Deployments are readable", Warn, "no Deployments read in this scope (-n limits it)", "run without -n to check "+istioNS, "")
	}
}

func checkWebhooks(rep *Report, s *cluster) {
	const cat = "webhooks"
	type hook struct {
		kind, name, svcNS, svcName string
		ca                         []byte
	}
	var hooks []hook
	for _, m := range s.Mutating {
		if m.Labels[mesh.LabelRev] == "" && m.Labels[mesh.LabelTag] == "" && !strings.HasPrefix(m.Name, "istio-") {
			continue
		}
		for _, w := range m.Webhooks {
			if w.ClientConfig.Service != nil {
				hooks = append(hooks, hook{"MutatingWebhookConfiguration", m.Name, w.ClientConfig.Service.Namespace, w.ClientConfig.Service.Name, w.ClientConfig.CABundle})
			}
		}
	}
	for _, v := range s.Validating {
		if v.Labels[mesh.LabelRev] == "" && !strings.HasPrefix(v.Name, "istio") {
			continue
		}
		for _, w := range v.Webhooks {
			if w.ClientConfig.Service != nil {
				hooks = append(hooks, hook{"ValidatingWebhookConfiguration", v.Name, w.ClientConfig.Service.Namespace, w.ClientConfig.Service.Name, w.ClientConfig.CABundle})
			}
		}
	}
	seen := map[string]bool{}
	for _, h := range hooks {
		key := h.kind + "/" + h.name
		if seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case !s.Services[h.svcNS+"/"+h.svcName]:
			rep.add(cat, key+" points at a live Service", Fail, fmt.Sprintf("Service %s/%s does not exist: pod creation in labelled namespaces fails or skips injection", h.svcNS, h.svcName),
				"reinstall the revision, or delete the orphaned webhook", "https://istio.io/latest/docs/ops/common-problems/injection/")
		case len(h.ca) == 0:
			rep.add(cat, key+" has a CA bundle", Warn, "caBundle is empty: istiod patches it on start; if istiod is running this is stuck",
				"check istiod's logs for webhook patching errors", "")
		default:
			rep.add(cat, key+" points at a live Service with a CA bundle", OK, "", "", "")
		}
	}
	for _, m := range s.Mutating {
		tag, rev := m.Labels[mesh.LabelTag], m.Labels[mesh.LabelRev]
		if tag == "" {
			continue
		}
		if _, ok := mesh.Resolve(s.Planes, rev); !ok {
			rep.add("revision-tags", "tag "+tag+" points at an installed revision", Fail, "revision "+rev+" has no istiod", "move the tag: istioctl tag set "+tag+" --revision REV --overwrite", "https://istio.io/latest/docs/setup/upgrade/canary/#stable-revision-labels")
		} else {
			rep.add("revision-tags", "tag "+tag+" → revision "+rev, OK, "", "", "")
		}
	}
}

func checkNamespaces(rep *Report, s *cluster, only string) {
	const cat = "injection"
	names := mesh.Names(s.Planes)
	for _, ns := range s.Namespaces {
		if only != "" && ns.Name != only {
			continue
		}
		rev, inj := ns.Labels[mesh.LabelRev], ns.Labels[mesh.LabelInjection]
		switch {
		case rev != "" && inj != "":
			rep.add(cat, "namespace "+ns.Name+" has one injection label", Fail, fmt.Sprintf("both istio-injection=%s and istio.io/rev=%s (IST0123): which one wins depends on the webhooks", inj, rev),
				"kubectl mesh inject -n "+ns.Name+" --revision R keeps exactly one", "https://istio.io/latest/docs/reference/config/analysis/ist0123/")
		case rev != "" && !slices.Contains(names, rev):
			rep.add(cat, "namespace "+ns.Name+" selects an installed revision", Fail, "istio.io/rev="+rev+" matches no revision or tag: new pods get no sidecar",
				"kubectl mesh inject -n "+ns.Name+" --revision "+strings.Join(names, "|"), "")
		case rev != "" || inj == "enabled":
			rep.add(cat, "namespace "+ns.Name+" → "+injection(ns), OK, "", "", "")
		}
	}
}

func injectedNamespaces(s *cluster, only string) map[string]string {
	out := map[string]string{}
	for _, ns := range s.Namespaces {
		if r := injection(ns); r != "" && (only == "" || ns.Name == only) {
			out[ns.Name] = r
		}
	}
	return out
}

func checkSidecars(rep *Report, s *cluster, only string) {
	const cat = "sidecars"
	injected := injectedNamespaces(s, only)
	byNS := map[string][]mesh.Workload{}
	for _, w := range s.Workloads {
		byNS[w.Namespace] = append(byNS[w.Namespace], w)
	}
	for _, ns := range sortedKeys(injected) {
		ws := byNS[ns]
		want := injected[ns]
		if cp, ok := mesh.Resolve(s.Planes, want); ok {
			want = cp.Revision
		}
		var missing, skew, unlimited []string
		for _, w := range ws {
			for _, p := range w.Pods {
				switch {
				case !p.HasSidecar && !p.OptOut && !p.HostNetwork:
					missing = append(missing, w.Ref())
				case p.HasSidecar && p.Revision != want:
					skew = append(skew, fmt.Sprintf("%s (%s)", w.Ref(), p.Revision))
				}
				if p.HasSidecar && proxyUnlimited(p.Object) {
					unlimited = append(unlimited, w.Ref())
				}
			}
		}
		cov := mesh.Coverage(ws)
		if len(missing) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: every pod has a sidecar (%s)", ns, cov), Warn, "without a sidecar: "+short(missing),
				"kubectl mesh inject -n "+ns+" --restart", "")
		} else {
			rep.add(cat, fmt.Sprintf("namespace %s: every pod has a sidecar (%s)", ns, cov), OK, "", "", "")
		}
		if len(skew) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: proxies match revision %s", ns, want), Warn, "older proxies (IST0158): "+short(skew),
				"kubectl mesh inject -n "+ns+" --restart", "https://istio.io/latest/docs/reference/config/analysis/ist0158/")
		}
		if len(unlimited) > 0 {
			rep.add(cat, fmt.Sprintf("namespace %s: sidecars have resource limits", ns), Warn, "istio-proxy without limits: "+short(unlimited),
				"set sidecar.istio.io/proxyMemoryLimit and proxyCPULimit, or global.proxy.resources", "https://istio.io/latest/docs/reference/config/annotations/")
		}
	}
}

func proxyUnlimited(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == mesh.ProxyContainerName {
			return len(c.Resources.Limits) == 0
		}
	}
	return false
}

// short lists up to five names, de-duplicated.
func short(names []string) string {
	slices.Sort(names)
	return analysis.Abbreviate(slices.Compact(names), 5)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkPosture(rep *Report, s *cluster, root, only string, now time.Time) {
	const cat = "mtls"
	for _, ns := range sortedKeys(injectedNamespaces(s, only)) {
		mode, source := mesh.ChainFor(root, s.PAs, ns, nil).Mode(0)
		name := fmt.Sprintf("namespace %s is STRICT", ns)
		switch mode {
		case mesh.ModeStrict:
			rep.add(cat, name, OK, "", "", "")
		case mesh.ModePermissive:
			msg := "PERMISSIVE (Istio's default): plaintext is accepted"
			if source != "" {
				msg = "PERMISSIVE (" + source + "): plaintext is accepted"
				for _, p := range mesh.NamespaceWide(s.PAs, ns) {
					if age := now.Sub(p.Created); p.Mode == mesh.ModePermissive && age > permissiveTooLong {
						msg += fmt.Sprintf("; left PERMISSIVE for %d days", int(age.Hours()/24))
					}
					break
				}
			}
			rep.add(cat, name, Warn, msg, "kubectl mesh migrate-mtls -n "+ns, "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/")
		default:
			rep.add(cat, name, Warn, mode+" ("+source+")", "kubectl mesh migrate-mtls -n "+ns+" --stage permissive", "")
		}
	}
}

func checkAntiPatterns(rep *Report, s *cluster, only string) {
	const cat = "anti-patterns"
	var allowAll []string
	for _, ap := range s.AuthZ {
		if only != "" && ap.GetNamespace() != only {
			continue
		}
		action, _, _ := unstructured.NestedString(ap.Object, "spec", "action")
		rules, _, _ := unstructured.NestedSlice(ap.Object, "spec", "rules")
		if action != "" && action != "ALLOW" {
			continue
		}
		for _, r := range rules {
			if m, ok := r.(map[string]any); ok && len(m) == 0 {
				allowAll = append(allowAll, ap.GetNamespace()+"/"+ap.GetName())
				break
			}
		}
	}
	if len(allowAll) > 0 {
		rep.add(cat, "no allow-all AuthorizationPolicy", Warn, "rules: [{}] allows every request: "+short(allowAll),
			"allow named principals, namespaces or paths instead", "https://istio.io/latest/docs/ops/best-practices/security/#use-allow-with-positive-matching-and-deny-with-negative-match")
	} else {
		rep.add(cat, "no allow-all AuthorizationPolicy", OK, "", "", "")
	}
	injected := injectedNamespaces(s, only)
	var noProbes []string
	for _, d := range s.Deployments {
		if _, ok := injected[d.Namespace]; !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != mesh.ProxyContainerName && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
				noProbes = append(noProbes, d.Namespace+"/"+d.Name)
				break
			}
		}
	}
	if len(noProbes) > 0 {
		rep.add(cat, "mesh workloads have readiness and liveness probes", Warn, "missing on: "+short(noProbes),
			"without probes traffic reaches pods before they (and their sidecar) are ready", "https://istio.io/latest/docs/ops/configuration/mesh/app-health-check/")
	} else if len(injected) > 0 {
		rep.add(cat, "mesh workloads have readiness and liveness probes", OK, "", "", "")
	}
}

func checkAnalysis(ctx context.Context, rep *Report, c *cli.Context, ns string) error {
	const cat = "istio-analysis"
	kube, err := c.Kube()
	if err != nil {
		return err
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	res, err := analysis.RunChecked(ctx, kube, analysis.Options{Namespace: ns, IstioNamespace: c.Engine.IstioNamespace, Live: cfg})
	var denied *analysis.DeniedError
	if errors.As(err, &denied) {
		rep.add(cat, "Istio's analyzers ran", Warn, "skipped: you "+denied.Error(), "run with a user that can read the mesh's configuration (kubectl mesh rbac check)", "")
		return nil
	} else if err != nil {
		return err
	}
	msgs := res[0]
	var errs, warns []string
	for _, m := range msgs {
		line := m.Type.Code() + " " + m.Resource.Origin.FriendlyName()
		switch m.Type.Level() {
		case diag.Error:
			errs = append(errs, line)
		case diag.Warning:
			warns = append(warns, line)
		}
	}
	switch {
	case len(errs) > 0:
		rep.add(cat, "no Istio analyzer errors", Fail, fmt.Sprintf("%d error(s): %s", len(errs), short(errs)), "kubectl mesh analyze -A for details", "")
	default:
		rep.add(cat, "no Istio analyzer errors", OK, "", "", "")
	}
	if len(warns) > 0 {
		rep.add(cat, "no Istio analyzer warnings", Warn, fmt.Sprintf("%d warning(s): %s", len(warns), short(warns)), "kubectl mesh analyze -A for details", "")
	}
	return nil
}

// checkResilience reports the resilience lint: retry budgets, retried
// writes, outlier detection that can empty a pool.
func checkResilience(rep *Report, s *cluster, only string) {
	const cat = "resilience"
	in := resilience.Input{MeshRetryOn: s.MeshRetryOn, Endpoints: map[string]int{}}
	for _, vs := range s.VSs {
		if only == "" || vs.GetNamespace() == only {
			in.VirtualServices = append(in.VirtualServices, vs)
		}
	}
	for _, dr := range s.DRs {
		if only == "" || dr.GetNamespace() == only {
			in.DestinationRules = append(in.DestinationRules, dr)
		}
	}
	if len(in.VirtualServices)+len(in.DestinationRules) == 0 {
		return
	}
	bad := 0
	for _, f := range resilience.Lint(in) {
		status := Warn
		switch f.Level {
		case "Error":
			status = Fail
		case "Info":
			continue // advice, not a health problem: kubectl mesh analyze lists it
		}
		bad++
		rep.add(cat, f.Code+" "+f.Ref(), status, f.Message, "kubectl mesh resilience -n "+f.Namespace+" SERVICE proposes settings from observed latency", f.URL())
	}
	if bad == 0 {
		rep.add(cat, "timeouts, retries and outlier detection", OK, "", "", "")
	}
}
