//go:build tools

// Package tools pins istioctl (the benchmarks' reference, bench/) and
// pilot-discovery (the real istiod of the end-to-end tests and the sandbox),
// built from the same istio.io/istio module the plugin embeds.
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
