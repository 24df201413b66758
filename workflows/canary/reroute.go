package canary

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// routingFor is the routing a state describes.
func routingFor(t *target, s *State) routing {
	stable, canary := s.backends()
	rt := routing{Host: t.host(), Stable: stable, Canary: canary, Weight: s.Weight, Mirror: s.Mirror}
	if s.Header != "" {
		// parseState refused a state whose header does not parse.
		rt.HeaderName, rt.HeaderIs, _ = parseHeader(s.Header)
	}
	return rt
}

// reroute returns the route object (VirtualService or HTTPRoute) rewritten
// for s, with s as its state.
func reroute(t *target, s *State) *unstructured.Unstructured {
	return rerouteWith(t, s, routingFor(t, s))
}

func rerouteWith(t *target, s *State, rt routing) *unstructured.Unstructured {
	if t.gateway() {
		hr := pipeline.Edit(t.HR)
		i := stateRule(hr, s)
		var rule map[string]any
		if i >= 0 {
			rule = hrRules(hr)[i]
		}
		applyGatewayRouting(hr, i, backendPort(t, rule), rt)
		return hr
	}
	vs := pipeline.Edit(t.VS)
	applyRouting(vs, s.Route, t.hostMatches, rt)
	return vs
}

// stateRule is the rule of hr that carries the canary's split: the one
// sending to its version Services (-1 if someone removed it).
func stateRule(hr *unstructured.Unstructured, s *State) int {
	c := carriers(hrRules(hr), hr.GetNamespace(), func(n string) bool { return n == s.StableService || n == s.CanaryService })
	if len(c) == 0 {
		return -1
	}
	return c[0]
}

// checks are our checks on a planned route object.
func (t *target) checks(routes *unstructured.Unstructured, s *State) []pipeline.Check {
	if routes.GetKind() == "HTTPRoute" {
		return gatewayChecks(t, s)
	}
	return routeChecks(t.DR, routes)
}
