package telemetry

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Edge is traffic from one caller identity into one workload, as the
// destination's proxy reported it: what an AuthorizationPolicy decides on.
type Edge struct {
	// Principal is the caller's mTLS identity as a policy names it
	// (cluster.local/ns/NS/sa/SA), "" when the destination saw plaintext
	// (Istio reports "unknown").
	Principal               string
	Source, SourceNamespace string // the caller's workload, "unknown" without a sidecar
	Dest                    string // the destination workload
	Protocol                string // request_protocol: http, grpc, tcp
	Requests                float64
}

// Caller names the source for reports: its workload and identity.
func (e Edge) Caller() string {
	who := e.SourceNamespace + "/" + e.Source
	if e.Source == "" || e.Source == "unknown" {
		who = "unknown workload"
	}
	if e.Principal == "" {
		return who + " (plaintext, no identity)"
	}
	return who + " (" + e.Principal + ")"
}

// EdgeQueries are the queries Edges runs, for naming an empty one.
func EdgeQueries(ns string, window time.Duration) []string {
	var out []string
	for _, metric := range []string{"istio_requests_total", "istio_tcp_connections_opened_total"} {
		out = append(out, fmt.Sprintf(`sum by (source_principal, source_workload, source_workload_namespace, destination_workload, request_protocol) (increase(%s{reporter="destination", destination_workload_namespace=%q}[%s]))`,
			metric, ns, model.Duration(window)))
	}
	return out
}

// Edges returns the destination-reported requests and TCP connections
// into ns's workloads over window, by caller identity.
func (p *Prometheus) Edges(ctx context.Context, ns string, window time.Duration, at time.Time) ([]Edge, error) {
	byKey := map[string]*Edge{}
	for i, q := range EdgeQueries(ns, window) {
		vec, err := p.Query(ctx, q, at)
		if err != nil {
			return nil, err
		}
		for _, s := range vec {
			e := Edge{
				Principal:       string(s.Metric["source_principal"]),
				Source:          string(s.Metric["source_workload"]),
				SourceNamespace: string(s.Metric["source_workload_namespace"]),
				Dest:            string(s.Metric["destination_workload"]),
				Protocol:        string(s.Metric["request_protocol"]),
			}
			// Istio reports the SPIFFE URI (spiffe://cluster.local/ns/…);
			// AuthorizationPolicy principals are written without the scheme,
			// which istiod adds back: one left in would match nothing.
			e.Principal = strings.TrimPrefix(e.Principal, "spiffe://")
			if e.Principal == "unknown" {
				e.Principal = ""
			}
			if e.Protocol == "" && i == 1 {
				e.Protocol = "tcp"
			}
			key := e.Principal + "|" + e.SourceNamespace + "/" + e.Source + ">" + e.Dest + "|" + e.Protocol
			if byKey[key] == nil {
				byKey[key] = &e
			}
			byKey[key].Requests += float64(s.Value)
		}
	}
	out := make([]Edge, 0, len(byKey))
	for _, e := range byKey {
		if e.Requests > 0 {
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Dest != b.Dest {
			return a.Dest < b.Dest
		}
		return a.Caller()+a.Protocol < b.Caller()+b.Protocol
	})
	return out, nil
}

// CoverageQuery asks whether Prometheus holds Istio traffic into ns from
// the start of the window: without it the window is longer than the data.
func CoverageQuery(ns string, window time.Duration) string {
	return fmt.Sprintf(`count(last_over_time(istio_requests_total{reporter="destination", destination_workload_namespace=%q}[15m] offset %s)) or count(last_over_time(istio_tcp_connections_opened_total{reporter="destination", destination_workload_namespace=%q}[15m] offset %s))`,
		ns, model.Duration(window), ns, model.Duration(window))
}

// Covers reports whether Prometheus's Istio data for ns reaches back over
// the whole window.
func (p *Prometheus) Covers(ctx context.Context, ns string, window time.Duration, at time.Time) (bool, error) {
	vec, err := p.Query(ctx, CoverageQuery(ns, window), at)
	return len(vec) > 0, err
}

// ShadowDeniedQuery counts requests Envoy's shadow (dry-run) RBAC rules
// would have denied in ns, per pod.
func ShadowDeniedQuery(ns string, window time.Duration) string {
	return fmt.Sprintf(`sum by (pod) (increase({__name__=~"envoy_http_inbound_.*_rbac_shadow_denied", namespace=%q}[%s]))`, ns, model.Duration(window))
}

// ShadowDenied returns, per pod, the requests the dry-run policies would
// have denied over window; nil when the proxies export no shadow metrics.
func (p *Prometheus) ShadowDenied(ctx context.Context, ns string, window time.Duration, at time.Time) (map[string]float64, error) {
	vec, err := p.Query(ctx, ShadowDeniedQuery(ns, window), at)
	if err != nil || len(vec) == 0 {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric["pod"])] += float64(s.Value)
	}
	return out, nil
}
