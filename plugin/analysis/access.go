package analysis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/legacy/util/kuberesource"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// Unreadable returns the resources Istio's analyzers watch cluster-wide that
// the current user may not list. The analyzers' informers retry a denied
// list forever, so this is asked first (one SelfSubjectAccessReview per
// kind, concurrently) instead of hanging.
func Unreadable(ctx context.Context, kube kubernetes.Interface) ([]string, error) {
	var (
		mu      sync.Mutex
		denied  []string
		firstEr error
		wg      sync.WaitGroup
	)
	for _, gvr := range Inputs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
				Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: "list", Group: gvr.Group, Resource: gvr.Resource,
				}},
			}, metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstEr == nil:
				firstEr = err
			case err == nil && !res.Status.Allowed:
				name := gvr.Resource
				if gvr.Group != "" {
					name += "." + gvr.Group
				}
				denied = append(denied, name)
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return nil, fmt.Errorf("cannot check read access for analysis: %w", firstEr)
	}
	sort.Strings(denied)
	return denied, nil
}

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

// RunChecked runs analyses concurrently with the read-access check that
// keeps them from hanging: when a kind is unreadable the analyses are
// cancelled and a *DeniedError returned. A *ParseError comes with the
// messages, as from Run. Overlapping the check with the
// informers' start hides its round trip.
func RunChecked(ctx context.Context, kube kubernetes.Interface, opts ...Options) ([]diag.Messages, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		msgs diag.Messages
		err  error
	}
	results := make([]chan result, len(opts))
	for i, o := range opts {
		results[i] = make(chan result, 1)
		go func() {
			m, err := Run(ctx, o)
			results[i] <- result{m, err}
		}()
	}
	denied, err := Unreadable(ctx, kube)
	if err == nil && len(denied) > 0 {
		err = &DeniedError{Kinds: denied}
	}
	if err != nil {
		cancel()
		// Cancelled informers stop promptly; do not wait on one that does not.
		for _, ch := range results {
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
			}
		}
		return nil, err
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
