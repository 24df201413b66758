package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/rollout"
)

// MinKubernetes is the oldest Kubernetes this product installs on; the
// embedded Istio 1.31 supports 1.31 to 1.36 and is tested back to 1.28.
const MinKubernetes = mesh.MinKubernetes

// Plan implements pipeline.Workflow. With --explain it is only the
// explanation, for the engine to print.
func (o *Options) Plan(ctx context.Context, c *cli.Context) (*pipeline.Plan, error) {
	if o.Explain {
		var b strings.Builder
		Explain(&b)
		return &pipeline.Plan{Output: b.String()}, nil
	}
	objs, err := o.Render()
	if err != nil {
		return nil, err
	}
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	plan := o.phases(objs)
	e := c.Engine
	export := e.Output != "" || e.OutputDir != ""
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	if err := o.precheck(ctx, cl.Kube, rd, plan); err != nil {
		// A render for GitOps needs no cluster (istioctl manifest generate
		// neither): without one, the prechecks are skipped, and said so.
		if code, _ := exitcode.Describe(err); !(export || e.DryRun == cli.DryRunClient) || code != exitcode.Unavailable {
			return nil, err
		}
		plan.Notes = append(plan.Notes, "no cluster reachable: rendered without the prechecks (Kubernetes version, installed revisions and in-place vs side-by-side upgrade, leftover CRDs, webhook conflicts); run the same command against the cluster to check them")
		leaveReplicasToHPA(objs, nil, true)
		return plan, o.addGatewayAPI(plan, nil)
	}
	if err := o.addGatewayAPI(plan, o.gatewayCRDs); err != nil {
		return nil, err
	}
	var live map[string]int64
	if !export {
		if live, err = liveReplicas(ctx, cl.Kube, o.istioNamespace); err != nil {
			return nil, err
		}
	}
	leaveReplicasToHPA(objs, live, export)
	if o.Wait {
		plan.Verify = verifySteps(cl.Kube, objs, o.Timeout)
	}
	return plan, nil
}

// Render produces every object of the install with Istio's renderer.
func (o *Options) Render() ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "kubectl-mesh-install-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var files []string
	sets := []string{}
	if o.Profile == ProfileProduction {
		p := filepath.Join(dir, "production.yaml")
		if err := os.WriteFile(p, productionOverlay, 0o600); err != nil {
			return nil, err
		}
		files = append(files, p)
	} else {
		sets = append(sets, "profile="+o.Profile)
	}
	ov, err := o.overlay()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "answers.yaml")
	if err := os.WriteFile(p, ov, 0o600); err != nil {
		return nil, err
	}
	files = append(files, p)
	for _, f := range o.Files {
		if _, err := os.Stat(f); err != nil {
			return nil, exitcode.Dataf("cannot read IstioOperator file %s: %v", f, err)
		}
	}
	files = append(files, o.Files...)
	sets = append(sets, o.Sets...)
	manifestSets, _, err := render.GenerateManifest(files, sets, false, nil, nil)
	if err != nil {
		return nil, exitcode.Dataf("the Istio configuration is invalid: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	var out []*unstructured.Unstructured
	for _, ms := range manifestSets {
		for _, m := range ms.Manifests {
			u := m.Unstructured.DeepCopy()
			if u.GetAnnotations() == nil {
				u.SetAnnotations(map[string]string{})
			}
			anns := u.GetAnnotations()
			anns["kubectl-mesh.io/component"] = string(ms.Component)
			u.SetAnnotations(anns)
			out = append(out, u)
		}
	}
	if o.Profile == ProfileProduction {
		out = append(out, priorityClass())
	}
	if err := checkImages(out); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return manifest.ObjectHash(out[i]) < manifest.ObjectHash(out[j]) })
	return out, nil
}

// checkImages refuses images without a concrete tag.
func checkImages(objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		for _, path := range [][]string{{"spec", "template", "spec", "containers"}, {"spec", "template", "spec", "initContainers"}} {
			cs, _, _ := unstructured.NestedSlice(u.Object, path...)
			for _, c := range cs {
				img, _ := c.(map[string]any)["image"].(string)
				if img == "auto" { // gateway injection template fills it in
					continue
				}
				name := img[strings.LastIndex(img, "/")+1:]
				if !strings.Contains(name, ":") && !strings.Contains(name, "@") || strings.HasSuffix(img, ":latest") || strings.HasSuffix(img, ":") {
					return exitcode.Dataf("%s/%s would run image %q, which does not pin a release: set --hub and --tag", u.GetKind(), u.GetName(), img)
				}
			}
		}
	}
	return nil
}

// phases orders the install: CRDs, then the namespace, then the control
// plane, then gateways.
func (o *Options) phases(objs []*unstructured.Unstructured) *pipeline.Plan {
	var crds, first, cp, gw []pipeline.Change
	for _, u := range objs {
		ch := pipeline.Change{Op: pipeline.Apply, Object: u}
		comp := component.Name(u.GetAnnotations()["kubectl-mesh.io/component"])
		switch {
		case u.GetKind() == "CustomResourceDefinition":
			crds = append(crds, ch)
		case u.GetKind() == "PriorityClass":
			first = append(first, ch) // before any pod asks for it
		case comp == component.IngressComponentName || comp == component.EgressComponentName:
			gw = append(gw, ch)
		default:
			cp = append(cp, ch)
		}
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(o.istioNamespace)
	title := fmt.Sprintf("install Istio %s (profile %s", o.Tag, o.Profile)
	if o.Revision != "" {
		title += ", revision " + o.Revision
	}
	title += ")"
	plan := &pipeline.Plan{Title: title}
	add := func(name string, chs []pipeline.Change) {
		if len(chs) > 0 {
			plan.Phases = append(plan.Phases, pipeline.Phase{Name: name, Changes: chs})
		}
	}
	add("Istio CRDs", crds)
	add("namespace", append([]pipeline.Change{{Op: pipeline.Apply, Object: ns}}, first...))
	add("control plane", cp)
	add("gateways", gw)
	if o.Profile == ProfileProduction {
		plan.Notes = append(plan.Notes, "production profile: Istio's default plus HA, drain-safe PDBs, resources and anti-affinity (kubectl mesh install --explain)")
	}
	return plan
}

// supported refuses Kubernetes versions older than MinKubernetes.
func (o *Options) supported(gitVersion string) error {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return fmt.Errorf("cannot read the Kubernetes version %q: %w", gitVersion, err)
	}
	if v.LessThan(version.MustParseGeneric(MinKubernetes)) {
		return exitcode.Blockedf("Kubernetes %s is too old: Istio %s needs %s or newer; upgrade the cluster first", gitVersion, o.Tag, MinKubernetes)
	}
	return nil
}

// precheck: Kubernetes version, and what is installed already.
func (o *Options) precheck(ctx context.Context, kube kubernetes.Interface, rd *reads.Reader, plan *pipeline.Plan) error {
	sv, err := kube.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	if err := o.supported(sv.GitVersion); err != nil {
		return err
	}
	planes, err := mesh.Revisions(ctx, rd)
	if err != nil && !apierrors.IsForbidden(err) {
		return err
	}
	want := o.Revision
	if want == "" {
		want = mesh.DefaultRevision
	}
	var others []string
	for _, cp := range planes {
		if cp.Revision == want {
			plan.Notes = append(plan.Notes, fmt.Sprintf("revision %s is installed already in %s: this is an in-place upgrade, see the diff", want, cp.Namespace))
		} else {
			others = append(others, cp.Revision)
		}
	}
	if len(others) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("installing side by side with revision(s) %s; move namespaces with kubectl mesh inject --revision", strings.Join(others, ", ")))
	}
	if len(others) > 0 && o.Revision == "" {
		plan.Checks = append(plan.Checks, pipeline.Check{
			ID: "INSTALL-DEFAULT-BESIDE-REVISIONS", Severity: pipeline.Warning,
			Message: "a revision-less install next to revisioned control planes makes both claim the default injection and validation webhooks",
			Hint:    "pass --revision, or accept with --accept INSTALL-DEFAULT-BESIDE-REVISIONS",
		})
	}
	if err := o.precheckLeftovers(ctx, rd, plan); err != nil {
		return err
	}
	exists, err := rd.Exists(ctx, reads.Request{Resource: mesh.Namespaces}, o.istioNamespace)
	if err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	if exists {
		// Never relabel an existing namespace; drop it from the plan.
		for i, ph := range plan.Phases {
			if ph.Name == "namespace" {
				plan.Phases = append(plan.Phases[:i], plan.Phases[i+1:]...)
				break
			}
		}
	}
	return nil
}

// verifySteps wait for every Deployment and DaemonSet of the install, then
// check that the webhooks exist.
func verifySteps(kube kubernetes.Interface, objs []*unstructured.Unstructured, timeout time.Duration) []pipeline.VerifyStep {
	var steps []pipeline.VerifyStep
	var hooks []string
	for _, u := range objs {
		kind, ns, name := u.GetKind(), u.GetNamespace(), u.GetName()
		switch kind {
		case "Deployment", "DaemonSet":
			steps = append(steps, rollout.Step(kube, kind, ns, name, timeout))
		case "MutatingWebhookConfiguration":
			hooks = append(hooks, name)
		}
	}
	if len(hooks) > 0 {
		steps = append(steps, pipeline.VerifyStep{
			Name: "injection webhooks registered", Timeout: timeout,
			Run: func(ctx context.Context, p pipeline.Progress) error {
				for _, h := range hooks {
					if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, h, metav1.GetOptions{}); err != nil {
						return fmt.Errorf("webhook %s: %w", h, err)
					}
					p("MutatingWebhookConfiguration/%s present", h)
				}
				return nil
			},
		})
	}
	return steps
}

// precheckLeftovers finds Istio CRDs this release does not ship (left by
// another version) and injection webhooks that would fight the planned one.
func (o *Options) precheckLeftovers(ctx context.Context, rd *reads.Reader, plan *pipeline.Plan) error {
	planned := map[string]bool{}
	for _, ph := range plan.Phases {
		for _, c := range ph.Changes {
			planned[c.Object.GetKind()+"/"+c.Object.GetName()] = true
		}
	}
	list, err := rd.Metadata(ctx, reads.Request{Resource: mesh.CRDs})
	if err != nil && !apierrors.IsForbidden(err) {
		return err
	}
	var leftovers []string
	o.gatewayCRDs = map[string]gatewayCRD{}
	for _, it := range list {
		if strings.HasSuffix(it.GetName(), ".istio.io") && !planned["CustomResourceDefinition/"+it.GetName()] {
			leftovers = append(leftovers, it.GetName())
		}
		if strings.HasSuffix(it.GetName(), ".gateway.networking.k8s.io") {
			o.gatewayCRDs[it.GetName()] = gatewayCRD{it.GetAnnotations()[mesh.AnnotationGatewayAPIVersion], it.GetAnnotations()[mesh.AnnotationGatewayAPIChannel]}
		}
	}
	if len(leftovers) > 0 {
		sort.Strings(leftovers)
		plan.Checks = append(plan.Checks, pipeline.Check{
			ID: "INSTALL-LEFTOVER-CRDS", Severity: pipeline.Warning,
			Message: fmt.Sprintf("Istio CRDs that Istio %s does not ship are installed (left by another version): %s", o.Tag, strings.Join(leftovers, ", ")),
			Hint:    "check no object of these kinds is still needed, then delete the CRDs with kubectl delete crd",
		})
	}
	// A revision-less install's injector and the "default" revision tag both
	// inject namespaces labelled istio-injection=enabled: pods would get two
	// sidecars or fail admission.
	if planned["MutatingWebhookConfiguration/istio-sidecar-injector"] {
		if tagged, err := rd.Exists(ctx, reads.Request{Resource: mesh.MutatingWebhooks}, "istio-revision-tag-default"); err == nil && tagged {
			plan.Checks = append(plan.Checks, pipeline.Check{
				ID: "INSTALL-WEBHOOK-CONFLICT", Severity: pipeline.Error,
				Message: "the default revision tag (MutatingWebhookConfiguration istio-revision-tag-default) already injects istio-injection=enabled namespaces; a revision-less install would inject them too",
				Hint:    "install with --revision and move the default tag to it (istioctl tag set default --revision R --overwrite)",
				URL:     "https://istio.io/latest/docs/setup/upgrade/canary/#stable-revision-labels",
			})
		} else if err != nil && !apierrors.IsForbidden(err) {
			return err
		}
	}
	return nil
}

// Prechecks runs the install's prechecks for a default production install
// without planning it (kubectl mesh check --pre): Kubernetes version,
// installed revisions, leftover CRDs, webhook conflicts.
func Prechecks(ctx context.Context, c *cli.Context) ([]pipeline.Check, []string, error) {
	o := New()
	o.istioNamespace = c.Engine.IstioNamespace
	objs, err := o.Render()
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.Clients()
	if err != nil {
		return nil, nil, err
	}
	plan := o.phases(objs)
	rd, err := c.Reads()
	if err != nil {
		return nil, nil, err
	}
	if err := o.precheck(ctx, cl.Kube, rd, plan); err != nil {
		code, msg := exitcode.Describe(err)
		if code != exitcode.Blocked {
			return nil, nil, err
		}
		plan.Checks = append(plan.Checks, pipeline.Check{ID: "INSTALL-KUBERNETES-VERSION", Severity: pipeline.Error, Message: msg})
	}
	return plan.Checks, plan.Notes, nil
}
