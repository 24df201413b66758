package install

import (
	_ "embed"
	"fmt"
	"io"
)

// productionOverlay is the product's opinion of a production mesh, applied
// on top of Istio's "default" profile (Istio ships no production profile).
//
//go:embed production.yaml
var productionOverlay []byte

// Reason explains one deviation of the production profile from default.
type Reason struct{ Setting, Why string }

// ProductionReasons is what --explain prints; keep it in step with production.yaml.
var ProductionReasons = []Reason{
	{"istiod: 2 replicas, HPA min 2 / max 5", "default runs 1 istiod with a PDB of minAvailable 1, which blocks every node drain (istio/istio#12602, #53909)"},
	{"istiod and gateways: the replica count is left to the HPA", "a static count would scale an autoscaled control plane back down on every re-run of the install; a first install starts at the HPA's minimum, a re-run keeps the live count, and -o yaml / --output-dir leave the field out so GitOps tools do not fight the autoscaler either"},
	{"istiod: PDB minAvailable 1", "with 2 replicas a drain can evict one pod while the other keeps serving config and certificates"},
	{"istiod: requests 500m/2Gi, limits 1000m/4Gi", "istiod memory grows with services and endpoints; without requests it is the first pod evicted under pressure"},
	{"gateways: 2 replicas, HPA min 2 / max 5, PDB minAvailable 1", "one gateway pod is a single point of failure for all ingress traffic"},
	{"gateways: requests 1000m/1Gi, limits 2000m/2Gi", "Envoy on the edge is CPU bound; guaranteed headroom avoids latency spikes at scale-up"},
	{"istiod and gateways: pod anti-affinity by hostname", "two replicas on one node fail together"},
	{"meshConfig.defaultConfig.holdApplicationUntilProxyStarts: true", "apps that call out at start-up fail while the sidecar is not ready yet"},
	{"meshConfig.accessLogFile: /dev/stdout", "access logs are the first thing needed in an incident; default turns them off"},
	{"sidecar resources: requests 100m/128Mi, limits 2000m/1Gi", "sidecars without limits can starve the application; without requests they are never scheduled for"},
}

// Explain prints the production profile's reasons.
func Explain(w io.Writer) {
	fmt.Fprintln(w, "The production profile is Istio's default profile plus:")
	for _, r := range ProductionReasons {
		fmt.Fprintf(w, "  - %s\n      why: %s\n", r.Setting, r.Why)
	}
}
