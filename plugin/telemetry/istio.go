package telemetry

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Flow is traffic from one source workload to one destination workload,
// as the destination's proxy reported it.
type Flow struct {
	Source, SourceNamespace string // "unknown" when the caller has no sidecar
	Dest, DestNamespace     string
	// MutualTLS is false when the destination accepted plaintext.
	MutualTLS   bool
	Requests    float64 // HTTP/gRPC requests (istio_requests_total)
	Connections float64 // TCP connections opened (istio_tcp_connections_opened_total)
}

// SourceRef names the caller.
func (f Flow) SourceRef() string {
	if f.Source == "" || f.Source == "unknown" {
		return "unknown caller without a sidecar"
	}
	return f.SourceNamespace + "/" + f.Source
}

// Flows returns the destination-reported traffic into namespaces over
// window, split by source, destination and whether it used mutual TLS.
// Destination-reported series are the only ones that know whether the
// server accepted plaintext (connection_security_policy).
func (p *Prometheus) Flows(ctx context.Context, namespaces []string, window time.Duration, at time.Time) ([]Flow, error) {
	byKey := map[string]*Flow{}
	for _, metric := range []string{"istio_requests_total", "istio_tcp_connections_opened_total"} {
		vec, err := p.Query(ctx, flowQuery(metric, namespaces, window), at)
		if err != nil {
			return nil, err
		}
		for _, s := range vec {
			f := Flow{
				Source:          string(s.Metric["source_workload"]),
				SourceNamespace: string(s.Metric["source_workload_namespace"]),
				Dest:            string(s.Metric["destination_workload"]),
				DestNamespace:   string(s.Metric["destination_workload_namespace"]),
				MutualTLS:       s.Metric["connection_security_policy"] == "mutual_tls",
			}
			key := fmt.Sprintf("%s/%s>%s/%s/%v", f.SourceNamespace, f.Source, f.DestNamespace, f.Dest, f.MutualTLS)
			if byKey[key] == nil {
				byKey[key] = &f
			}
			if metric == "istio_requests_total" {
				byKey[key].Requests += float64(s.Value)
			} else {
				byKey[key].Connections += float64(s.Value)
			}
		}
	}
	out := make([]Flow, 0, len(byKey))
	for _, f := range byKey {
		if f.Requests > 0 || f.Connections > 0 {
			out = append(out, *f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.DestNamespace+"/"+a.Dest+"<"+a.SourceRef() < b.DestNamespace+"/"+b.Dest+"<"+b.SourceRef()
	})
	return out, nil
}

func flowQuery(metric string, namespaces []string, window time.Duration) string {
	return fmt.Sprintf(`sum by (source_workload, source_workload_namespace, destination_workload, destination_workload_namespace, connection_security_policy) (increase(%s{reporter="destination", destination_workload_namespace=~"%s"}[%s]))`,
		metric, strings.Join(namespaces, "|"), model.Duration(window))
}

// Health is one workload version's traffic over a window, as the
// destination reported it.
type Health struct {
	Requests, Errors float64 // all requests, and those answered 5xx
	P99              float64 // milliseconds; valid when HasLatency
	HasLatency       bool
}

// Health reads the request count, 5xx count and p99 latency of one version
// of a Service (destination_version is the pod's version label), reported
// under any of the Service names given (a Gateway API canary's requests
// carry the name of the per-version Service they were sent to).
func (p *Prometheus) Health(ctx context.Context, ns string, services []string, version string, window time.Duration, at time.Time) (Health, error) {
	quoted := make([]string, len(services))
	for i, s := range services {
		quoted[i] = regexp.QuoteMeta(s)
	}
	sel := fmt.Sprintf(`reporter="destination", destination_service_namespace=%q, destination_service_name=~%q, destination_version=%q`, ns, strings.Join(quoted, "|"), version)
	w := model.Duration(window).String()
	var h Health
	for _, q := range []struct {
		query string
		into  *float64
		ok    *bool
	}{
		{fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, sel, w), &h.Requests, nil},
		{fmt.Sprintf(`sum(increase(istio_requests_total{%s, response_code=~"5.."}[%s]))`, sel, w), &h.Errors, nil},
		{fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`, sel, w), &h.P99, &h.HasLatency},
	} {
		vec, err := p.Query(ctx, q.query, at)
		if err != nil {
			return Health{}, err
		}
		if len(vec) > 0 {
			v := float64(vec[0].Value)
			if v == v { // NaN: no samples in the window
				*q.into = v
				if q.ok != nil {
					*q.ok = true
				}
			}
		}
	}
	return h, nil
}
