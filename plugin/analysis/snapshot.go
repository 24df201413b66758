package analysis

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Snapshot is the cluster as Istio's analyzers read it, taken with one LIST
// per kind they need (all concurrently, through the command's
// reads.Reader, which planners and checks share) instead of the informers
// and watches istioctl starts: the same objects, filtered as Istio's live
// source filters them, for a fraction of the requests. Several analyses
// (the cluster as it is and as planned) share one snapshot.
type Snapshot struct {
	schemas collection.Schemas
	configs []config.Config
	// The istio ConfigMap's mesh config and networks, as the live source
	// reads them; empty when absent (the analyzer then uses defaults).
	mesh, networks string
}

// MeshConfig is the istio ConfigMap's mesh config YAML, "" when there is none.
func (s *Snapshot) MeshConfig() string { return s.mesh }

// read is one kind Read lists, and which of its objects the analyzers see.
type read struct {
	k    collectionKind
	q    reads.Request
	keep func(metav1.Object) bool
}

// plan is what Read lists for o: every input of the analyzers o selects
// (cluster-wide), and the ConfigMaps of the Istio namespace, which hold
// the mesh config.
func (o Options) plan() (rs []read, wantConfigMaps bool) {
	rev := o.Revision
	if rev == "" {
		rev = "default"
	}
	inRevision := func(m metav1.Object) bool { return config.LabelsInRevision(m.GetLabels(), rev) }
	// Service discovery kinds: every revision's, minus what the live
	// source leaves out: nothing in the namespaces injection ignores
	// (filtered here, so that the LIST is the one planners read too), no
	// Helm release or service account token Secrets (filtered by the API
	// server: only the analyzers read Secrets, and Helm's are large).
	notIgnored := func(m metav1.Object) bool {
		ns := m.GetNamespace()
		if ns == "" {
			ns = m.GetName() // a Namespace
		}
		return !inject.IgnoredNamespaces.Contains(ns)
	}
	runtimeKinds := kuberesource.DefaultExcludedSchemas()
	for _, s := range kuberesource.ConvertInputsToSchemas(o.combined().Metadata().Inputs).All() {
		if s.IsSynthetic() {
			continue
		}
		k := collectionKind{s: s, gvk: s.GroupVersionKind()}
		q := reads.Request{Resource: s.GroupVersionResource()}
		switch _, isRuntime := runtimeKinds.FindByGroupVersionKind(k.gvk); {
		case k.gvk == gvk.ConfigMap:
			wantConfigMaps = true // read below, with the mesh config
			continue
		case k.gvk == gvk.Secret:
			q.Fields = fields.AndSelectors(
				fields.OneTermNotEqualSelector("type", "helm.sh/release.v1"),
				fields.OneTermNotEqualSelector("type", string(corev1.SecretTypeServiceAccountToken))).String()
			rs = append(rs, read{k: k, q: q})
		case k.gvk == gvk.Namespace || k.gvk == gvk.Service || k.gvk == gvk.Pod:
			rs = append(rs, read{k: k, q: q, keep: notIgnored})
		case isRuntime, k.gvk == gvk.KubernetesGateway:
			rs = append(rs, read{k: k, q: q}) // Istio reads Gateways of every revision
		default:
			rs = append(rs, read{k: k, q: q, keep: inRevision})
		}
	}
	// The istio ConfigMaps are read in any case: they hold the mesh config.
	rs = append(rs, read{k: collectionKind{gvk: gvk.ConfigMap, s: configMaps}, q: reads.Request{Resource: configMaps.GroupVersionResource(), Namespace: o.IstioNamespace}, keep: func(m metav1.Object) bool {
		_, leader := m.GetAnnotations()[k8sresourcelock.LeaderElectionRecordAnnotationKey]
		return wantConfigMaps && !leader && strings.HasPrefix(m.GetName(), "istio") && inRevision(m)
	}})
	return rs, wantConfigMaps
}

// Requests are the LISTs Read makes for o. A command that will analyze
// prefetches them, so that its own reads of these kinds are served from
// them.
func Requests(o Options) []reads.Request {
	rs, _ := o.plan()
	out := make([]reads.Request, len(rs))
	for i, r := range rs {
		out[i] = r.q
	}
	return out
}

// Read takes the snapshot the analyses o describes need: the inputs of the
// analyzers o selects, read through r. A kind the user may not list comes
// back as a *DeniedError naming every such kind: the LIST itself is the
// access check. A kind the cluster does not serve (a CRD not installed) is
// empty, as for Istio's informers.
func Read(ctx context.Context, r *reads.Reader, o Options) (*Snapshot, error) {
	rs, wantConfigMaps := o.plan()
	snap := &Snapshot{schemas: collection.SchemasFor()}
	if len(rs) == 1 { // only the mesh config: no analyzer reads the cluster
		return snap, nil
	}
	r.Prefetch(ctx, Requests(o)...)
	var (
		mu     sync.Mutex
		denied []string
		firstE error
	)
	g := errgroup.Group{}
	for _, rd := range rs {
		g.Go(func() error {
			objs, err := r.Objects(ctx, rd.q)
			if apierrors.IsNotFound(err) {
				return nil // not served: Istio's delayed informers would wait for the CRD
			}
			if err != nil {
				mu.Lock()
				defer mu.Unlock()
				if apierrors.IsForbidden(err) && rd.k.gvk == gvk.ConfigMap && !wantConfigMaps {
					return nil // only the mesh config: the defaults, as istioctl without access
				} else if apierrors.IsForbidden(err) {
					denied = append(denied, rd.k.name())
				} else if firstE == nil {
					firstE = fmt.Errorf("analysis: cannot list %s: %w", rd.k.name(), err)
				}
				return nil
			}
			// Translated concurrently, kind by kind; only the append is shared.
			var out []config.Config
			for _, obj := range objs {
				m, err := meta.Accessor(obj)
				if err != nil {
					return err
				}
				if rd.k.gvk == gvk.ConfigMap && m.GetName() == "istio" {
					cm := obj.(*corev1.ConfigMap)
					snap.mesh, snap.networks = cm.Data["mesh"], cm.Data["meshNetworks"] // one read has the ConfigMaps
				}
				if rd.keep == nil || rd.keep(m) {
					out = append(out, crdclient.TranslateObject(obj, rd.k.gvk, "cluster.local"))
				}
			}
			mu.Lock()
			snap.configs = append(snap.configs, out...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(denied) > 0 {
		sort.Strings(denied)
		return nil, &DeniedError{Kinds: denied}
	}
	if firstE != nil {
		return nil, firstE
	}
	var inputs []resource.Schema
	for _, rd := range rs {
		if rd.k.gvk != gvk.ConfigMap || wantConfigMaps {
			inputs = append(inputs, rd.k.s)
		}
	}
	snap.schemas = collection.SchemasFor(inputs...)
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
