package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads/readstest"
)

func svc(ns, name string, labels map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func TestDiscoverPrefersIstioAddonInIstioNamespace(t *testing.T) {
	web := corev1.ServicePort{Name: "web", Port: 9090}
	rd := readstest.Reader(
		svc("monitoring", "prometheus-operated", nil, web),
		svc("monitoring", "grafana", map[string]string{"app": "grafana"}, corev1.ServicePort{Name: "http", Port: 3000}),
		svc("istio-system", "prometheus", nil, corev1.ServicePort{Name: "http", Port: 9090}),
		svc("other", "prometheus", nil, corev1.ServicePort{Name: "http", Port: 9090}),
		svc("tools", "prometheus", nil, corev1.ServicePort{Name: "grpc", Port: 10901}, corev1.ServicePort{Name: "metrics", Port: 8080}),
	)
	s, port, err := Discover(context.Background(), rd, "istio-system")
	if err != nil || s == nil || s.Namespace != "istio-system" || port != "9090" {
		t.Fatalf("got %v %q %v", s, port, err)
	}
	rd = readstest.Reader(svc("monitoring", "grafana", nil, corev1.ServicePort{Port: 3000}))
	if s, _, err := Discover(context.Background(), rd, "istio-system"); err != nil || s != nil {
		t.Fatalf("nothing like Prometheus must find nothing, got %v %v", s, err)
	}
}

func TestParseWindowAndURL(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1w": 7 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseWindow("--window", in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "7", "0d", "-1d", "a week"} {
		if _, err := ParseWindow("--window", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, bad := range []string{"localhost:9090", "ftp://x", "http://", "::"} {
		if err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestFlows: the queries ask for destination-reported traffic into the
// namespaces, and the vectors become flows split by mutual TLS.
func TestFlows(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status/buildinfo") {
			fmt.Fprint(w, `{"status":"success","data":{"version":"2.42.0"}}`)
			return
		}
		_ = r.ParseForm()
		q := r.Form.Get("query")
		queries = append(queries, q)
		sample := func(src, sec, v string) string {
			return fmt.Sprintf(`{"metric":{"source_workload":%q,"source_workload_namespace":"old","destination_workload":"api","destination_workload_namespace":"shop","connection_security_policy":%q},"value":[1,%q]}`, src, sec, v)
		}
		if strings.Contains(q, "istio_requests_total") {
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s,%s,%s]}}`, sample("legacy", "none", "12"), sample("web", "mutual_tls", "500"), sample("idle", "none", "0"))
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, sample("legacy", "none", "3"))
	}))
	defer srv.Close()
	p, err := Connect(context.Background(), &rest.Config{}, nil, srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	flows, err := p.Flows(context.Background(), []string{"shop", "cart"}, 7*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) != 2 || !strings.Contains(queries[0], `reporter="destination"`) || !strings.Contains(queries[0], `destination_workload_namespace=~"shop|cart"`) || !strings.Contains(queries[0], "[1w]") {
		t.Fatalf("queries: %q", queries)
	}
	got := fmt.Sprint(flows)
	want := "[{legacy old api shop false 12 3} {web old api shop true 500 0}]"
	if got != want {
		t.Fatalf("flows = %s, want %s", got, want)
	}
}
