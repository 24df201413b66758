package health

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

func checkAPI(rep *Report, s *cluster) {
	const cat = "kubernetes-api"
	rep.pass(cat, "CHECK-API-REACHABLE", "can reach the API server ("+s.Version+")")
	v, err := version.ParseGeneric(s.Version)
	if err == nil && v.LessThan(version.MustParseGeneric(mesh.MinKubernetes)) {
		rep.add(cat, "Kubernetes is "+mesh.MinKubernetes+" or newer", pipeline.Check{ID: "CHECK-KUBERNETES-VERSION", Severity: pipeline.Error,
			Message: "the cluster runs " + s.Version, Hint: "upgrade the cluster before installing or upgrading Istio", URL: "https://istio.io/latest/docs/releases/supported-releases/"})
		return
	}
	rep.pass(cat, "CHECK-KUBERNETES-VERSION", "Kubernetes is "+mesh.MinKubernetes+" or newer")
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
		rep.add("istio-crds", "Istio CRDs are installed", pipeline.Check{ID: "CHECK-CRDS-INSTALLED", Severity: pipeline.Error,
			Message: "missing: " + strings.Join(missing, ", "), Hint: "install Istio: kubectl mesh install"})
		return
	}
	rep.pass("istio-crds", "CHECK-CRDS-INSTALLED", fmt.Sprintf("Istio CRDs are installed (%d)", len(s.IstioCRDs)))
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
			rep.add("istio-crds", name, pipeline.Check{ID: "CHECK-CRDS-MATCH", Severity: pipeline.Warning,
				Message: "missing kinds the control plane serves: " + short(older) + " (CRDs older than istiod)",
				Hint:    "upgrade the CRDs with the control plane: kubectl mesh install --revision " + cp.Revision, URL: "https://istio.io/latest/docs/setup/upgrade/"})
		case len(extra) > 0:
			rep.add("istio-crds", name, pipeline.Check{ID: "CHECK-CRDS-MATCH", Severity: pipeline.Warning,
				Message: "kinds this release does not ship (left by another version): " + short(extra), Hint: "check nothing uses them, then delete the CRDs"})
		default:
			rep.pass("istio-crds", "CHECK-CRDS-MATCH", name)
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

func available(d appsv1.Deployment) (pipeline.Severity, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	switch {
	case d.Status.AvailableReplicas == 0 && want > 0:
		return pipeline.Error, fmt.Sprintf("0/%d replicas available", want)
	case d.Status.AvailableReplicas < want:
		return pipeline.Warning, fmt.Sprintf("%d/%d replicas available", d.Status.AvailableReplicas, want)
	}
	return pipeline.Info, ""
}

func isGateway(d appsv1.Deployment) bool {
	l := d.Spec.Template.Labels
	return l["istio"] == "ingressgateway" || l["istio"] == "egressgateway" || l["gateway.istio.io/managed"] != ""
}

func checkControlPlane(rep *Report, s *cluster, istioNS string) {
	const cat = "control-plane"
	if len(s.Planes) == 0 {
		rep.add(cat, "an istiod is installed", pipeline.Check{ID: "CHECK-ISTIOD-INSTALLED", Severity: pipeline.Error,
			Message: "no Deployment labelled app=istiod", Hint: "install the control plane: kubectl mesh install"})
		return
	}
	for _, d := range s.Deployments {
		if d.Labels["app"] != "istiod" && !isGateway(d) {
			continue
		}
		name := fmt.Sprintf("Deployment %s/%s is available", d.Namespace, d.Name)
		sev, msg := available(d)
		c := pipeline.Check{ID: "CHECK-DEPLOYMENT-AVAILABLE", Severity: sev, Message: msg}
		if sev != pipeline.Info {
			c.Hint = "kubectl describe deployment -n " + d.Namespace + " " + d.Name
		}
		rep.add(cat, name, c)
		if why := drainBlocking(s, d); why != "" {
			rep.add(cat, fmt.Sprintf("Deployment %s/%s can be drained", d.Namespace, d.Name), pipeline.Check{ID: "CHECK-DRAIN-BLOCKED", Severity: pipeline.Warning,
				Message: why + ": node drains and cluster upgrades will hang",
				Hint:    "scale to at least 2 replicas (kubectl mesh install's production profile runs 2–5) or relax the budget", URL: "https://istio.io/latest/docs/ops/deployment/best-practices/"})
		}
	}
	if len(s.Deployments) == 0 {
		rep.add(cat, "control-plane Deployments are readable", pipeline.Check{ID: "CHECK-DEPLOYMENT-AVAILABLE", Severity: pipeline.Warning,
			Message: "no Deployments read in this scope (-n limits it)", Hint: "run without -n to check " + istioNS})
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
			rep.add(cat, key+" points at a live Service", pipeline.Check{ID: "CHECK-WEBHOOK-SERVICE", Severity: pipeline.Error,
				Message: fmt.Sprintf("Service %s/%s does not exist: pod creation in labelled namespaces fails or skips injection", h.svcNS, h.svcName),
				Hint:    "reinstall the revision, or delete the orphaned webhook", URL: "https://istio.io/latest/docs/ops/common-problems/injection/"})
		case len(h.ca) == 0:
			rep.add(cat, key+" has a CA bundle", pipeline.Check{ID: "CHECK-WEBHOOK-CA", Severity: pipeline.Warning,
				Message: "caBundle is empty: istiod patches it on start; if istiod is running this is stuck", Hint: "check istiod's logs for webhook patching errors"})
		default:
			rep.pass(cat, "CHECK-WEBHOOK-SERVICE", key+" points at a live Service with a CA bundle")
		}
	}
	for _, m := range s.Mutating {
		tag, rev := m.Labels[mesh.LabelTag], m.Labels[mesh.LabelRev]
		if tag == "" {
			continue
		}
		if _, ok := mesh.Resolve(s.Planes, rev); !ok {
			rep.add("revision-tags", "tag "+tag+" points at an installed revision", pipeline.Check{ID: "CHECK-REVISION-TAG", Severity: pipeline.Error,
				Message: "revision " + rev + " has no istiod", Hint: "move the tag: istioctl tag set " + tag + " --revision REV --overwrite",
				URL: "https://istio.io/latest/docs/setup/upgrade/canary/#stable-revision-labels"})
		} else {
			rep.pass("revision-tags", "CHECK-REVISION-TAG", "tag "+tag+" → revision "+rev)
		}
	}
}
