package install

import "sigs.k8s.io/yaml"

// gatewayProduction is the production k8s settings of one gateway.
func gatewayProduction(selector map[string]any) map[string]any {
	return map[string]any{
		"replicaCount":        2,
		"hpaSpec":             map[string]any{"minReplicas": 2, "maxReplicas": 5},
		"podDisruptionBudget": map[string]any{"minAvailable": 1},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "1000m", "memory": "1Gi"},
			"limits":   map[string]any{"cpu": "2000m", "memory": "2Gi"},
		},
		"affinity": map[string]any{"podAntiAffinity": map[string]any{
			"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
				"weight": 100,
				"podAffinityTerm": map[string]any{
					"topologyKey":   "kubernetes.io/hostname",
					"labelSelector": map[string]any{"matchLabels": selector},
				},
			}},
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
			k8s = gatewayProduction(map[string]any{"istio": istioLabel})
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
