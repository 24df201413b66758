// Package telemetry reads Istio's standard metrics from Prometheus: given
// by URL, or found in the cluster and reached through the API server's
// service proxy (no port-forward, the user's own credentials).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Prometheus is a connected query client.
type Prometheus struct {
	api promv1.API
	// Where says which Prometheus answered, for reports and errors.
	Where string
}

// ParseWindow reads a Prometheus duration (7d, 24h, 90m).
func ParseWindow(flag, s string) (time.Duration, error) {
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid %s %q: use a Prometheus duration such as 7d, 24h or 90m", flag, s)
	}
	return time.Duration(d), nil
}

// ParseURL checks a --prometheus-url value.
func ParseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid --prometheus-url %q: use http(s)://host:port", s)
	}
	return nil
}

// Connect returns a client for the Prometheus at rawURL or, when rawURL is
// empty, for one found in the cluster (nil, nil when there is none). It
// checks that Prometheus answers before returning.
func Connect(ctx context.Context, cfg *rest.Config, rd *reads.Reader, rawURL, preferNamespace string) (*Prometheus, error) {
	conf := api.Config{Address: rawURL}
	where := rawURL
	if rawURL == "" {
		svc, port, err := Discover(ctx, rd, preferNamespace)
		if err != nil || svc == nil {
			return nil, err
		}
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			return nil, err
		}
		conf = api.Config{
			Address:      fmt.Sprintf("%s/api/v1/namespaces/%s/services/http:%s:%s/proxy", strings.TrimSuffix(cfg.Host, "/"), svc.Namespace, svc.Name, port),
			RoundTripper: rt,
		}
		where = fmt.Sprintf("service %s/%s:%s (through the API server)", svc.Namespace, svc.Name, port)
	}
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, exitcode.Usagef("invalid --prometheus-url %q: %v", rawURL, err)
	}
	p := &Prometheus{api: promv1.NewAPI(client), Where: where}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := p.api.Buildinfo(ctx); err != nil {
		return nil, exitcode.New(exitcode.Unavailable, fmt.Errorf("cannot reach Prometheus at %s: %s; check --prometheus-url, or pass --skip-telemetry to go on without traffic evidence", where, oneLine(err)))
	}
	return p, nil
}

// Discover finds a Prometheus Service: Istio's addon (prometheus), the
// Prometheus Operator's prometheus-operated, the community chart's
// prometheus-server, or anything labelled app.kubernetes.io/name=prometheus;
// preferNamespace (the Istio namespace) wins ties. One list call, or none
// when the command lists Services cluster-wide anyway.
func Discover(ctx context.Context, rd *reads.Reader, preferNamespace string) (*corev1.Service, string, error) {
	list, err := reads.List[*corev1.Service](ctx, rd, reads.Request{Resource: corev1.SchemeGroupVersion.WithResource("services")})
	if err != nil {
		return nil, "", fmt.Errorf("looking for a Prometheus service: %w", err)
	}
	var best *corev1.Service
	bestScore, bestPort := 0, ""
	for _, s := range list {
		score := 0
		switch {
		case s.Name == "prometheus":
			score = 4
		case s.Name == "prometheus-operated", s.Name == "prometheus-server":
			score = 3
		case s.Labels["app.kubernetes.io/name"] == "prometheus", s.Labels["app"] == "prometheus":
			score = 2
		}
		port := webPort(s)
		if score == 0 || port == "" {
			continue
		}
		score *= 2
		if s.Namespace == preferNamespace {
			score++
		}
		if score > bestScore {
			best, bestScore, bestPort = s, score, port
		}
	}
	return best, bestPort, nil
}

// webPort picks the Service port Prometheus' HTTP API is on.
func webPort(s *corev1.Service) string {
	for _, p := range s.Spec.Ports {
		if slices.Contains([]string{"http", "web", "http-web"}, p.Name) || p.Port == 9090 {
			return fmt.Sprint(p.Port)
		}
	}
	if len(s.Spec.Ports) == 1 {
		return fmt.Sprint(s.Spec.Ports[0].Port)
	}
	return ""
}

// Query runs an instant query that must return a vector.
func (p *Prometheus) Query(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, _, err := p.api.Query(ctx, q, at)
	if err != nil {
		var perr *promv1.Error
		if errors.As(err, &perr) && (perr.Type == promv1.ErrBadResponse || perr.Type == promv1.ErrBadData) {
			return nil, exitcode.New(exitcode.DataErr, fmt.Errorf("Prometheus at %s returned a malformed result: %s; is it a Prometheus query API?", p.Where, oneLine(err)))
		}
		return nil, exitcode.New(exitcode.Unavailable, fmt.Errorf("querying Prometheus at %s: %s", p.Where, oneLine(err)))
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, exitcode.New(exitcode.DataErr, fmt.Errorf("Prometheus at %s returned a %s where a vector was expected; is it a Prometheus query API?", p.Where, v.Type()))
	}
	return vec, nil
}

// oneLine keeps an error to one line of bounded length: HTTP bodies of
// whatever answered may be pages of HTML.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// ParseOptions checks the telemetry flags every evidence-gated workflow
// takes (--window, --prometheus-url) and returns the window.
func ParseOptions(window, rawURL string) (time.Duration, error) {
	w, err := ParseWindow("--window", window)
	if err != nil {
		return 0, err
	}
	if rawURL != "" {
		if err := ParseURL(rawURL); err != nil {
			return 0, err
		}
	}
	return w, nil
}

// ConnectWith is Connect with the context's clients; nil when there is no
// Prometheus.
func ConnectWith(ctx context.Context, c *cli.Context, rawURL, preferNamespace string) (*Prometheus, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	rd, err := c.Reads()
	if err != nil {
		return nil, err
	}
	return Connect(ctx, cfg, rd, rawURL, preferNamespace)
}

// Require is ConnectWith for a workflow that cannot go on without
// evidence: no Prometheus is an error saying what it was needed for.
func Require(ctx context.Context, c *cli.Context, rawURL, preferNamespace, purpose string) (*Prometheus, error) {
	prom, err := ConnectWith(ctx, c, rawURL, preferNamespace)
	if err == nil && prom == nil {
		err = exitcode.New(exitcode.Unavailable, fmt.Errorf("no Prometheus found in the cluster to %s: pass --prometheus-url URL", purpose))
	}
	return prom, err
}
