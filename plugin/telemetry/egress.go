package telemetry

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Exit is outbound traffic of one source workload that left through the
// passthrough path (no ServiceEntry) or was dropped by the black hole
// (REGISTRY_ONLY already), as the source's proxy reported it.
type Exit struct {
	Source, SourceNamespace string
	// Host is the HTTP Host header or the TLS SNI; "" when only TCP is known.
	Host     string
	Port     uint32 // from the Host header, 443 for TLS, 0 when unknown
	Protocol string // HTTP, TLS or TCP
	IP       string // the destination address when the mesh recorded one instead of a host
	Blocked  bool   // BlackHoleCluster: already refused
	Count    float64
}

// Evidence says how much the record says about the destination.
func (e Exit) Evidence() string {
	switch {
	case e.Protocol == "HTTP" && e.Host != "":
		return "HTTP Host header"
	case e.Protocol == "TLS" && e.Host != "":
		return "TLS SNI (port 443 assumed)"
	case e.IP != "":
		return "TCP, IP only: low confidence"
	default:
		return "TCP, no host: unknown destination"
	}
}

// Dest is "host:port/PROTOCOL", or what is known of it.
func (e Exit) Dest() string {
	h := e.Host
	if h == "" {
		h = e.IP
	}
	if h == "" {
		h = "?"
	}
	p := "?"
	if e.Port != 0 {
		p = strconv.Itoa(int(e.Port))
	}
	return h + ":" + p + "/" + e.Protocol
}

// Ref names the source workload.
func (e Exit) Ref() string { return e.SourceNamespace + "/" + e.Source }

// ExitQueries are the queries Exits runs, for naming an empty one.
func ExitQueries(namespaces []string, window time.Duration) []string {
	sel := fmt.Sprintf(`reporter="source", destination_service_name=~"PassthroughCluster|BlackHoleCluster", source_workload_namespace=~%q`, strings.Join(namespaces, "|"))
	by := "source_workload, source_workload_namespace, destination_service, destination_service_name, requested_server_name"
	w := model.Duration(window)
	return []string{
		fmt.Sprintf(`sum by (%s) (increase(istio_requests_total{%s}[%s]))`, by, sel, w),
		fmt.Sprintf(`sum by (%s) (increase(istio_tcp_connections_opened_total{%s}[%s]))`, by, sel, w),
	}
}

// Exits returns the passthrough and black-hole traffic of the namespaces'
// workloads over window.
func (p *Prometheus) Exits(ctx context.Context, namespaces []string, window time.Duration, at time.Time) ([]Exit, error) {
	byKey := map[string]*Exit{}
	for i, q := range ExitQueries(namespaces, window) {
		vec, err := p.Query(ctx, q, at)
		if err != nil {
			return nil, err
		}
		for _, s := range vec {
			e := Exit{
				Source:          string(s.Metric["source_workload"]),
				SourceNamespace: string(s.Metric["source_workload_namespace"]),
				Blocked:         s.Metric["destination_service_name"] == "BlackHoleCluster",
			}
			svc := string(s.Metric["destination_service"])
			if svc == "PassthroughCluster" || svc == "BlackHoleCluster" || svc == "unknown" {
				svc = ""
			}
			if i == 0 {
				e.Protocol, e.Host, e.Port = "HTTP", svc, 80
				if h, port, err := net.SplitHostPort(svc); err == nil {
					if n, err := strconv.ParseUint(port, 10, 16); err == nil {
						e.Host, e.Port = h, uint32(n)
					}
				}
			} else if sni := string(s.Metric["requested_server_name"]); sni != "" && sni != "unknown" {
				e.Protocol, e.Host, e.Port = "TLS", sni, 443
			} else {
				e.Protocol = "TCP"
				if h, port, err := net.SplitHostPort(svc); err == nil && net.ParseIP(h) != nil {
					e.IP = h
					if n, err := strconv.ParseUint(port, 10, 16); err == nil {
						e.Port = uint32(n)
					}
				} else if net.ParseIP(svc) != nil {
					e.IP = svc
				}
			}
			key := fmt.Sprintf("%s|%s|%v", e.Ref(), e.Dest(), e.Blocked)
			if byKey[key] == nil {
				byKey[key] = &e
			}
			byKey[key].Count += float64(s.Value)
		}
	}
	out := make([]Exit, 0, len(byKey))
	for _, e := range byKey {
		if e.Count > 0 {
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Dest() != out[j].Dest() {
			return out[i].Dest() < out[j].Dest()
		}
		return out[i].Ref() < out[j].Ref()
	})
	return out, nil
}

// SourceTrafficQuery counts everything the namespaces' proxies reported
// as sources: zero means the mesh records nothing about them.
func SourceTrafficQuery(namespaces []string, window time.Duration) string {
	sel := fmt.Sprintf(`reporter="source", source_workload_namespace=~%q`, strings.Join(namespaces, "|"))
	w := model.Duration(window)
	return fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s])) + sum(increase(istio_tcp_connections_opened_total{%s}[%s])) or sum(increase(istio_requests_total{%s}[%s])) or sum(increase(istio_tcp_connections_opened_total{%s}[%s]))`, sel, w, sel, w, sel, w, sel, w)
}

// SourceCoverageQuery asks whether the source-reported data reaches back
// over the whole window.
func SourceCoverageQuery(namespaces []string, window time.Duration) string {
	sel := fmt.Sprintf(`reporter="source", source_workload_namespace=~%q`, strings.Join(namespaces, "|"))
	w := model.Duration(window)
	return fmt.Sprintf(`count(last_over_time(istio_requests_total{%s}[15m] offset %s)) or count(last_over_time(istio_tcp_connections_opened_total{%s}[15m] offset %s))`, sel, w, sel, w)
}

// Scalar runs a query and returns its single value, and whether there was one.
func (p *Prometheus) Scalar(ctx context.Context, q string, at time.Time) (float64, bool, error) {
	vec, err := p.Query(ctx, q, at)
	if err != nil || len(vec) == 0 {
		return 0, false, err
	}
	return float64(vec[0].Value), true, nil
}
