package install

import (
	_ "embed"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// productionOverlay is the product's opinion of a production mesh, applied
// on top of Istio's "default" profile (Istio ships no production profile).
//
//go:embed production.yaml
var productionOverlay []byte

// priorityClassName is the class the production profile gives istiod and
// the gateways, created by the install. Not system-cluster-critical: some
// providers admit the system classes only in kube-system (a quota scoped to
// them), which would leave the control plane without pods.
const priorityClassName = "istio-control-plane"

// priorityClass ranks the control plane above workloads (default 0), so a
// full cluster evicts an application pod before istiod or a gateway; well
// below the system classes (2000000000).
func priorityClass() *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"value":            int64(1000000),
		"globalDefault":    false,
		"preemptionPolicy": "PreemptLowerPriority",
		"description":      "Istio's control plane and gateways (kubectl mesh install, production profile)",
	}}
	u.SetAPIVersion("scheduling.k8s.io/v1")
	u.SetKind("PriorityClass")
	u.SetName(priorityClassName)
	u.SetAnnotations(map[string]string{"kubectl-mesh.io/component": "Pilot"})
	return u
}

// Reason explains one deviation of the production profile from default.
type Reason struct {
	Setting, Why string
	// Covers are the rendered fields the setting changes, as
	// fragments of "Kind/name:.path", matched anywhere in the path of a changed
	// field, so a setting is covered wherever Istio records it (the rendered
	// object, the mesh config, the values ConfigMap); TestExplainCoversEveryChange.
	Covers []string
}

// ProductionReasons is what --explain prints; TestExplainCoversEveryChange
// fails when production.yaml changes a field no reason covers.
var ProductionReasons = []Reason{
	{Setting: "istiod: 2 replicas, HPA min 2 / max 5", Why: "default runs 1 istiod with a PDB of minAvailable 1, which blocks every node drain (istio/istio#12602, #53909)", Covers: []string{"HorizontalPodAutoscaler/istiod:", "pilot.autoscaleM", "pilot.replicaCount", "merged-values.autoscaleMin", "merged-values.replicaCount"}},
	{Setting: "istiod and gateways: the replica count is left to the HPA", Why: "a static count would scale an autoscaled control plane back down on every re-run of the install; a first install starts at the HPA's minimum, a re-run keeps the live count, and -o yaml / --output-dir leave the field out so GitOps tools do not fight the autoscaler either"},
	{Setting: "istiod: PDB minAvailable 1", Why: "with 2 replicas a drain can evict one pod while the other keeps serving config and certificates", Covers: []string{"PodDisruptionBudget/istiod:"}},
	{Setting: "istiod: requests 500m/2Gi, limits 1000m/4Gi", Why: "istiod memory grows with services and endpoints; without requests it is the first pod evicted under pressure", Covers: []string{"containers[discovery].resources.limits.cpu", "containers[discovery].resources.limits.memory", "containers[discovery].resources.requests.memory", "pilot.resources", "merged-values.resources.limits.cpu"}},
	{Setting: "gateways: 2 replicas, HPA min 2 / max 5, PDB minAvailable 1", Why: "one gateway pod is a single point of failure for all ingress traffic", Covers: []string{"HorizontalPodAutoscaler/istio-ingressgateway:", "PodDisruptionBudget/istio-ingressgateway:"}},
	{Setting: "gateways: requests 1000m/1Gi, limits 2000m/2Gi", Why: "Envoy on the edge is CPU bound; guaranteed headroom avoids latency spikes at scale-up", Covers: []string{"Deployment/istio-ingressgateway:.spec.template.spec.containers[istio-proxy].resources.limits.memory", "Deployment/istio-ingressgateway:.spec.template.spec.containers[istio-proxy].resources.requests"}},
	{Setting: "istiod and gateways: ephemeral storage requests 100Mi, limits 1Gi", Why: "without a request the scheduler ignores their disk use, and without a limit a runaway log or core dump can evict every pod on the node", Covers: []string{"ephemeral-storage"}},
	{Setting: "istiod and gateways: spread over zones, then nodes (topologySpreadConstraints, ScheduleAnyway)", Why: "two replicas in one zone or on one node fail together; ScheduleAnyway still schedules where the cluster has a single zone or node", Covers: []string{"topologySpreadConstraints"}},
	{Setting: "istiod and gateways: priority class istio-control-plane (value 1000000)", Why: "on a full cluster the scheduler evicts an application pod before the control plane or the edge; not system-cluster-critical, which some providers admit only in kube-system", Covers: []string{"priorityClassName", "PriorityClass/istio-control-plane:"}},
	{Setting: "gateways: drain for 30s, exit on zero active connections, 45s grace period", Why: "a scale-down or rollout of a gateway otherwise cuts in-flight requests and long-lived connections; the grace period outlasts the drain so the kubelet does not kill Envoy mid-drain", Covers: []string{"proxy.istio.io/config", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS", "terminationGracePeriodSeconds"}},
	{Setting: "meshConfig.defaultHttpRetryPolicy: 2 attempts on connect-failure, refused-stream, unavailable, cancelled", Why: "Istio's default also retries 503s on every route, which repeats non-idempotent requests the application already received", Covers: []string{"defaultHttpRetryPolicy"}},
	{Setting: "meshConfig.defaultConfig.proxyMetadata ISTIO_META_DNS_CAPTURE: true", Why: "TCP ServiceEntries to external hosts on a shared port need the sidecar to answer DNS with the address istiod allocated (istiod 1.31 allocates them by default); kubectl mesh migrate-egress relies on it", Covers: []string{"ISTIO_META_DNS_CAPTURE"}},
	{Setting: "meshConfig.defaultConfig.holdApplicationUntilProxyStarts: true", Why: "apps that call out at start-up fail while the sidecar is not ready yet", Covers: []string{"holdApplicationUntilProxyStarts"}},
	{Setting: "meshConfig.accessLogFile: /dev/stdout", Why: "access logs are the first thing needed in an incident; default turns them off"},
	{Setting: "sidecar resources: requests 100m/128Mi, limits 2000m/1Gi", Why: "sidecars without limits can starve the application; without requests they are never scheduled for", Covers: []string{"global.proxy.resources"}},
}

// KeptReasons are what the production profile deliberately leaves as Istio
// ships it, although linters flag it; Covers are kube-score's words for the
// finding (TestProductionRenderKubeScore).
var KeptReasons = []Reason{
	{Setting: "istiod and the proxies run as UID/GID 1337 (kube-score: low user/group ID)", Why: "Istio's traffic capture tells the proxy's own traffic apart by that UID; changing it breaks interception",
		Covers: []string{"The container is running with a low user ID", "The container running with a low group ID"}},
	{Setting: "imagePullPolicy is not Always (kube-score)", Why: "images are pinned to a release tag (install refuses latest); Always would make every control-plane pod start depend on the registry being reachable",
		Covers: []string{"ImagePullPolicy is not set to Always"}},
	{Setting: "no NetworkPolicy for istiod and gateways (kube-score)", Why: "istiod must be reached by the API server (webhooks) and every proxy (xDS), and a gateway on whatever ports its Gateway resources open; access to the mesh is governed by mTLS and AuthorizationPolicies instead",
		Covers: []string{"The pod does not have a matching NetworkPolicy"}},
}

// Explain prints the production profile's reasons.
func Explain(w io.Writer) {
	fmt.Fprintln(w, "The production profile is Istio's default profile plus:")
	for _, r := range ProductionReasons {
		fmt.Fprintf(w, "  - %s\n      why: %s\n", r.Setting, r.Why)
	}
	fmt.Fprintln(w, "Kept as Istio ships it, although linters flag it:")
	for _, r := range KeptReasons {
		fmt.Fprintf(w, "  - %s\n      kept, because %s\n", r.Setting, r.Why)
	}
}
