//go:build tools

// Package tools pins kube-score, the outside linter the tests run on the
// production profile's render (workflows/install).
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
