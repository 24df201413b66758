package analysis

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"istio.io/istio/pkg/config/analysis/analyzers"
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
