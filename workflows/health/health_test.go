package health

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline/plantest"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func int32p(i int32) *int32 { return &i }

func deploy(ns, name string, replicas, available int32, tmplLabels map[string]string, probes bool) appsv1.Deployment {
	c := corev1.Container{Name: "app"}
	if probes {
		c.ReadinessProbe, c.LivenessProbe = &corev1.Probe{}, &corev1.Probe{}
	}
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: tmplLabels},
		Spec: appsv1.DeploymentSpec{Replicas: int32p(replicas), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: tmplLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: available, ReadyReplicas: available},
	}
}

func sidecarPod(rev string, limits bool) mesh.Pod {
	proxy := corev1.Container{Name: mesh.ProxyContainerName}
	if limits {
		proxy.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: {}}
	}
	return mesh.Pod{HasSidecar: true, Revision: rev, Object: &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, proxy}}}}
}

func plainPod() mesh.Pod { return mesh.Pod{Object: &corev1.Pod{}} }

func ns(name string, labels map[string]string) corev1.Namespace {
	return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func hook(name, rev, svcNS, svc string, ca []byte) admissionv1.MutatingWebhookConfiguration {
	return admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{mesh.LabelRev: rev}},
		Webhooks:   []admissionv1.MutatingWebhook{{Name: "x", ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: svcNS, Name: svc}, CABundle: ca}}},
	}
}

// healthy is a cluster where every check is green.
func healthy() *cluster {
	istiod := deploy("istio-system", "istiod-1-31", 2, 2, map[string]string{"app": "istiod", mesh.LabelRev: "1-31"}, true)
	istiod.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:1.31.0"
	return &cluster{
		Version:     "v1.36.1",
		IstioCRDs:   shipped(),
		ShippedCRDs: shipped(),
		Planes:      []mesh.ControlPlane{{Revision: "1-31", Namespace: "istio-system"}},
		Deployments: []appsv1.Deployment{istiod, deploy("shop", "api", 1, 1, map[string]string{"app": "api"}, true)},
		PDBs: []policyv1.PodDisruptionBudget{{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &intstr.IntOrString{IntVal: 1}, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istiod"}}}}},
		Services:   map[string]bool{"istio-system/istiod-1-31": true},
		Mutating:   []admissionv1.MutatingWebhookConfiguration{hook("istio-sidecar-injector-1-31", "1-31", "istio-system", "istiod-1-31", []byte("ca"))},
		Namespaces: []corev1.Namespace{ns("istio-system", nil), ns("shop", map[string]string{mesh.LabelRev: "1-31", mesh.LabelTeam: "shop"}), ns("default", nil)},
		Workloads:  []mesh.Workload{{Namespace: "shop", Kind: "Deployment", Name: "api", Pods: []mesh.Pod{sidecarPod("1-31", true)}}},
		PAs:        []mesh.PeerAuth{{Namespace: "shop", Name: "default", Mode: mesh.ModeStrict, Created: now.Add(-time.Hour)}},
	}
}

func shipped() []string {
	names, err := shippedCRDNames()
	if err != nil {
		panic(err)
	}
	return slices.Clone(names)
}

func results(s *cluster) *Report {
	rep := &Report{}
	checkAPI(rep, s)
	for _, check := range clusterChecks {
		check(rep, s, scope{root: "istio-system", now: now})
	}
	return rep
}

func find(rep *Report, sev pipeline.Severity, substr string) bool {
	for _, r := range rep.Results {
		if r.Severity == sev && strings.Contains(r.Title+" "+r.Message, substr) {
			return true
		}
	}
	return false
}

// TestReportGolden: the JSON schema of a green cluster.
func TestReportGolden(t *testing.T) {
	rep := results(healthy())
	if rep.Summary.Warning != 0 || rep.Summary.Error != 0 {
		t.Fatalf("healthy fixture is not green: %+v", rep.Results)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
	plantest.Golden(t, filepath.Join("testdata", "healthy.json"), b.String())

	var st bytes.Buffer
	enc = json.NewEncoder(&st)
	enc.SetIndent("", "  ")
	_ = enc.Encode(summarize(healthy(), "istio-system"))
	plantest.Golden(t, filepath.Join("testdata", "status.json"), st.String())
}

// TestChecks: each fixture breaks one thing and must turn exactly that
// check to warn or fail.
func TestChecks(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(s *cluster)
		sev     pipeline.Severity
		want    string
	}{
		{"old kubernetes", func(s *cluster) { s.Version = "v1.26.3" }, pipeline.Error, "the cluster runs v1.26.3"},
		{"missing CRDs", func(s *cluster) { s.IstioCRDs = coreCRDs[:2] }, pipeline.Error, "missing: gateways.networking.istio.io"},
		{"CRDs older than istiod", func(s *cluster) {
			s.IstioCRDs = slices.DeleteFunc(s.IstioCRDs, func(n string) bool { return n == "telemetries.telemetry.istio.io" })
		}, pipeline.Warning, "missing kinds the control plane serves: telemetries.telemetry.istio.io"},
		{"leftover CRD", func(s *cluster) { s.IstioCRDs = append(s.IstioCRDs, "istiooperators.install.istio.io") }, pipeline.Warning, "(left by another version): istiooperators.install.istio.io"},
		{"no istiod", func(s *cluster) { s.Planes = nil }, pipeline.Error, "no Deployment labelled app=istiod"},
		{"istiod down", func(s *cluster) { s.Deployments[0].Status.AvailableReplicas = 0 }, pipeline.Error, "0/2 replicas available"},
		{"istiod degraded", func(s *cluster) { s.Deployments[0].Status.AvailableReplicas = 1 }, pipeline.Warning, "1/2 replicas available"},
		{"drain-blocking PDB", func(s *cluster) { s.PDBs[0].Spec.MinAvailable.IntVal = 2 }, pipeline.Warning, "needs 2 available of 2"},
		{"webhook without service", func(s *cluster) { s.Services = map[string]bool{} }, pipeline.Error, "Service istio-system/istiod-1-31 does not exist"},
		{"webhook without CA", func(s *cluster) { s.Mutating[0].Webhooks[0].ClientConfig.CABundle = nil }, pipeline.Warning, "caBundle is empty"},
		{"dangling tag", func(s *cluster) {
			h := hook("istio-revision-tag-prod", "1-29", "istio-system", "istiod-1-31", []byte("ca"))
			h.Labels[mesh.LabelTag] = "prod"
			s.Mutating = append(s.Mutating, h)
		}, pipeline.Error, "revision 1-29 has no istiod"},
		{"both injection labels", func(s *cluster) { s.Namespaces[1].Labels[mesh.LabelInjection] = "enabled" }, pipeline.Error, "IST0123"},
		{"unknown revision", func(s *cluster) { s.Namespaces[1].Labels[mesh.LabelRev] = "1-99" }, pipeline.Error, "matches no revision or tag"},
		{"pod without sidecar", func(s *cluster) { s.Workloads[0].Pods = append(s.Workloads[0].Pods, plainPod()) }, pipeline.Warning, "without a sidecar: Deployment/api"},
		{"proxy skew", func(s *cluster) { s.Workloads[0].Pods[0].Revision = "1-30" }, pipeline.Warning, "IST0158"},
		{"proxy without limits", func(s *cluster) { s.Workloads[0].Pods[0] = sidecarPod("1-31", false) }, pipeline.Warning, "istio-proxy without limits"},
		{"permissive default", func(s *cluster) { s.PAs = nil }, pipeline.Warning, "PERMISSIVE (Istio's default)"},
		{"permissive for long", func(s *cluster) {
			s.PAs[0].Mode, s.PAs[0].Created = mesh.ModePermissive, now.Add(-45*24*time.Hour)
		}, pipeline.Warning, "left PERMISSIVE for 45 days"},
		{"allow-all policy", func(s *cluster) {
			s.AuthZ = []*unstructured.Unstructured{{Object: map[string]any{"metadata": map[string]any{"name": "open", "namespace": "shop"}, "spec": map[string]any{"rules": []any{map[string]any{}}}}}}
		}, pipeline.Warning, "shop/open"},
		{"no probes", func(s *cluster) {
			s.Deployments[1] = deploy("shop", "api", 1, 1, map[string]string{"app": "api"}, false)
		}, pipeline.Warning, "missing on: shop/api"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := healthy()
			tc.breakIt(s)
			rep := results(s)
			for _, r := range rep.Results {
				if !strings.HasPrefix(r.ID, "CHECK-") {
					t.Errorf("result %q has no CHECK- ID: %q", r.Title, r.ID)
				}
			}
			if !find(rep, tc.sev, tc.want) {
				t.Fatalf("no %s result mentioning %q:\n%+v", tc.sev, tc.want, rep.Results)
			}
			if tc.sev == pipeline.Warning && rep.Summary.Error != 0 {
				t.Fatalf("a warning case failed a check: %+v", rep.Results)
			}
		})
	}
}

func TestStatusRows(t *testing.T) {
	s := healthy()
	s.VSs = []*unstructured.Unstructured{{Object: map[string]any{"metadata": map[string]any{"name": "reviews", "namespace": "shop",
		"annotations": map[string]any{mesh.AnnotationCanary: `{"service":"reviews","stable":"v1","canary":"v2","weight":25}`}}}}}
	// An ingress gateway's pod carries istio-proxy: istio-system stays out of the table.
	s.Workloads = append(s.Workloads, mesh.Workload{Namespace: "istio-system", Kind: "Deployment", Name: "istio-ingressgateway", Pods: []mesh.Pod{sidecarPod("1-31", true)}})
	rep := summarize(s, "istio-system")
	if len(rep.Namespaces) != 1 || rep.OutsideMesh != 2 {
		t.Fatalf("rows: %+v outside %d", rep.Namespaces, rep.OutsideMesh)
	}
	row := rep.Namespaces[0]
	if row.Sidecars != "1/1" || row.Coverage != 100 || row.MTLS != "STRICT" || row.Team != "shop" || len(row.Canaries) != 1 || row.Canaries[0] != "reviews v1→v2 25%" {
		t.Fatalf("row: %+v", row)
	}
	if cp := rep.ControlPlanes[0]; cp.Version != "1.31.0" || cp.Ready != "2/2" {
		t.Fatalf("control plane: %+v", cp)
	}
	var b bytes.Buffer
	printStatus(&b, rep)
	for _, line := range strings.Split(b.String(), "\n") {
		if len(line) > 100 {
			t.Fatalf("status line wider than 100 columns: %q", line)
		}
	}
}

// TestCRDsOfAnotherRelease: a control plane of another release ships other
// kinds, so the CRD set is not compared with the embedded one.
func TestCRDsOfAnotherRelease(t *testing.T) {
	s := healthy()
	s.Deployments[0].Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:1.29.2"
	s.IstioCRDs = append(s.IstioCRDs, "istiooperators.install.istio.io")
	if rep := results(s); rep.Summary.Warning != 0 || find(rep, pipeline.Info, "CRDs match") {
		t.Fatalf("CRDs compared against another release: %+v", rep.Results)
	}
}

func TestGatewayAPIVersion(t *testing.T) {
	ours := mesh.GatewayAPIVersion()
	all := func(v, ch string) map[string][2]string {
		out := map[string][2]string{}
		for _, k := range []string{"gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes"} {
			out[k+".gateway.networking.k8s.io"] = [2]string{v, ch}
		}
		return out
	}
	mixed := all(ours, "standard")
	mixed["gateways.gateway.networking.k8s.io"] = [2]string{"v1.5.1", "standard"}
	noRoutes := all(ours, "standard")
	delete(noRoutes, "httproutes.gateway.networking.k8s.io")
	cases := []struct {
		crds   map[string][2]string
		sev    pipeline.Severity
		substr string
	}{
		{nil, pipeline.Info, "Gateway API CRDs are not installed"},
		{all(ours, "standard"), pipeline.Info, "Gateway API CRDs " + ours + " (standard channel) are supported by Istio 1.31"},
		{all(ours, "experimental"), pipeline.Info, "(experimental channel)"},
		{all("v1.4.0", "standard"), pipeline.Error, "tcproutes.gateway.networking.k8s.io v1.4.0 (needs v1.6.0)"},
		{all("v9.1.0", "standard"), pipeline.Warning, "v9.1.0 is newer than " + ours},
		{mixed, pipeline.Warning, "v1.5.1: gateways"},
		{noRoutes, pipeline.Warning, "httproutes.gateway.networking.k8s.io is missing"},
	}
	for _, tc := range cases {
		s := healthy()
		s.GatewayCRDs = tc.crds
		rep := &Report{}
		checkGatewayAPI(rep, s)
		if len(rep.Results) != 1 || !find(rep, tc.sev, tc.substr) {
			t.Errorf("%v: want %s %q, got %+v", tc.crds, tc.sev, tc.substr, rep.Results)
		}
	}
}
