package resilience

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	lint "github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Check IDs, for --accept.
const (
	CheckInconclusive = "RESILIENCE-INCONCLUSIVE"
	CheckBelowP50     = "RESILIENCE-TIMEOUT-BELOW-P50"
	CheckPoolTooSmall = "RESILIENCE-POOL-BELOW-CONCURRENCY"
	CheckKept         = "RESILIENCE-KEPT"
	docTimeouts       = "https://istio.io/latest/docs/concepts/traffic-management/#timeouts"
	docCircuit        = "https://istio.io/latest/docs/tasks/traffic-management/circuit-breaking/"
	readsSuffix       = "-reads"
)

// Plan implements pipeline.Workflow.
func (o *Options) Plan(_ context.Context, c *cli.Context) (*pipeline.Plan, error) {
	cl, err := c.Clients()
	if err != nil {
		return nil, err
	}
	return o.plan(cl.Dynamic), nil
}

func (o *Options) plan(dyn dynamic.Interface) *pipeline.Plan {
	vs, keptVS := o.mergeRoutes()
	dr, keptDR := o.mergePolicy()
	plan := &pipeline.Plan{Title: fmt.Sprintf("resilience %s/%s", o.Namespace, o.Service)}
	// The DestinationRule first: the routes never point at settings that do not exist.
	plan.Phases = []pipeline.Phase{
		{Name: "circuit breaking", Changes: []pipeline.Change{{Op: pipeline.Apply, Object: dr, Partial: o.dr != nil}}},
		{Name: "timeouts and retries", Changes: []pipeline.Change{{Op: pipeline.Apply, Object: vs, Partial: o.vs != nil}}},
	}
	plan.Checks = o.checks(append(keptVS, keptDR...))
	plan.Report = o.report
	plan.Verify = []pipeline.VerifyStep{o.verify(dyn)}
	return plan
}

func (o *Options) checks(kept []string) []pipeline.Check {
	var out []pipeline.Check
	l, s := o.observed, o.set
	byFlags := o.flags != nil && o.flags.Changed("timeout") && o.flags.Changed("per-try-timeout")
	if (!l.HasLatency || l.Requests < float64(o.MinRequests)) && !byFlags {
		var empty []string
		for _, k := range []string{"p50", "p99", "p999", "requests"} {
			empty = append(empty, telemetry.LatencyQueries(o.Namespace, o.Service, o.window)[k])
		}
		out = append(out, pipeline.Check{
			ID: CheckInconclusive, Severity: pipeline.Error,
			Message: fmt.Sprintf("inconclusive: %.0f requests to %s over the last %s (fewer than --min-requests %d, or no latency histogram) in Prometheus (%s); these queries gave no usable answer: %s", l.Requests, o.Service, o.Window, o.MinRequests, o.where, strings.Join(empty, " ; ")),
			Hint:    "check that Prometheus scrapes the sidecars, widen --window, or give the values yourself (--timeout and --per-try-timeout at least)",
			URL:     docTimeouts,
		})
	}
	if l.HasLatency && s.Timeout < time.Duration(l.P50*float64(time.Millisecond)) {
		out = append(out, pipeline.Check{
			ID: CheckBelowP50, Severity: pipeline.Error,
			Message: fmt.Sprintf("the route timeout %s is below the observed median latency %s: most requests would time out", s.Timeout, time.Duration(l.P50*float64(time.Millisecond)).Round(time.Millisecond)),
			Hint:    "raise --timeout, or accept with --accept " + CheckBelowP50,
			URL:     docTimeouts,
		})
	}
	if o.dr != nil && !o.Override {
		c := l.Concurrency()
		maxConn := number(o.dr.Object, "spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections")
		if maxConn > 0 && float64(maxConn) < c {
			out = append(out, pipeline.Check{
				ID: CheckPoolTooSmall, Severity: pipeline.Warning, Objects: []string{pipeline.Ref(o.dr)},
				Message: fmt.Sprintf("connectionPool.tcp.maxConnections %d is below the observed concurrency %.1f: requests queue or fail with 503 (overflow)", maxConn, c),
				Hint:    "raise it, or let this plan set it with --override", URL: docCircuit,
			})
		}
	}
	if len(kept) > 0 {
		out = append(out, pipeline.Check{
			ID: CheckKept, Severity: pipeline.Info, Objects: kept,
			Message: "fields the team already set are kept (--override replaces them)",
		})
	}
	return out
}

// mergeRoutes returns the VirtualService with the read/write split on every
// route that sends traffic to the Service only: the team's one (other
// routes, their order and settings kept), or a new one.
func (o *Options) mergeRoutes() (*unstructured.Unstructured, []string) {
	host := o.Service
	fqdn := lint.FQDN(host, o.Namespace)
	var vs *unstructured.Unstructured
	if o.vs != nil {
		vs = o.vs.DeepCopy()
		stripServerFields(vs)
	} else {
		vs = &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"hosts": []any{host},
			"http":  []any{map[string]any{"name": host, "route": []any{map[string]any{"destination": map[string]any{"host": host}}}}},
		}}}
		vs.SetAPIVersion("networking.istio.io/v1")
		vs.SetKind("VirtualService")
		vs.SetNamespace(o.Namespace)
		vs.SetName(host)
	}
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	var out []any
	var kept []string
	s := o.set
	for i := 0; i < len(routes); i++ {
		r, _ := routes[i].(map[string]any)
		if !onlyTo(r, fqdn, o.Namespace) || strings.HasSuffix(name(r), readsSuffix) {
			if !strings.HasSuffix(name(r), readsSuffix) {
				out = append(out, r)
			}
			continue
		}
		if hasMethodMatch(r) {
			out = append(out, r) // the team already splits by method: leave it alone
			kept = append(kept, fmt.Sprintf("%s route %s matches on method: not split", pipeline.Ref(vs), label(r, i)))
			continue
		}
		reads := runtime.DeepCopyJSON(r)
		reads["name"] = label(r, i) + readsSuffix
		matches, _, _ := unstructured.NestedSlice(r, "match")
		if len(matches) == 0 {
			matches = []any{map[string]any{}}
		}
		var rm []any
		for _, m := range matches {
			mm := runtime.DeepCopyJSON(m.(map[string]any))
			mm["method"] = map[string]any{"regex": "^(GET|HEAD)$"}
			rm = append(rm, mm)
		}
		reads["match"] = rm
		setIf(reads, "timeout", s.Timeout.String(), o.Override, nil)
		reads["retries"] = map[string]any{"attempts": int64(s.Attempts), "perTryTimeout": s.PerTryTimeout.String(), "retryOn": s.RetryOn}
		// The team's own retries stay (the lint says if they are unsafe);
		// attempts: 0 is this workflow's mark on the write route, not theirs.
		if rt, ok := r["retries"].(map[string]any); ok && !o.Override && !noRetries(rt) {
			reads["retries"] = rt
			kept = append(kept, fmt.Sprintf("%s route %s: retries", pipeline.Ref(vs), label(r, i)))
		}
		writes := runtime.DeepCopyJSON(r)
		setIf(writes, "timeout", s.Timeout.String(), o.Override, nil)
		if rt, ok := r["retries"].(map[string]any); !ok || o.Override || noRetries(rt) {
			writes["retries"] = map[string]any{"attempts": int64(0)}
		}
		out = append(out, reads, writes)
	}
	_ = unstructured.SetNestedSlice(vs.Object, out, "spec", "http")
	return vs, kept
}

// mergePolicy returns the DestinationRule with outlierDetection and
// connectionPool on its trafficPolicy: subsets, TLS and load balancing kept.
func (o *Options) mergePolicy() (*unstructured.Unstructured, []string) {
	var dr *unstructured.Unstructured
	if o.dr != nil {
		dr = o.dr.DeepCopy()
		stripServerFields(dr)
	} else {
		dr = &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"host": o.Service}}}
		dr.SetAPIVersion("networking.istio.io/v1")
		dr.SetKind("DestinationRule")
		dr.SetNamespace(o.Namespace)
		dr.SetName(o.Service)
	}
	tp, _, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy")
	if tp == nil {
		tp = map[string]any{}
	}
	var kept []string
	s := o.set
	if s.Outlier {
		setIf(tp, "outlierDetection", map[string]any{
			"consecutive5xxErrors": int64(s.Consecutive5xx), "interval": s.Interval.String(),
			"baseEjectionTime": s.BaseEjectionTime.String(), "maxEjectionPercent": int64(s.MaxEjectionPercent),
		}, o.Override, &kept)
	}
	setIf(tp, "connectionPool", map[string]any{
		"tcp":  map[string]any{"maxConnections": int64(s.MaxConnections)},
		"http": map[string]any{"http1MaxPendingRequests": int64(s.MaxPending)},
	}, o.Override, &kept)
	for i := range kept {
		kept[i] = pipeline.Ref(dr) + ": " + kept[i]
	}
	_ = unstructured.SetNestedMap(dr.Object, tp, "spec", "trafficPolicy")
	return dr, kept
}

// setIf sets m[key] unless the team set it (and override is off).
func setIf(m map[string]any, key string, v any, override bool, kept *[]string) {
	if _, ok := m[key]; ok && !override {
		if kept != nil {
			*kept = append(*kept, key)
		}
		return
	}
	m[key] = v
}

func stripServerFields(u *unstructured.Unstructured) {
	unstructured.RemoveNestedField(u.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
}

func name(r map[string]any) string { s, _ := r["name"].(string); return s }

func label(r map[string]any, i int) string {
	if n := name(r); n != "" {
		return n
	}
	return fmt.Sprintf("route-%d", i+1)
}

// onlyTo reports whether every destination of the route is the Service.
func onlyTo(r map[string]any, fqdn, ns string) bool {
	dests, _, _ := unstructured.NestedSlice(r, "route")
	if len(dests) == 0 {
		return false
	}
	for _, d := range dests {
		h, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
		if lint.FQDN(h, ns) != fqdn {
			return false
		}
	}
	return true
}

// number reads an integer field decoded as int64 (the API) or float64 (YAML).
func number(obj map[string]any, fields ...string) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

func noRetries(rt map[string]any) bool {
	a, ok, _ := unstructured.NestedInt64(rt, "attempts")
	return len(rt) == 1 && ok && a == 0
}

func hasMethodMatch(r map[string]any) bool {
	matches, _, _ := unstructured.NestedSlice(r, "match")
	for _, m := range matches {
		if _, ok := m.(map[string]any)["method"]; ok {
			return true
		}
	}
	return false
}

func (o *Options) printObserved(w io.Writer) {
	l := o.observed
	fmt.Fprintf(w, "Observed for %s/%s over the last %s (Prometheus: %s): %.0f requests (%.1f/s), %.2f%% 5xx, %d pod(s)", o.Namespace, o.Service, o.Window, o.where, l.Requests, l.RPS(), 100*l.Errors/max(l.Requests, 1), o.pods)
	if l.HasLatency {
		ms := func(v float64) time.Duration {
			return time.Duration(v * float64(time.Millisecond)).Round(time.Millisecond)
		}
		fmt.Fprintf(w, "; latency p50 %s, p99 %s, p99.9 %s; concurrency %.1f", ms(l.P50), ms(l.P99), ms(l.P999), l.Concurrency())
	}
	fmt.Fprintln(w)
}

func (o *Options) report(w io.Writer) {
	if !o.shown {
		o.printObserved(w)
	}
	s := o.set
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tWHY")
	rows := [][3]string{
		{"route timeout", s.Timeout.String(), s.Why["timeout"]},
		{"retries of reads (GET, HEAD)", fmt.Sprintf("%d × %s on %s", s.Attempts, s.PerTryTimeout, s.RetryOn), s.Why["attempts"] + "; per try: " + s.Why["per-try-timeout"]},
		{"retries of writes", "0", "a retried write can be applied twice (Istio retries by default)"},
	}
	if s.Outlier {
		rows = append(rows, [3]string{"outlier detection", fmt.Sprintf("%d × 5xx, every %s, ejected ≥ %s, at most %d%%", s.Consecutive5xx, s.Interval, s.BaseEjectionTime, s.MaxEjectionPercent), s.Why["consecutive-5xx"] + "; " + s.Why["max-ejection-percent"]})
	} else {
		rows = append(rows, [3]string{"outlier detection", "none", s.Why["max-ejection-percent"]})
	}
	rows = append(rows, [3]string{"connection pool", fmt.Sprintf("%d connections, %d pending", s.MaxConnections, s.MaxPending), s.Why["max-connections"]})
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	_ = tw.Flush()
}

// verify re-reads both objects: the read route retries, the write route does not.
func (o *Options) verify(dyn dynamic.Interface) pipeline.VerifyStep {
	return pipeline.VerifyStep{
		Name:    "routes and circuit breaking",
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, progress pipeline.Progress) error {
			vs, err := dyn.Resource(mesh.VirtualServices).Namespace(o.Namespace).Get(ctx, o.vsName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
			reads := 0
			for _, r := range routes {
				if strings.HasSuffix(name(r.(map[string]any)), readsSuffix) {
					reads++
				}
			}
			if reads == 0 {
				return fmt.Errorf("VirtualService %s/%s has no read route after the apply: it changed meanwhile", o.Namespace, vs.GetName())
			}
			progress("%d read route(s) retry, the write routes do not", reads)
			return nil
		},
	}
}

func (o *Options) vsName() string {
	if o.vs != nil {
		return o.vs.GetName()
	}
	return o.Service
}
