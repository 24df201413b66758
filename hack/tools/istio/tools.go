//go:build tools

// Package tools pins istioctl, built from the same istio.io/istio module the
// plugin embeds, as the reference for the benchmarks in bench/.
package tools

import _ "istio.io/istio/istioctl/cmd/istioctl"
