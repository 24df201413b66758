//go:build tools

// Package tools pins krew and validate-krew-manifest, built by hack/build-tools.sh.
package tools

import (
	_ "sigs.k8s.io/krew/cmd/krew"
	_ "sigs.k8s.io/krew/cmd/validate-krew-manifest"
)
