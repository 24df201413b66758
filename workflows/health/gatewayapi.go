package health

import (
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"istio.io/istio/pkg/config/schema/gatewayapi"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// checkGatewayAPI reports the Gateway API CRDs' version against what the
// embedded Istio supports: the minimum per CRD below which istiod ignores
// the kind (Istio's own table), and the version it is built with (the
// CRDs install --gateway-api carries), past which fields are unknown to it.
func checkGatewayAPI(rep *Report, s *cluster) {
	const cat = "gateway-api"
	ours := mesh.GatewayAPIVersion()
	istio := "Istio " + minor(mesh.IstioRelease)
	if len(s.GatewayCRDs) == 0 {
		rep.add(cat, "Gateway API CRDs are not installed", pipeline.Check{ID: "CHECK-GATEWAY-API", Severity: pipeline.Info,
			Message: "HTTPRoute canaries and Gateway API ingress need them",
			Hint:    "kubectl mesh install --gateway-api installs the standard channel " + ours,
			URL:     "https://istio.io/latest/docs/tasks/traffic-management/ingress/gateway-api/"})
		return
	}
	names := sortedKeys(s.GatewayCRDs)
	versions := map[string][]string{}
	var tooOld []string
	experimental := false
	for _, n := range names {
		v, ch := s.GatewayCRDs[n][0], s.GatewayCRDs[n][1]
		versions[v] = append(versions[v], strings.TrimSuffix(n, ".gateway.networking.k8s.io"))
		experimental = experimental || ch == "experimental"
		if min := gatewayapi.MinimumCRDVersions[n]; min != nil {
			if have, err := semver.NewVersion(v); err != nil || have.LessThan(min) {
				tooOld = append(tooOld, fmt.Sprintf("%s %s (needs v%s)", n, orUnknown(v), min))
			}
		}
	}
	vs := sortedKeys(versions)
	channel := "standard"
	if experimental {
		channel = "experimental"
	}
	name := fmt.Sprintf("Gateway API CRDs %s (%s channel) are supported by %s", strings.Join(vs, ", "), channel, istio)
	var hasRoutes bool
	_, hasRoutes = s.GatewayCRDs["httproutes.gateway.networking.k8s.io"]
	switch {
	case len(tooOld) > 0:
		rep.add(cat, name, pipeline.Check{ID: "CHECK-GATEWAY-API", Severity: pipeline.Error,
			Message: "istiod ignores CRDs older than it needs: " + short(tooOld),
			Hint:    "upgrade the Gateway API CRDs: kubectl mesh install --gateway-api",
			URL:     "https://istio.io/latest/docs/tasks/traffic-management/ingress/gateway-api/"})
	case len(vs) > 1:
		var parts []string
		for _, v := range vs {
			sort.Strings(versions[v])
			parts = append(parts, orUnknown(v)+": "+short(versions[v]))
		}
		rep.add(cat, name, pipeline.Check{ID: "CHECK-GATEWAY-API", Severity: pipeline.Warning,
			Message: "CRDs of several Gateway API releases are installed (" + strings.Join(parts, "; ") + ")",
			Hint:    "install one release of all of them: kubectl mesh install --gateway-api"})
	case mesh.NewerGatewayAPI(vs[0]):
		rep.add(cat, name, pipeline.Check{ID: "CHECK-GATEWAY-API", Severity: pipeline.Warning,
			Message: fmt.Sprintf("%s is newer than %s, the Gateway API %s is built with: fields it does not know are ignored", vs[0], ours, istio),
			Hint:    "upgrade Istio, or keep routes to the fields " + ours + " has",
			URL:     "https://istio.io/latest/docs/releases/supported-releases/"})
	case !hasRoutes:
		rep.add(cat, name, pipeline.Check{ID: "CHECK-GATEWAY-API", Severity: pipeline.Warning,
			Message: "httproutes.gateway.networking.k8s.io is missing",
			Hint:    "kubectl mesh install --gateway-api"})
	default:
		rep.pass(cat, "CHECK-GATEWAY-API", name)
	}
}

func orUnknown(v string) string {
	if v == "" {
		return "(no bundle-version)"
	}
	return v
}
