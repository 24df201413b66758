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
)

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
