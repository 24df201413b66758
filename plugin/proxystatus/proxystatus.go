// Package proxystatus tells whether the mesh's proxies have received a
// change: what istioctl proxy-status shows, read from every istiod pod's
// /debug/syncz through the Kubernetes API server's pod proxy (no
// port-forward, no direct network access to the cluster).
//
// A proxy is SYNCED when it has acknowledged everything istiod sent it and
// STALE when a response is still unacknowledged. To tell whether a proxy got
// *this* change, the state is read once before the first write (a Baseline)
// and again after: a proxy is updated once istiod sent it something new and
// it acknowledged it. istiod pushes only to the proxies a change concerns,
// so some proxies may never be pushed; the wait ends when none is pending.
package proxystatus

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// istiod's monitoring port, which serves /debug.
const monitoringPort = "15014"

// resource is one xDS type's nonces in istiod's /debug/syncz.
type resource struct {
	Sent  string `json:"sent"`
	Acked string `json:"acked"`
}

// syncStatus is the part of istiod's SyncStatus this package reads.
type syncStatus struct {
	ProxyID   string              `json:"proxy"`
	Resources map[string]resource `json:"resources"`
}

// Proxy is one connected proxy's state.
type Proxy struct {
	ID        string // pod.namespace, as istiod names sidecars
	Namespace string
	Istiod    string // the istiod pod it is connected to
	// Stale: istiod sent something the proxy has not acknowledged.
	Stale bool
	sent  map[string]string // type URL → last nonce sent
}

// Updated reports whether istiod sent this proxy something since base and
// the proxy acknowledged all of it.
func (p Proxy) Updated(base map[string]Proxy) bool {
	if p.Stale {
		return false
	}
	before, known := base[p.ID]
	if !known {
		return true // connected since: its whole configuration is new
	}
	for t, n := range p.sent {
		if before.sent[t] != n {
			return true
		}
	}
	return false
}

// Client reads istiod's sync status through the API server.
type Client struct {
	Kube           kubernetes.Interface
	IstioNamespace string
}

// Read lists the proxies every istiod pod knows (one pod list, one pod-proxy
// GET per istiod pod), by ID.
func (c Client) Read(ctx context.Context) (map[string]Proxy, error) {
	pods, err := c.Kube.CoreV1().Pods(c.IstioNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
	if err != nil {
		return nil, err
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil, fmt.Errorf("no running istiod pod in %s", c.IstioNamespace)
	}
	out := map[string]Proxy{}
	var reached int
	var lastErr error
	for _, pod := range running {
		body, err := c.Kube.CoreV1().Pods(c.IstioNamespace).ProxyGet("http", pod.Name, monitoringPort, "/debug/syncz", nil).DoRaw(ctx)
		if err != nil {
			lastErr = fmt.Errorf("istiod pod %s: %w", pod.Name, err)
			continue
		}
		var ss []syncStatus
		if err := json.Unmarshal(body, &ss); err != nil {
			lastErr = fmt.Errorf("istiod pod %s: unexpected /debug/syncz answer: %w", pod.Name, err)
			continue
		}
		reached++
		for _, s := range ss {
			p := parse(s)
			p.Istiod = pod.Name
			out[p.ID] = p
		}
	}
	if reached == 0 {
		return nil, lastErr
	}
	return out, nil
}

func parse(s syncStatus) Proxy {
	p := Proxy{ID: s.ProxyID, sent: map[string]string{}}
	if i := strings.LastIndexByte(s.ProxyID, '.'); i >= 0 {
		p.Namespace = s.ProxyID[i+1:] // namespaces have no dots; pod names may
	}
	for t, r := range s.Resources {
		p.sent[t] = r.Sent
		if r.Sent != "" && r.Sent != r.Acked {
			p.Stale = true
		}
	}
	return p
}

// Scope selects the proxies a change concerns: those in namespaces, or all
// when all is set (a change in the root namespace applies mesh-wide).
type Scope struct {
	Namespaces []string
	All        bool
}

func (s Scope) has(p Proxy) bool { return s.All || slices.Contains(s.Namespaces, p.Namespace) }

// Report is the outcome of a wait.
type Report struct {
	Updated, Stale, NotPushed []string // proxy IDs
}

func (r Report) total() int { return len(r.Updated) + len(r.Stale) + len(r.NotPushed) }

// summarize sorts the scoped proxies of now against base.
func summarize(base, now map[string]Proxy, scope Scope) Report {
	var r Report
	for id, p := range now {
		switch {
		case !scope.has(p):
		case p.Updated(base):
			r.Updated = append(r.Updated, id)
		case p.Stale:
			r.Stale = append(r.Stale, id)
		default:
			r.NotPushed = append(r.NotPushed, id)
		}
	}
	slices.Sort(r.Updated)
	slices.Sort(r.Stale)
	slices.Sort(r.NotPushed)
	return r
}

// String is the one-line summary users read.
func (r Report) String() string {
	s := fmt.Sprintf("%d of %d proxies acknowledged the new configuration", len(r.Updated), r.total())
	if len(r.Stale) > 0 {
		s += fmt.Sprintf("; STALE (sent, not acknowledged): %s", strings.Join(r.Stale, ", "))
	}
	if len(r.NotPushed) > 0 {
		s += fmt.Sprintf("; not pushed by istiod (the change does not concern them): %d", len(r.NotPushed))
	}
	return s
}

// Settled: every scoped proxy has the change, or none is pending and no
// push has happened for quiet.
const quiet = 3 * time.Second

// Wait polls until every proxy in scope is updated, or nothing has moved
// for a few seconds with no proxy stale, or ctx ends; it returns the last
// report, with ctx's error on timeout. A failed read (istiod restarting, the
// client's rate limiter near the deadline) does not end the wait; if no
// read succeeded by the end, its error is returned.
func (c Client) Wait(ctx context.Context, base map[string]Proxy, scope Scope, progress func(string)) (Report, error) {
	var last Report
	var lastErr error
	read := false
	lastLine, changed := "", time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if now, err := c.Read(ctx); err != nil {
			lastErr = err
		} else {
			read = true
			last = summarize(base, now, scope)
			if line := last.String(); line != lastLine && last.total() > 0 {
				progress(line)
				lastLine, changed = line, time.Now()
			}
			if len(last.Stale) == 0 && (len(last.NotPushed) == 0 || len(last.Updated) > 0 && time.Since(changed) >= quiet) {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
			if !read && lastErr != nil {
				return last, lastErr
			}
			return last, ctx.Err()
		case <-tick.C:
		}
	}
}
