package analysis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"istio.io/istio/pilot/pkg/config/kube/crdclient"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pilot/pkg/leaderelection/k8sleaderelection/k8sresourcelock"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/analysis"
	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/legacy/util/kuberesource"
	"istio.io/istio/pkg/config/schema/collection"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/schema/resource"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/util/sets"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// Snapshot is the cluster as Istio's analyzers read it, taken with one LIST
// per kind they need (all concurrently) instead of the informers and
// watches istioctl starts: the same objects, filtered as Istio's live
// source filters them, for a fraction of the requests. Several analyses
// (the cluster as it is and as planned) share one snapshot.
type Snapshot struct {
	schemas collection.Schemas
	configs []config.Config
	// The istio ConfigMap's mesh config and networks, as the live source
	// reads them; empty when absent (the analyzer then uses defaults).
	mesh, networks string
	// kept holds the kinds Options.Keep names, every revision's, as
	// decoded from the same LIST for the analyzers (the typed objects
	// their configs point into, so keeping them costs nothing).
	kept map[config.GroupVersionKind]keptKind
}

type keptKind struct {
	s    resource.Schema
	objs []runtime.Object
}

// Objects are the objects of a kind Options.Keep named, in namespace (""
// for every namespace) and every revision, as unstructured objects
// (without managedFields): the resilience lint reads the VirtualServices
// and DestinationRules the analyzers read, and check the Istio
// configuration, without listing them again. They are made from the
// analyzers' typed objects on each call, so that a second copy of every
// object is not held for the whole analysis. Like Istio's JSON, they leave
// zero values out (retries.attempts: 0, tls.mode: DISABLE): a reader must
// take a missing field for its zero value, as Istio does, and code that
// must see an object as stored (a planner) lists it itself.
func (s *Snapshot) Objects(k config.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error) {
	kk := s.kept[k]
	var out []*unstructured.Unstructured
	for _, obj := range kk.objs {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		if namespace != "" && m.GetNamespace() != namespace {
			continue
		}
		u, err := toUnstructured(kk.s, obj)
		if err != nil {
			return nil, fmt.Errorf("analysis: %s %s/%s: %w", k.Kind, m.GetNamespace(), m.GetName(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

// toUnstructured is a typed object as the API server would send it: Istio's
// types marshal their specs with Istio's JSON names, as in the CRDs.
func toUnstructured(s resource.Schema, obj runtime.Object) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	u.SetAPIVersion(s.APIVersion())
	u.SetKind(s.Kind())
	return u, nil
}

// MeshConfig is the istio ConfigMap's mesh config YAML, "" when there is none.
func (s *Snapshot) MeshConfig() string { return s.mesh }

// Read takes the snapshot the analyses o describes need: the inputs of the
// analyzers o selects, in the cluster behind kube. A kind the user may not
// list comes back as a *DeniedError naming every such kind: the LIST itself
// is the access check. A kind the cluster does not serve (a CRD not
// installed) is empty, as for Istio's informers.
func Read(ctx context.Context, kube kubernetes.Interface, o Options) (*Snapshot, error) {
	schemas := kuberesource.ConvertInputsToSchemas(o.combined().Metadata().Inputs)
	var kinds []collectionKind
	for _, s := range schemas.All() {
		if !s.IsSynthetic() {
			kinds = append(kinds, collectionKind{s: s, gvk: s.GroupVersionKind()})
		}
	}
	snap := &Snapshot{schemas: collection.SchemasFor(), kept: map[config.GroupVersionKind]keptKind{}}
	if len(kinds) == 0 {
		return snap, nil
	}
	rev := o.Revision
	if rev == "" {
		rev = "default"
	}
	runtimeKinds := kuberesource.DefaultExcludedSchemas()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		denied []string
		firstE error
	)
	fail := func(k collectionKind, err error) {
		mu.Lock()
		defer mu.Unlock()
		if apierrors.IsForbidden(err) {
			denied = append(denied, k.name())
		} else if firstE == nil {
			firstE = fmt.Errorf("analysis: cannot list %s: %w", k.name(), err)
		}
	}
	list := func(k collectionKind, namespace, fieldSelector string, keep func(runtime.Object) bool) {
		defer wg.Done()
		objs, err := listTyped(ctx, kube, k, namespace, fieldSelector)
		if err != nil {
			fail(k, err)
			return
		}
		if slices.Contains(o.Keep, k.gvk) {
			mu.Lock()
			snap.kept[k.gvk] = keptKind{s: k.s, objs: objs}
			mu.Unlock()
		}
		var out []config.Config
		for _, obj := range objs {
			if keep == nil || keep(obj) {
				out = append(out, crdclient.TranslateObject(obj, k.gvk, "cluster.local"))
			}
		}
		mu.Lock()
		snap.configs = append(snap.configs, out...)
		mu.Unlock()
	}
	inRevision := func(obj runtime.Object) bool {
		m, _ := meta.Accessor(obj)
		return m != nil && config.LabelsInRevision(m.GetLabels(), rev)
	}
	wantConfigMaps := false
	for _, k := range kinds {
		if k.gvk == gvk.ConfigMap {
			wantConfigMaps = true // read below, with the mesh config
			continue
		}
		wg.Add(1)
		switch _, isRuntime := runtimeKinds.FindByGroupVersionKind(k.gvk); {
		case isRuntime:
			// Service discovery kinds: every revision's, minus the
			// namespaces and secrets the live source leaves out.
			go list(k, "", runtimeFieldSelector(k.gvk), nil)
		case k.gvk == gvk.KubernetesGateway:
			go list(k, "", "", nil) // Istio reads Gateways of every revision
		default:
			go list(k, "", "", inRevision)
		}
	}
	// The istio ConfigMaps are read in any case: they hold the mesh config.
	wg.Add(1)
	go func() {
		defer wg.Done()
		k := collectionKind{gvk: gvk.ConfigMap, s: configMaps}
		objs, err := listTyped(ctx, kube, k, o.IstioNamespace, "")
		if err != nil {
			if apierrors.IsForbidden(err) && !wantConfigMaps {
				return // only the mesh config: the defaults, as istioctl without access
			}
			fail(k, err)
			return
		}
		var out []config.Config
		for _, obj := range objs {
			cm := obj.(*corev1.ConfigMap)
			if cm.Name == "istio" {
				snap.mesh, snap.networks = cm.Data["mesh"], cm.Data["meshNetworks"]
			}
			if wantConfigMaps && isIstioConfigMap(cm) && inRevision(cm) {
				out = append(out, crdclient.TranslateObject(cm, gvk.ConfigMap, "cluster.local"))
			}
		}
		mu.Lock()
		snap.configs = append(snap.configs, out...)
		mu.Unlock()
	}()
	wg.Wait()
	if len(denied) > 0 {
		sort.Strings(denied)
		return nil, &DeniedError{Kinds: denied}
	}
	if firstE != nil {
		return nil, firstE
	}
	var nonSynthetic []resource.Schema
	for _, k := range kinds {
		nonSynthetic = append(nonSynthetic, k.s)
	}
	snap.schemas = collection.SchemasFor(nonSynthetic...)
	return snap, nil
}

// store is the snapshot as a config store for one analysis. Each analysis
// gets its own: Istio's analyzer runs and then closes its stores.
func (s *Snapshot) store() (*memory.Controller, error) {
	c := memory.NewController(memory.MakeSkipValidation(s.schemas))
	for _, cfg := range s.configs {
		if _, err := c.Create(cfg); err != nil {
			return nil, fmt.Errorf("analysis: %s %s/%s: %w", cfg.GroupVersionKind.Kind, cfg.Namespace, cfg.Name, err)
		}
	}
	return c, nil
}

type collectionKind struct {
	s   resource.Schema
	gvk config.GroupVersionKind
}

func (k collectionKind) name() string {
	if k.s.Group() == "" {
		return k.s.Plural()
	}
	return k.s.Plural() + "." + k.s.Group()
}

var configMaps, _ = collections.All.FindByGroupVersionKind(gvk.ConfigMap)

// listTyped lists one kind in one request, decoded into Istio's typed
// objects (which its config translation expects). resourceVersion=0 is
// served from the API server's watch cache in one response whatever the
// size, as the informers this replaces start from.
func listTyped(ctx context.Context, kube kubernetes.Interface, k collectionKind, namespace, fieldSelector string) ([]runtime.Object, error) {
	gvr := k.s.GroupVersionResource()
	path := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		path = "/api/" + gvr.Version
	}
	if namespace != "" {
		path += "/namespaces/" + namespace
	}
	req := kube.CoreV1().RESTClient().Get().AbsPath(path, gvr.Resource).Param("resourceVersion", "0")
	if fieldSelector != "" {
		req = req.Param("fieldSelector", fieldSelector)
	}
	body, err := req.DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return nil, nil // not served: Istio's delayed informers would wait for the CRD
	} else if err != nil {
		return nil, err
	}
	return decodeList(body)
}

// runtimeFieldSelector is the live source's field selector per kind: no
// Helm release or service account token secrets, nothing in the
// namespaces injection ignores.
func runtimeFieldSelector(g config.GroupVersionKind) string {
	notIn := func(field string) string {
		ns := inject.IgnoredNamespaces.UnsortedList()
		sort.Strings(ns)
		sel := make([]fields.Selector, 0, len(ns))
		for _, n := range ns {
			sel = append(sel, fields.OneTermNotEqualSelector(field, n))
		}
		return fields.AndSelectors(sel...).String()
	}
	switch g {
	case gvk.Secret:
		return fields.AndSelectors(
			fields.OneTermNotEqualSelector("type", "helm.sh/release.v1"),
			fields.OneTermNotEqualSelector("type", string(corev1.SecretTypeServiceAccountToken))).String()
	case gvk.Namespace:
		return notIn("metadata.name")
	case gvk.Service, gvk.Pod:
		return notIn("metadata.namespace")
	}
	return ""
}

// isIstioConfigMap is the live source's ConfigMap filter.
func isIstioConfigMap(cm *corev1.ConfigMap) bool {
	if _, ok := cm.Annotations[k8sresourcelock.LeaderElectionRecordAnnotationKey]; ok {
		return false
	}
	return strings.HasPrefix(cm.Name, "istio")
}

// combined is the analyzer set o selects: the named ones or all, narrowed
// to those reading a changed kind when o.Changed is set.
func (o Options) combined() analysis.CombinedAnalyzer {
	c := analyzers.AllCombined()
	if len(o.Analyzers) > 0 {
		c = analyzers.NamedCombined(o.Analyzers...)
	}
	if o.Changed != nil {
		c = c.RelevantSubset(o.Changed)
	}
	return c
}

// Changed is the set Options.Changed takes for objects of these kinds (any
// version): Istio's analyzers name their inputs by canonical version.
func Changed(kinds ...schema.GroupVersionKind) sets.Set[config.GroupVersionKind] {
	out := sets.New[config.GroupVersionKind]()
	for _, k := range kinds {
		if s, ok := collections.All.FindByGroupKind(config.GroupVersionKind{Group: k.Group, Kind: k.Kind}); ok {
			out.Insert(s.GroupVersionKind())
		}
	}
	return out
}
