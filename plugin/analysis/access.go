package analysis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/legacy/util/kuberesource"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Abbreviate lists the first n items and counts the rest.
func Abbreviate(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// Inputs are the resources Istio's analyzers read cluster-wide.
func Inputs() []schema.GroupVersionResource {
	var out []schema.GroupVersionResource
	for _, s := range kuberesource.ConvertInputsToSchemas(analyzers.AllCombined().Metadata().Inputs).All() {
		if s.Kind() == "MeshConfig" || s.Kind() == "MeshNetworks" {
			continue // synthetic: read from the istio ConfigMap, not an API
		}
		out = append(out, s.GroupVersionResource())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// DeniedError says which kinds the user cannot list cluster-wide.
type DeniedError struct{ Kinds []string }

func (e *DeniedError) Error() string {
	return "cannot list " + Abbreviate(e.Kinds, 4) + " cluster-wide"
}

// RunLive analyzes the cluster r reads: it takes one snapshot (with
// the inputs of opts[0]'s analyzers, revision and Istio namespace, which
// every analysis shares) and runs the analyses on it concurrently. A kind
// the user may not list is a *DeniedError, before any analysis runs. A
// *ParseError comes with the messages, as from Run.
func RunLive(ctx context.Context, r *reads.Reader, opts ...Options) ([]diag.Messages, error) {
	snap, err := Read(ctx, r, opts[0])
	if err != nil {
		return nil, err
	}
	type result struct {
		msgs diag.Messages
		err  error
	}
	results := make([]chan result, len(opts))
	for i, o := range opts {
		results[i] = make(chan result, 1)
		o.Snapshot = snap
		go func() {
			m, err := Run(ctx, o)
			results[i] <- result{m, err}
		}()
	}
	out := make([]diag.Messages, len(opts))
	var parseErr *ParseError
	for i, ch := range results {
		r := <-ch
		if r.err != nil && !errors.As(r.err, &parseErr) {
			return nil, r.err
		}
		out[i] = r.msgs
	}
	if parseErr != nil {
		return out, parseErr // with the messages of what could be read
	}
	return out, nil
}
