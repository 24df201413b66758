package canary

// Canaries on the Gateway API. An HTTPRoute has no subsets, so each version
// gets a Service of its own (<service>-<version>: the Service's selector
// plus the version label, the same ports), and the split is the weights of
// the backendRefs of the one rule that carries the Service's traffic. Only
// that rule's backendRefs (and a mirror filter the canary owns) change:
// every other rule, the order, matches, filters, timeouts and parentRefs
// stay as the team wrote them.

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// APIs a canary can route with (--api).
const (
	APIIstio   = "istio"
	APIGateway = "gateway"
)

// LabelVersionOf marks a per-version Service the canary created, with the
// Service it splits as the value; only those are ever deleted.
const LabelVersionOf = "canary.kubectl-mesh.io/version-of"

// hrRules returns the HTTPRoute's rules (the maps are shared with hr).
func hrRules(hr *unstructured.Unstructured) []map[string]any {
	rs, _, _ := unstructured.NestedSlice(hr.Object, "spec", "rules")
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		if m, ok := r.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func setHRRules(hr *unstructured.Unstructured, rs []map[string]any) {
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	_ = unstructured.SetNestedSlice(hr.Object, out, "spec", "rules")
}

// serviceRef is the name of the Service in ns a backendRef (or parentRef
// with defaultKind "Service") points at, or "".
func serviceRef(ref map[string]any, ns, defaultKind string) string {
	group, _ := ref["group"].(string)
	kind, _ := ref["kind"].(string)
	if kind == "" {
		kind = defaultKind
	}
	if group != "" && group != "core" || kind != "Service" {
		return ""
	}
	if n, _ := ref["namespace"].(string); n != "" && n != ns {
		return ""
	}
	name, _ := ref["name"].(string)
	return name
}

// backendNames lists the Services a rule's backendRefs point at.
func backendNames(r map[string]any, ns string) []string {
	refs, _, _ := unstructured.NestedSlice(r, "backendRefs")
	var out []string
	for _, ref := range refs {
		if m, ok := ref.(map[string]any); ok {
			if n := serviceRef(m, ns, "Service"); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

// attached reports whether hr serves the Service's traffic: a parentRef to
// the Service itself (the mesh, GAMMA) or to a Gateway or ListenerSet
// (ingress).
func attached(hr *unstructured.Unstructured, service string) bool {
	parents, _, _ := unstructured.NestedSlice(hr.Object, "spec", "parentRefs")
	for _, p := range parents {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if serviceRef(m, hr.GetNamespace(), "Gateway") == service {
			return true
		}
		kind, _ := m["kind"].(string)
		group, _ := m["group"].(string)
		if (kind == "" || kind == "Gateway" || kind == "ListenerSet") && (group == "" || group == "gateway.networking.k8s.io") {
			return true
		}
	}
	return false
}

// routesTo reports whether some rule of hr sends traffic to one of the
// Services named.
func routesTo(hr *unstructured.Unstructured, names func(string) bool) bool {
	for _, r := range hrRules(hr) {
		if slices.ContainsFunc(backendNames(r, hr.GetNamespace()), names) {
			return true
		}
	}
	return false
}

func hrRuleName(r map[string]any, i int) string {
	if n, _ := r["name"].(string); n != "" {
		return n
	}
	return fmt.Sprintf("#%d", i+1)
}

// carriers are the indexes of the rules (other than the canary's header
// rule) that send traffic to one of the Services named.
func carriers(rs []map[string]any, ns string, names func(string) bool) []int {
	var out []int
	for i, r := range rs {
		if r["name"] == headerRoute {
			continue
		}
		if slices.ContainsFunc(backendNames(r, ns), names) {
			out = append(out, i)
		}
	}
	return out
}

// ruleIndex finds a rule by name or by its 1-based number ("3" or "#3").
func ruleIndex(rs []map[string]any, want string) int {
	for i, r := range rs {
		if hrRuleName(r, i) == want {
			return i
		}
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(want, "#")); err == nil && n >= 1 && n <= len(rs) {
		return n - 1
	}
	return -1
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// versionServiceName is <service>-<version>, the version made a DNS label.
func versionServiceName(service, version string) (string, error) {
	name := service + "-" + strings.Trim(notDNS.ReplaceAllString(strings.ToLower(version), "-"), "-")
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return "", fmt.Errorf("the Service for version %s would be named %q, which is not a valid Service name (%s): shorten the Service or version name", version, name, errs[0])
	}
	return name, nil
}

// versionService is the Service that selects one version's pods: the
// Service's selector plus the version label, the same ports.
func versionService(t *target, label, version, name string) *unstructured.Unstructured {
	sel := maps.Clone(t.Selector)
	sel[label] = version
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Spec:     corev1.ServiceSpec{Selector: sel},
	}
	svc.Name, svc.Namespace = name, t.Namespace
	svc.Labels = map[string]string{LabelVersionOf: t.Service}
	for _, p := range t.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: p.TargetPort})
	}
	obj, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(svc)
	u := &unstructured.Unstructured{Object: obj}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u
}

// selects reports whether svc selects exactly what a version Service of t
// for version would.
func selects(svc *corev1.Service, t *target, label, version string) bool {
	want := maps.Clone(t.Selector)
	want[label] = version
	return maps.Equal(svc.Spec.Selector, want)
}

// backendPort is the port new backendRefs use: the one the rule already
// names, else the Service's HTTP port (its only port, or the first whose
// name or appProtocol says HTTP or gRPC, else its first).
func backendPort(t *target, r map[string]any) any {
	if r != nil {
		refs, _, _ := unstructured.NestedSlice(r, "backendRefs")
		for _, ref := range refs {
			if m, ok := ref.(map[string]any); ok && m["port"] != nil && t.isBackend(serviceRef(m, t.Namespace, "Service")) {
				return m["port"]
			}
		}
	}
	if len(t.Ports) == 0 {
		return nil
	}
	for _, p := range t.Ports {
		ap := ""
		if p.AppProtocol != nil {
			ap = *p.AppProtocol
		}
		for _, s := range []string{p.Name, ap} {
			if strings.HasPrefix(s, "http") || strings.HasPrefix(s, "grpc") || strings.Contains(s, "h2c") {
				return int64(p.Port)
			}
		}
	}
	return int64(t.Ports[0].Port)
}

// firstBackendRef is the rule's first backendRef (nil for none): the one
// new refs copy their port and backend filters from.
func firstBackendRef(r map[string]any) map[string]any {
	refs, _, _ := unstructured.NestedSlice(r, "backendRefs")
	if len(refs) == 0 {
		return nil
	}
	m, _ := refs[0].(map[string]any)
	return m
}

// backendRef points at a version Service, keeping the fields (port,
// backend filters) of the ref it replaces.
func backendRef(like map[string]any, name string, port any, weight int) map[string]any {
	out := map[string]any{}
	for k, v := range like {
		if k != "weight" && k != "name" && k != "namespace" {
			out[k] = runtime.DeepCopyJSONValue(v)
		}
	}
	out["name"] = name
	if port != nil {
		out["port"] = port
	}
	if weight >= 0 {
		out["weight"] = int64(weight)
	}
	return out
}

// isMirrorOf reports a RequestMirror filter whose backend is one of names.
func isMirrorOf(f any, ns string, names ...string) bool {
	m, ok := f.(map[string]any)
	if !ok || m["type"] != "RequestMirror" {
		return false
	}
	ref, _, _ := unstructured.NestedMap(m, "requestMirror", "backendRef")
	return slices.Contains(names, serviceRef(ref, ns, "Service"))
}

// applyGatewayRouting rewrites the backendRefs of rule i of hr (a new rule
// when i < 0) for rt, where Stable and Canary are version Service names,
// and the header rule before every other rule. It returns the rule's name
// as shown to people.
func applyGatewayRouting(hr *unstructured.Unstructured, i int, port any, rt routing) string {
	ns := hr.GetNamespace()
	rs := hrRules(hr)
	if j := slices.IndexFunc(rs, func(r map[string]any) bool { return r["name"] == headerRoute }); j >= 0 {
		rs = slices.Delete(rs, j, j+1)
		if i > j {
			i--
		}
	}
	if i < 0 {
		rs = append(rs, map[string]any{})
		i = len(rs) - 1
	}
	primary := rs[i]
	like := firstBackendRef(primary)
	switch {
	case rt.Weight < 0:
		primary["backendRefs"] = []any{backendRef(like, rt.Stable, port, -1)}
	case rt.Weight > 100:
		primary["backendRefs"] = []any{backendRef(like, rt.Canary, port, -1)}
	default:
		primary["backendRefs"] = []any{backendRef(like, rt.Stable, port, 100-rt.Weight), backendRef(like, rt.Canary, port, rt.Weight)}
	}
	filters, _, _ := unstructured.NestedSlice(primary, "filters")
	filters = slices.DeleteFunc(filters, func(f any) bool { return isMirrorOf(f, ns, rt.Stable, rt.Canary) })
	if rt.Mirror > 0 {
		mb := map[string]any{"name": rt.Canary}
		if port != nil {
			mb["port"] = port
		}
		filters = append(filters, map[string]any{"type": "RequestMirror",
			"requestMirror": map[string]any{"backendRef": mb, "percent": int64(rt.Mirror)}})
	}
	if len(filters) > 0 {
		primary["filters"] = filters
	} else {
		delete(primary, "filters")
	}
	name := hrRuleName(primary, i)
	if rt.HeaderName != "" {
		rs = slices.Insert(rs, 0, headerRule(primary, ns, port, rt))
	}
	setHRRules(hr, rs)
	return name
}

// headerRule sends requests with the header to the canary: the primary
// rule's matches, each with the header added (so it wins by the Gateway
// API's precedence, more header matches first, not only by order), its
// filters but a mirror, and its timeouts.
func headerRule(primary map[string]any, ns string, port any, rt routing) map[string]any {
	header := map[string]any{"type": "Exact", "name": rt.HeaderName, "value": rt.HeaderIs}
	matches, _, _ := unstructured.NestedSlice(primary, "matches")
	if len(matches) == 0 {
		matches = []any{map[string]any{}}
	}
	for k, m := range matches {
		mm, _ := runtime.DeepCopyJSONValue(m).(map[string]any)
		hs, _, _ := unstructured.NestedSlice(mm, "headers")
		mm["headers"] = append(hs, header)
		matches[k] = mm
	}
	hr := map[string]any{
		"name":        headerRoute,
		"matches":     matches,
		"backendRefs": []any{backendRef(firstBackendRef(primary), rt.Canary, port, -1)},
	}
	filters, _, _ := unstructured.NestedSlice(primary, "filters")
	filters = slices.DeleteFunc(filters, func(f any) bool { m, _ := f.(map[string]any); return m["type"] == "RequestMirror" })
	if len(filters) > 0 {
		hr["filters"] = filters
	}
	if t, ok := primary["timeouts"]; ok {
		hr["timeouts"] = runtime.DeepCopyJSONValue(t)
	}
	return hr
}

// referencedServices lists the Services any rule of hr sends or mirrors to.
func referencedServices(hr *unstructured.Unstructured) []string {
	ns := hr.GetNamespace()
	var out []string
	for _, r := range hrRules(hr) {
		out = append(out, backendNames(r, ns)...)
		filters, _, _ := unstructured.NestedSlice(r, "filters")
		for _, f := range filters {
			ref, _, _ := unstructured.NestedMap(f.(map[string]any), "requestMirror", "backendRef")
			if n := serviceRef(ref, ns, "Service"); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}
