package resilience

import (
	"fmt"
	"math"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/telemetry"
)

// Settings are the values the plan writes; each comes from the evidence,
// a flag or an answer, with the reason for it.
type Settings struct {
	Timeout, PerTryTimeout time.Duration
	Attempts               int
	RetryOn                string
	// Outlier detection; Outlier false leaves it out (a single pod).
	Outlier            bool
	Consecutive5xx     int
	Interval           time.Duration
	BaseEjectionTime   time.Duration
	MaxEjectionPercent int
	MaxConnections     int
	MaxPending         int
	Why                map[string]string
}

// Istio's conditions under which a retry is safe for idempotent requests;
// 503 is retried only on the read route.
const retryOnReads = "connect-failure,refused-stream,unavailable,cancelled,503"

// Bounds of the proposed route timeout.
const (
	minTimeout = 250 * time.Millisecond
	maxTimeout = 30 * time.Second
)

// propose computes the settings from the observed traffic and pool size.
func propose(l telemetry.Latency, pods int) Settings {
	s := Settings{Why: map[string]string{}, RetryOn: retryOnReads, Attempts: 2,
		Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	s.Timeout = clamp(nice(ms(l.P999*2)), minTimeout, maxTimeout)
	exact := func(v float64) time.Duration { return ms(v).Round(time.Millisecond) }
	s.Why["timeout"] = fmt.Sprintf("p99.9 %s × 2, within [%s, %s]", exact(l.P999), minTimeout, maxTimeout)
	s.PerTryTimeout = nice(ms(l.P99 * 1.5))
	s.Why["per-try-timeout"] = fmt.Sprintf("p99 %s × 1.5", exact(l.P99))
	// The first try and every retry must fit in the route timeout.
	if budget := s.Timeout / time.Duration(s.Attempts+1); s.PerTryTimeout > budget {
		s.PerTryTimeout = budget.Truncate(10 * time.Millisecond)
		s.Why["per-try-timeout"] += fmt.Sprintf(", capped at timeout / %d tries", s.Attempts+1)
	}
	if s.PerTryTimeout < 10*time.Millisecond {
		s.PerTryTimeout = 10 * time.Millisecond
	}
	s.Why["interval"] = "Envoy's sweep every 10s"
	s.Why["base-ejection-time"] = "30s, doubling for a pod ejected again"
	s.Why["attempts"] = "2 retries of reads (GET, HEAD) on errors that mean the request did not reach a healthy pod; writes are never retried"
	errRate := 0.0
	if l.Requests > 0 {
		errRate = l.Errors / l.Requests
	}
	if errRate >= 0.05 {
		s.Consecutive5xx = 10
		s.Why["consecutive-5xx"] = fmt.Sprintf("observed 5xx rate %.1f%%: 10 in a row, well above the noise", errRate*100)
	} else {
		s.Why["consecutive-5xx"] = fmt.Sprintf("observed 5xx rate %.2f%%: 5 in a row is an unhealthy pod, not noise", errRate*100)
	}
	switch {
	case pods <= 1:
		s.Outlier = false
		s.Why["max-ejection-percent"] = "one pod: Envoy ejects at least one host whatever the percentage, which would leave none (outlier detection left out)"
	default:
		s.Outlier = true
		s.MaxEjectionPercent = min(50, 100*(pods-1)/pods)
		s.Why["max-ejection-percent"] = fmt.Sprintf("%d pods: at most %d%% ejected leaves a healthy endpoint", pods, s.MaxEjectionPercent)
	}
	c := l.Concurrency()
	s.MaxConnections = max(32, int(math.Ceil(c*4)))
	s.MaxPending = max(16, int(math.Ceil(c*2)))
	s.Why["max-connections"] = fmt.Sprintf("observed concurrency %.1f (%.1f req/s × mean %s) × 4, at least 32", c, l.RPS(), exact(l.MeanMs))
	s.Why["max-pending"] = fmt.Sprintf("observed concurrency %.1f × 2, at least 16", c)
	return s
}

// nice rounds a duration up to 10ms below 100ms, 50ms below 1s, 100ms above.
func nice(d time.Duration) time.Duration {
	step := 100 * time.Millisecond
	switch {
	case d < 100*time.Millisecond:
		step = 10 * time.Millisecond
	case d < time.Second:
		step = 50 * time.Millisecond
	}
	if r := d % step; r != 0 {
		d += step - r
	}
	return d
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}
