package resilience

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func codes(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+" "+f.Level)
	}
	return strings.Join(out, ",")
}

func TestLintRules(t *testing.T) {
	for _, tc := range []struct {
		name, vs, dr string
		endpoints    int
		meshRetryOn  string
		want         string
	}{
		{name: "budget exceeded",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{match: [{method: {exact: GET}}], timeout: 1s, retries: {attempts: 3, perTryTimeout: 500ms}, route: [{destination: {host: r}}]}]}}`,
			want: "KM0101 Error"},
		{name: "per-try not shorter than the timeout",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{match: [{method: {regex: "^(GET|HEAD)$"}}], timeout: 1s, retries: {attempts: 1, perTryTimeout: 1s}, route: [{destination: {host: r}}]}]}}`,
			want: "KM0101 Error"},
		{name: "budget within the timeout, reads only",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{match: [{method: {exact: GET}}], timeout: 2s, retries: {attempts: 2, perTryTimeout: 500ms, retryOn: "5xx"}, route: [{destination: {host: r}}]}]}}`,
			want: ""},
		{name: "implicit retries on writes, no timeout",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{route: [{destination: {host: r}}]}]}}`,
			want: "KM0102 Warning,KM0105 Info"},
		{name: "the mesh retries only before the request is sent",
			vs:          `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{timeout: 3s, route: [{destination: {host: r}}]}]}}`,
			meshRetryOn: "connect-failure,refused-stream,unavailable,cancelled",
			want:        ""},
		{name: "explicit 5xx retries on writes",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{timeout: 3s, retries: {attempts: 2, retryOn: "5xx"}, route: [{destination: {host: r}}]}]}}`,
			want: "KM0102 Warning"},
		{name: "attempts 0 on writes",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{timeout: 3s, retries: {attempts: 0}, route: [{destination: {host: r}}]}]}}`,
			want: ""},
		{name: "a retries block without attempts disables retries",
			vs:   `{kind: VirtualService, metadata: {name: r, namespace: shop}, spec: {http: [{timeout: 1s, retries: {perTryTimeout: 1s, retryOn: "5xx"}, route: [{destination: {host: r}}]}]}}`,
			want: ""},
		{name: "outlier detection can empty a 2-pod pool",
			dr:        `{kind: DestinationRule, metadata: {name: r, namespace: shop}, spec: {host: r, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5, maxEjectionPercent: 100}}}}`,
			endpoints: 2, want: "KM0103 Warning"},
		{name: "the only pod",
			dr:        `{kind: DestinationRule, metadata: {name: r, namespace: shop}, spec: {host: r, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5}}}}`,
			endpoints: 1, want: "KM0103 Warning"},
		{name: "half of four pods",
			dr:        `{kind: DestinationRule, metadata: {name: r, namespace: shop}, spec: {host: r, trafficPolicy: {outlierDetection: {maxEjectionPercent: 50}}}}`,
			endpoints: 4, want: ""},
		{name: "consistent hash without a locality setting",
			dr:   `{kind: DestinationRule, metadata: {name: r, namespace: shop}, spec: {host: r, subsets: [{name: v1, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}, outlierDetection: {maxEjectionPercent: 10}}}]}}`,
			want: "KM0104 Warning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{MeshRetryOn: tc.meshRetryOn, Endpoints: map[string]int{}}
			if tc.vs != "" {
				in.VirtualServices = append(in.VirtualServices, obj(t, tc.vs))
			}
			if tc.dr != "" {
				in.DestinationRules = append(in.DestinationRules, obj(t, tc.dr))
				if tc.endpoints > 0 {
					in.Endpoints["r.shop.svc.cluster.local"] = tc.endpoints
				}
			}
			if got := codes(Lint(in)); got != tc.want {
				t.Errorf("findings %q, want %q: %+v", got, tc.want, Lint(in))
			}
		})
	}
}

// Istio passes maxEjectionPercent on only above 0 (its JSON leaves a 0
// out): 0 is Envoy's 10%, and the finding says so.
func TestMaxEjectionPercentZeroIsEnvoysDefault(t *testing.T) {
	dr := obj(t, `{kind: DestinationRule, metadata: {name: r, namespace: shop}, spec: {host: r, trafficPolicy: {outlierDetection: {maxEjectionPercent: 0}}}}`)
	fs := Lint(Input{DestinationRules: []*unstructured.Unstructured{dr}, Endpoints: map[string]int{"r.shop.svc.cluster.local": 1}})
	if len(fs) != 1 || fs[0].Code != CodeEjectAll || !strings.Contains(fs[0].Message, "maxEjectionPercent 10)") {
		t.Fatalf("findings %+v, want one %s naming maxEjectionPercent 10", fs, CodeEjectAll)
	}
}
