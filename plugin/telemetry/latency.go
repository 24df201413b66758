package telemetry

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/common/model"
)

// Latency is one Service's traffic over a window, destination-reported.
type Latency struct {
	P50, P99, P999 float64 // milliseconds; valid when HasLatency
	HasLatency     bool
	MeanMs         float64
	Requests       float64
	Errors         float64 // answered 5xx
	Window         time.Duration
}

// RPS is requests per second over the window.
func (l Latency) RPS() float64 { return l.Requests / l.Window.Seconds() }

// Concurrency is the mean number of requests in flight (Little's law).
func (l Latency) Concurrency() float64 { return l.RPS() * l.MeanMs / 1000 }

// LatencyQueries are the queries Latency runs, for naming an empty one.
func LatencyQueries(ns, service string, window time.Duration) map[string]string {
	sel := fmt.Sprintf(`reporter="destination", destination_service_namespace=%q, destination_service_name=%q`, ns, service)
	w := model.Duration(window).String()
	q := func(quantile string) string {
		return fmt.Sprintf(`histogram_quantile(%s, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`, quantile, sel, w)
	}
	return map[string]string{
		"p50": q("0.5"), "p99": q("0.99"), "p999": q("0.999"),
		"sum":      fmt.Sprintf(`sum(increase(istio_request_duration_milliseconds_sum{%s}[%s]))`, sel, w),
		"count":    fmt.Sprintf(`sum(increase(istio_request_duration_milliseconds_count{%s}[%s]))`, sel, w),
		"requests": fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, sel, w),
		"errors":   fmt.Sprintf(`sum(increase(istio_requests_total{%s, response_code=~"5.."}[%s]))`, sel, w),
	}
}

// Latency reads a Service's latency percentiles, mean, request and error counts.
func (p *Prometheus) Latency(ctx context.Context, ns, service string, window time.Duration, at time.Time) (Latency, error) {
	l := Latency{Window: window}
	vals := map[string]float64{}
	for key, q := range LatencyQueries(ns, service, window) {
		v, ok, err := p.Scalar(ctx, q, at)
		if err != nil {
			return Latency{}, err
		}
		if ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			vals[key] = v
		}
	}
	p50, ok50 := vals["p50"]
	p99, ok99 := vals["p99"]
	p999, ok999 := vals["p999"]
	l.HasLatency = ok50 && ok99 && ok999
	l.P50, l.P99, l.P999 = p50, p99, p999
	if vals["count"] > 0 {
		l.MeanMs = vals["sum"] / vals["count"]
	}
	l.Requests, l.Errors = vals["requests"], vals["errors"]
	return l, nil
}
