package canary

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Names of the routes the canary owns inside a team's VirtualService.
const (
	headerRoute  = "canary-header"
	primaryRoute = "primary"
)

// subsetFor returns the name of the DestinationRule subset that selects
// exactly version (by the version label), or "" when there is none.
func subsetFor(dr *unstructured.Unstructured, label, version string) string {
	if dr == nil {
		return ""
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		sm, _ := s.(map[string]any)
		labels, _, _ := unstructured.NestedStringMap(sm, "labels")
		if len(labels) == 1 && labels[label] == version {
			name, _, _ := unstructured.NestedString(sm, "name")
			return name
		}
	}
	return ""
}

func subsetNames(dr *unstructured.Unstructured) []string {
	var out []string
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		name, _, _ := unstructured.NestedString(s.(map[string]any), "name")
		out = append(out, name)
	}
	return out
}

// addSubset appends a subset selecting version; the trafficPolicy and every
// other subset stay as they are (auto-mTLS keeps working: no tls block is
// ever added).
func addSubset(dr *unstructured.Unstructured, name, label, version string) error {
	if slices.Contains(subsetNames(dr), name) {
		return fmt.Errorf("DestinationRule %s already has a subset %q that does not select %s=%s only: rename it or pass versions whose subsets match", dr.GetName(), name, label, version)
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	subsets = append(subsets, map[string]any{"name": name, "labels": map[string]any{label: version}})
	return unstructured.SetNestedSlice(dr.Object, subsets, "spec", "subsets")
}

// removeSubset drops a subset by name.
func removeSubset(dr *unstructured.Unstructured, name string) {
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	subsets = slices.DeleteFunc(subsets, func(s any) bool {
		n, _, _ := unstructured.NestedString(s.(map[string]any), "name")
		return n == name
	})
	_ = unstructured.SetNestedSlice(dr.Object, subsets, "spec", "subsets")
}

// httpRoutes returns the VirtualService's http routes (a copy of the slice;
// the maps are shared with the object).
func httpRoutes(vs *unstructured.Unstructured) []map[string]any {
	rs, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		if m, ok := r.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func setHTTPRoutes(vs *unstructured.Unstructured, rs []map[string]any) {
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	_ = unstructured.SetNestedSlice(vs.Object, out, "spec", "http")
}

func routeName(r map[string]any) string {
	n, _, _ := unstructured.NestedString(r, "name")
	return n
}

// primaryIndex finds the route the canary splits: the one named in the
// state, else the catch-all route (no match) that sends traffic to host.
// -1 when there is none.
func primaryIndex(rs []map[string]any, name string, hostMatches func(string) bool) int {
	for i, r := range rs {
		if name != "" && routeName(r) == name {
			return i
		}
	}
	for i, r := range rs {
		if _, has := r["match"]; has {
			continue
		}
		dests, _, _ := unstructured.NestedSlice(r, "route")
		for _, d := range dests {
			h, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
			if hostMatches(h) {
				return i
			}
		}
	}
	return -1
}

// destination is one weighted destination of the split.
func destination(host, subset string, port any, weight int) map[string]any {
	d := map[string]any{"host": host, "subset": subset}
	if port != nil {
		d["port"] = port
	}
	out := map[string]any{"destination": d}
	if weight >= 0 {
		out["weight"] = int64(weight)
	}
	return out
}

// routing is what the VirtualService should say for the canary.
type routing struct {
	Host                 string // as the VirtualService's destinations name it
	Stable, Canary       string // subset names
	Weight               int    // canary share; -1: all to Stable without weights; 101: all to Canary
	HeaderName, HeaderIs string // header route to the canary, "" for none
	Mirror               int    // percent mirrored to the canary, 0 for none
}

// applyRouting rewrites the primary route of vs (creating it last when
// there is none) and the header route before it, keeping every other
// route, the match order, and the primary route's retries, timeouts and
// other settings. It returns the primary route's name.
func applyRouting(vs *unstructured.Unstructured, name string, hostMatches func(string) bool, rt routing) string {
	rs := httpRoutes(vs)
	rs = slices.DeleteFunc(rs, func(r map[string]any) bool { return routeName(r) == headerRoute })
	i := primaryIndex(rs, name, hostMatches)
	var port any
	if i < 0 {
		rs = append(rs, map[string]any{"name": primaryRoute})
		i = len(rs) - 1
	} else if dests, _, _ := unstructured.NestedSlice(rs[i], "route"); len(dests) > 0 {
		port, _, _ = unstructured.NestedFieldCopy(dests[0].(map[string]any), "destination", "port")
	}
	primary := rs[i]
	if routeName(primary) == "" {
		primary["name"] = primaryRoute
	}
	switch {
	case rt.Weight < 0:
		primary["route"] = []any{destination(rt.Host, rt.Stable, port, -1)}
	case rt.Weight > 100:
		primary["route"] = []any{destination(rt.Host, rt.Canary, port, -1)}
	default:
		primary["route"] = []any{destination(rt.Host, rt.Stable, port, 100-rt.Weight), destination(rt.Host, rt.Canary, port, rt.Weight)}
	}
	delete(primary, "mirror")
	delete(primary, "mirrorPercentage")
	if rt.Mirror > 0 {
		m := map[string]any{"host": rt.Host, "subset": rt.Canary}
		if port != nil {
			m["port"] = port
		}
		primary["mirror"] = m
		primary["mirrorPercentage"] = map[string]any{"value": float64(rt.Mirror)}
	}
	if rt.HeaderName != "" {
		// Same timeouts and retries as the primary route: the header only
		// changes where the request goes.
		hr := map[string]any{
			"name":  headerRoute,
			"match": []any{map[string]any{"headers": map[string]any{rt.HeaderName: map[string]any{"exact": rt.HeaderIs}}}},
			"route": []any{destination(rt.Host, rt.Canary, port, -1)},
		}
		for _, k := range []string{"timeout", "retries", "headers", "corsPolicy"} {
			if v, ok := primary[k]; ok {
				hr[k] = v
			}
		}
		rs = slices.Insert(rs, i, hr)
	}
	setHTTPRoutes(vs, rs)
	return routeName(primary)
}

// referencedSubsets lists the subsets of host that any route of vs uses
// (as destination or mirror).
func referencedSubsets(vs *unstructured.Unstructured, hostMatches func(string) bool) []string {
	var out []string
	for _, r := range httpRoutes(vs) {
		dests, _, _ := unstructured.NestedSlice(r, "route")
		var ds []map[string]any
		for _, d := range dests {
			if dm, ok := d.(map[string]any)["destination"].(map[string]any); ok {
				ds = append(ds, dm)
			}
		}
		if m, ok := r["mirror"].(map[string]any); ok {
			ds = append(ds, m)
		}
		for _, d := range ds {
			h, _ := d["host"].(string)
			s, _ := d["subset"].(string)
			if s != "" && hostMatches(h) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// weightProblems reports http routes whose weighted destinations do not add
// up to 100.
func weightProblems(vs *unstructured.Unstructured) []string {
	var out []string
	for i, r := range httpRoutes(vs) {
		dests, _, _ := unstructured.NestedSlice(r, "route")
		if len(dests) < 2 {
			continue
		}
		sum := int64(0)
		for _, d := range dests {
			w, _, _ := unstructured.NestedFieldNoCopy(d.(map[string]any), "weight")
			switch w := w.(type) {
			case int64:
				sum += w
			case float64:
				sum += int64(w)
			}
		}
		if sum != 100 {
			name := routeName(r)
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			out = append(out, fmt.Sprintf("http route %s: weights add up to %d", name, sum))
		}
	}
	return out
}

// stickyPolicy reports a consistentHash load balancer on the DestinationRule
// or one of its subsets: weighted subsets break session affinity.
func stickyPolicy(dr *unstructured.Unstructured) bool {
	if dr == nil {
		return false
	}
	if _, ok, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy", "loadBalancer", "consistentHash"); ok {
		return true
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		if _, ok, _ := unstructured.NestedMap(s.(map[string]any), "trafficPolicy", "loadBalancer", "consistentHash"); ok {
			return true
		}
	}
	return false
}
