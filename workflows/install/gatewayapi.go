package install

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// Check IDs of the Gateway API CRDs (--gateway-api).
const (
	CheckGatewayAPIChannel = "INSTALL-GATEWAY-API-CHANNEL"
)

// gatewayCRD is an installed Gateway API CRD, as its annotations say.
type gatewayCRD struct{ Version, Channel string }

// addGatewayAPI plans the Gateway API CRDs (standard channel) right after
// Istio's: Istio implements the Gateway API but does not ship its CRDs.
// An installed newer bundle is kept (a downgrade drops fields that objects
// may use), and an experimental-channel install blocks: the standard
// channel's schemas would prune its experimental fields.
func (o *Options) addGatewayAPI(plan *pipeline.Plan, installed map[string]gatewayCRD) error {
	if !o.GatewayAPI {
		return nil
	}
	crds, err := mesh.GatewayAPICRDs()
	if err != nil {
		return err
	}
	ours := mesh.GatewayAPIVersion()
	var changes []pipeline.Change
	var newer, experimental []string
	for _, c := range crds {
		if have, ok := installed[c.GetName()]; ok {
			if have.Channel == "experimental" {
				experimental = append(experimental, c.GetName()+" "+have.Version)
				continue
			}
			if mesh.NewerGatewayAPI(have.Version) {
				newer = append(newer, c.GetName()+" "+have.Version)
				continue
			}
		}
		changes = append(changes, pipeline.Change{Op: pipeline.Apply, Object: c})
	}
	if len(experimental) > 0 {
		sort.Strings(experimental)
		plan.Checks = append(plan.Checks, pipeline.Check{ID: CheckGatewayAPIChannel, Severity: pipeline.Error,
			Message: "the cluster has the experimental channel of the Gateway API (" + strings.Join(experimental, ", ") + "): the standard channel's CRDs would drop the experimental fields objects may use",
			Hint:    "leave out --gateway-api and manage the experimental CRDs yourself",
			URL:     "https://gateway-api.sigs.k8s.io/concepts/versioning/"})
	}
	if len(newer) > 0 {
		sort.Strings(newer)
		plan.Notes = append(plan.Notes, fmt.Sprintf("Gateway API CRDs newer than the %s this release carries are kept: %s", ours, strings.Join(newer, ", ")))
	}
	if len(changes) == 0 {
		return nil
	}
	phase := pipeline.Phase{Name: "Gateway API CRDs", Changes: changes}
	at := 0
	if i := slices.IndexFunc(plan.Phases, func(p pipeline.Phase) bool { return p.Name == "Istio CRDs" }); i >= 0 {
		at = i + 1
	}
	plan.Phases = slices.Insert(plan.Phases, at, phase)
	plan.Notes = append(plan.Notes, fmt.Sprintf("Gateway API %s CRDs, standard channel (Istio needs them for HTTPRoute and Gateway API ingress)", ours))
	return nil
}
