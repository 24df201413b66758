// Package resilience lints the settings outages come from — timeouts,
// retries, outlier detection, connection pools — in VirtualServices and
// DestinationRules. Plans, kubectl mesh check and kubectl mesh analyze run
// it; the resilience workflow proposes settings that pass it.
package resilience

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Finding codes, for --accept and -S.
const (
	CodeBudget   = "KM0101" // attempts × perTryTimeout beyond the route timeout
	CodeWrites   = "KM0102" // retries on a route that carries writes
	CodeEjectAll = "KM0103" // outlier detection can eject every endpoint
	CodeHashLB   = "KM0104" // outlier detection under consistentHash without a locality setting
	CodeNoTimout = "KM0105" // an HTTP route without a timeout
	docURL       = "https://github.com/kubectl-mesh/kubectl-mesh/blob/main/docs/lint/resilience.md#"
)

// Finding is one lint result on one object.
type Finding struct {
	Code, Level           string // Level: Error, Warning or Info
	Kind, Namespace, Name string
	Message               string
}

// URL is the finding's documentation.
func (f Finding) URL() string { return docURL + strings.ToLower(f.Code) }

// Ref is "Kind namespace/name".
func (f Finding) Ref() string { return f.Kind + " " + f.Namespace + "/" + f.Name }

// Input is what the lint looks at.
type Input struct {
	VirtualServices, DestinationRules []*unstructured.Unstructured
	// Endpoints counts the pods behind a host (FQDN), where known.
	Endpoints map[string]int
	// MeshRetryOn is the mesh config's defaultHttpRetryPolicy.retryOn; ""
	// means Istio's built-in default, which retries 503s.
	MeshRetryOn string
}

// safeRetryOn are the conditions under which the request did not reach the
// application (or, for gRPC's unavailable and cancelled, was not handled by
// it), so a retry does not repeat a write.
var safeRetryOn = []string{"connect-failure", "refused-stream", "reset-before-request", "unavailable", "cancelled"}

// Lint runs every rule.
func Lint(in Input) []Finding {
	var out []Finding
	for _, vs := range in.VirtualServices {
		out = append(out, lintRoutes(vs, in.MeshRetryOn)...)
	}
	for _, dr := range in.DestinationRules {
		out = append(out, lintDestinationRule(dr, in.Endpoints)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref()+out[i].Code < out[j].Ref()+out[j].Code })
	return out
}

func finding(u *unstructured.Unstructured, code, level, format string, a ...any) Finding {
	return Finding{Code: code, Level: level, Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(), Message: fmt.Sprintf(format, a...)}
}

func lintRoutes(vs *unstructured.Unstructured, meshRetryOn string) []Finding {
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	var out []Finding
	var noTimeout []string
	for i, r := range routes {
		rm, _ := r.(map[string]any)
		name := routeLabel(rm, i)
		timeout, hasTimeout := duration(rm, "timeout")
		retries, hasRetries := rm["retries"].(map[string]any)
		attempts, perTry := int64(2), time.Duration(0) // Istio's default: 2 attempts
		retryOn := meshRetryOn
		if hasRetries {
			// A retries block without attempts disables retries: Istio
			// reads the missing count as 0 (and its JSON leaves a 0 out).
			attempts = 0
			if a, ok, _ := unstructured.NestedInt64(retries, "attempts"); ok {
				attempts = a
			} else if f, ok, _ := unstructured.NestedFloat64(retries, "attempts"); ok {
				attempts = int64(f)
			}
			perTry, _ = duration(retries, "perTryTimeout")
			if on, ok, _ := unstructured.NestedString(retries, "retryOn"); ok {
				retryOn = on
			}
		}
		if hasTimeout && timeout > 0 && perTry > 0 && attempts > 0 {
			switch {
			case perTry >= timeout:
				out = append(out, finding(vs, CodeBudget, "Error", "route %s: perTryTimeout %s is not shorter than the route timeout %s: no retry can ever happen, the first try already uses the whole budget", name, perTry, timeout))
			case time.Duration(attempts)*perTry > timeout:
				out = append(out, finding(vs, CodeBudget, "Error", "route %s: %d attempts × perTryTimeout %s = %s exceed the route timeout %s: the last attempts are cut off mid-flight", name, attempts, perTry, time.Duration(attempts)*perTry, timeout))
			}
		}
		if attempts > 0 && !readOnly(rm) && !onlySafe(retryOn) {
			what := fmt.Sprintf("retries (%d attempts on %q)", attempts, retryOn)
			if !hasRetries {
				what = "Istio's implicit default retries (2 attempts, including 503s)"
				if meshRetryOn != "" {
					what = fmt.Sprintf("the mesh's default retries (on %q)", meshRetryOn)
				}
			}
			out = append(out, finding(vs, CodeWrites, "Warning", "route %s carries writes (no GET/HEAD-only match) and has %s: a POST the application already processed can be sent again; retry reads only, and set retries.attempts: 0 on the write route", name, what))
		}
		if !hasTimeout && (rm["route"] != nil) {
			noTimeout = append(noTimeout, name)
		}
	}
	if len(noTimeout) > 0 {
		out = append(out, finding(vs, CodeNoTimout, "Info", "HTTP route(s) %s have no timeout: a slow backend holds callers until Envoy's stream idle timeout", strings.Join(noTimeout, ", ")))
	}
	return out
}

func routeLabel(r map[string]any, i int) string {
	if n, _ := r["name"].(string); n != "" {
		return fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf("#%d", i+1)
}

// readOnly reports whether every match of the route restricts the method
// to GET, HEAD or OPTIONS.
func readOnly(r map[string]any) bool {
	matches, _, _ := unstructured.NestedSlice(r, "match")
	if len(matches) == 0 {
		return false
	}
	for _, m := range matches {
		mm, _ := m.(map[string]any)
		method, _, _ := unstructured.NestedStringMap(mm, "method")
		if !readMethod(method) {
			return false
		}
	}
	return true
}

func readMethod(m map[string]string) bool {
	reads := []string{"GET", "HEAD", "OPTIONS"}
	if v, ok := m["exact"]; ok {
		return slices.Contains(reads, strings.ToUpper(v))
	}
	if v, ok := m["regex"]; ok {
		for _, alt := range strings.Split(strings.Trim(v, "^$()"), "|") {
			if !slices.Contains(reads, strings.ToUpper(alt)) {
				return false
			}
		}
		return v != ""
	}
	return false
}

func onlySafe(retryOn string) bool {
	if retryOn == "" {
		return false // Istio's default includes retriable-status-codes (503)
	}
	for _, c := range strings.Split(retryOn, ",") {
		if !slices.Contains(safeRetryOn, strings.TrimSpace(c)) {
			return false
		}
	}
	return true
}

func lintDestinationRule(dr *unstructured.Unstructured, endpoints map[string]int) []Finding {
	var out []Finding
	host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
	policies := map[string]map[string]any{}
	if tp, ok, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy"); ok {
		policies["trafficPolicy"] = tp
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for _, s := range subsets {
		sm, _ := s.(map[string]any)
		if tp, ok, _ := unstructured.NestedMap(sm, "trafficPolicy"); ok {
			policies[fmt.Sprintf("subset %v", sm["name"])] = tp
		}
	}
	where := make([]string, 0, len(policies))
	for w := range policies {
		where = append(where, w)
	}
	sort.Strings(where)
	for _, w := range where {
		tp := policies[w]
		od, hasOD, _ := unstructured.NestedMap(tp, "outlierDetection")
		if !hasOD {
			continue
		}
		pct := int64(0)
		if v, ok, _ := unstructured.NestedInt64(od, "maxEjectionPercent"); ok {
			pct = v
		} else if f, ok, _ := unstructured.NestedFloat64(od, "maxEjectionPercent"); ok {
			pct = int64(f)
		}
		if pct <= 0 {
			pct = 10 // Envoy's default: Istio passes on only a percentage above 0
		}
		if n, known := endpoints[FQDN(host, dr.GetNamespace())]; known && n > 0 {
			// Envoy ejects at least one host whatever the percentage.
			if ejectable := max(int64(1), int64(n)*pct/100); ejectable >= int64(n) {
				out = append(out, finding(dr, CodeEjectAll, "Warning", "%s: outlierDetection (maxEjectionPercent %d) can eject all %d endpoint(s) of %s: a bad minute leaves no backend (Envoy ejects at least one host whatever the percentage)", w, pct, n, host))
			}
		} else if pct >= 100 {
			out = append(out, finding(dr, CodeEjectAll, "Warning", "%s: outlierDetection with maxEjectionPercent %d can eject every endpoint of %s", w, pct, host))
		}
		_, hash, _ := unstructured.NestedMap(tp, "loadBalancer", "consistentHash")
		_, locality, _ := unstructured.NestedMap(tp, "loadBalancer", "localityLbSetting")
		if hash && !locality {
			out = append(out, finding(dr, CodeHashLB, "Warning", "%s: outlierDetection turns on locality-aware load balancing, which under consistentHash moves keys between localities (sessions lose affinity) — set loadBalancer.localityLbSetting explicitly (enabled: false to keep pure hashing)", w))
		}
	}
	return out
}

// duration reads a protobuf duration field ("1.5s", "250ms").
func duration(m map[string]any, key string) (time.Duration, bool) {
	s, ok := m[key].(string)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// FQDN is a VirtualService or DestinationRule host as a cluster name.
func FQDN(host, ns string) string {
	if strings.Contains(host, ".") {
		return host
	}
	return host + "." + ns + ".svc.cluster.local"
}

// MeshRetryOnYAML is defaultHttpRetryPolicy.retryOn of mesh config YAML.
func MeshRetryOnYAML(meshConfig string) string {
	var mc struct {
		DefaultHTTPRetryPolicy struct {
			RetryOn string `json:"retryOn"`
		} `json:"defaultHttpRetryPolicy"`
	}
	if yaml.Unmarshal([]byte(meshConfig), &mc) != nil {
		return ""
	}
	return mc.DefaultHTTPRetryPolicy.RetryOn
}

// MeshRetryOn reads the mesh config's defaultHttpRetryPolicy.retryOn from
// the istio ConfigMap (through r: the ConfigMaps of the Istio namespace
// Istio's analyzers read too); "" (Istio's built-in default) when there is
// none or it cannot be read.
func MeshRetryOn(ctx context.Context, r *reads.Reader, istioNamespace string) string {
	cm, err := reads.ConfigMap(ctx, r, istioNamespace, "istio")
	if err != nil || cm == nil {
		return ""
	}
	return MeshRetryOnYAML(cm.Data["mesh"])
}
