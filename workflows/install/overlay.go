package install

import "sigs.k8s.io/yaml"

// gatewayDrain is how long a gateway pod keeps serving in-flight
// connections after it is told to stop; the pod's grace period outlasts it.
const (
	gatewayDrain       = "30s"
	gatewayGracePeriod = 45
)

// gatewayProduction is the production k8s settings of one gateway (the
// gateway chart has no values for spread or grace period: those are
// overlays on its Deployment).
func gatewayProduction(name string, selector map[string]any) map[string]any {
	spread := func(key string) map[string]any {
		return map[string]any{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": map[string]any{"matchLabels": selector}}
	}
	return map[string]any{
		"replicaCount":        2,
		"hpaSpec":             map[string]any{"minReplicas": 2, "maxReplicas": 5},
		"podDisruptionBudget": map[string]any{"minAvailable": 1},
		"priorityClassName":   priorityClassName,
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "1000m", "memory": "1Gi", "ephemeral-storage": "100Mi"},
			"limits":   map[string]any{"cpu": "2000m", "memory": "2Gi", "ephemeral-storage": "1Gi"},
		},
		// Drain: stop taking new connections, let the open ones finish
		// (up to the drain duration), exit as soon as none is left.
		"podAnnotations": map[string]any{"proxy.istio.io/config": `{"terminationDrainDuration": "` + gatewayDrain + `"}`},
		"env":            []any{map[string]any{"name": "EXIT_ON_ZERO_ACTIVE_CONNECTIONS", "value": "true"}},
		"overlays": []any{map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
			"patches": []any{
				map[string]any{"path": "spec.template.spec.terminationGracePeriodSeconds", "value": gatewayGracePeriod},
				map[string]any{"path": "spec.template.spec.topologySpreadConstraints", "value": []any{
					spread("topology.kubernetes.io/zone"), spread("kubernetes.io/hostname")}},
			},
		}},
	}
}

// overlay renders the answers as an IstioOperator applied after the profile
// and before the user's -f files and --set values.
func (o *Options) overlay() ([]byte, error) {
	spec := map[string]any{"hub": o.Hub, "tag": o.Tag}
	if o.Revision != "" {
		spec["revision"] = o.Revision
	}
	mc := map[string]any{"outboundTrafficPolicy": map[string]any{"mode": o.OutboundPolicy}}
	if o.AccessLog {
		mc["accessLogFile"] = "/dev/stdout"
	} else {
		mc["accessLogFile"] = ""
	}
	if o.TracingSampling > 0 {
		mc["enableTracing"] = true
		tracing := map[string]any{"sampling": o.TracingSampling}
		if o.TracingAddress != "" {
			tracing["zipkin"] = map[string]any{"address": o.TracingAddress}
		}
		mc["defaultConfig"] = map[string]any{"tracing": tracing}
	}
	spec["meshConfig"] = mc

	gateway := func(name, istioLabel string, enabled bool, serviceType string) []any {
		g := map[string]any{"name": name, "enabled": enabled}
		k8s := map[string]any{}
		if o.Profile == ProfileProduction {
			k8s = gatewayProduction(name, map[string]any{"istio": istioLabel})
		}
		if serviceType != "" {
			k8s["service"] = map[string]any{"type": serviceType}
		}
		if len(k8s) > 0 {
			g["k8s"] = k8s
		}
		return []any{g}
	}
	spec["components"] = map[string]any{
		"ingressGateways": gateway("istio-ingressgateway", "ingressgateway", o.Ingress, o.IngressServiceType),
		"egressGateways":  gateway("istio-egressgateway", "egressgateway", o.Egress, ""),
	}
	return yaml.Marshal(map[string]any{"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": spec})
}
