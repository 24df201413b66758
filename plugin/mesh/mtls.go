package mesh

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	istiolabels "istio.io/istio/pkg/config/labels"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
)

// mTLS modes of a PeerAuthentication.
const (
	ModeUnset      = "UNSET"
	ModeDisable    = "DISABLE"
	ModePermissive = "PERMISSIVE"
	ModeStrict     = "STRICT"
)

// PeerAuth is the part of a PeerAuthentication the effective mode depends on.
type PeerAuth struct {
	Namespace, Name string
	Created         time.Time
	Selector        map[string]string // matchLabels; empty for namespace- and mesh-wide policies
	Mode            string            // UNSET when absent
	Ports           map[uint32]string // portLevelMtls: port → mode
	Object          *unstructured.Unstructured
}

// Ref names the policy as kubectl would.
func (p *PeerAuth) Ref() string { return "PeerAuthentication/" + p.Name + " -n " + p.Namespace }

type peerAuthSpec struct {
	Selector *struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	MTLS *struct {
		Mode string `json:"mode"`
	} `json:"mtls"`
	PortLevelMtls map[string]struct {
		Mode string `json:"mode"`
	} `json:"portLevelMtls"`
}

// ParsePeerAuth reads a PeerAuthentication object.
func ParsePeerAuth(u *unstructured.Unstructured) (PeerAuth, error) {
	var spec peerAuthSpec
	if m, ok := u.Object["spec"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &spec); err != nil {
			return PeerAuth{}, fmt.Errorf("PeerAuthentication %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
	}
	p := PeerAuth{Namespace: u.GetNamespace(), Name: u.GetName(), Created: u.GetCreationTimestamp().Time, Mode: ModeUnset, Object: u}
	if spec.Selector != nil {
		p.Selector = spec.Selector.MatchLabels
	}
	if spec.MTLS != nil && spec.MTLS.Mode != "" {
		p.Mode = spec.MTLS.Mode
	}
	for k, v := range spec.PortLevelMtls {
		port, err := strconv.ParseUint(k, 10, 32)
		if err != nil {
			return PeerAuth{}, fmt.Errorf("PeerAuthentication %s/%s: portLevelMtls key %q is not a port number", p.Namespace, p.Name, k)
		}
		if p.Ports == nil {
			p.Ports = map[uint32]string{}
		}
		mode := v.Mode
		if mode == "" {
			mode = ModeUnset
		}
		p.Ports[uint32(port)] = mode
	}
	return p, nil
}

// Selects reports whether a workload-scoped policy applies to pod labels:
// matchLabels, as istiod compares them (every checker asks this for every
// policy and pod, so no selector is built per call).
func (p *PeerAuth) Selects(podLabels map[string]string) bool {
	return len(p.Selector) > 0 && istiolabels.Instance(p.Selector).SubsetOf(podLabels)
}

// older is Istio's tie-break between policies at the same level: the oldest
// wins (name breaks exact ties so the answer is stable).
func older(a, b *PeerAuth) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// Chain is the policies that decide a workload's mode, one per level, as
// istiod composes them (pilot/pkg/security/authn ComposePeerAuthentication).
type Chain struct {
	Mesh, Namespace, Workload *PeerAuth
}

// ChainFor picks, for a pod in ns with podLabels, the mesh-wide policy (root
// namespace, no selector), the namespace policy and the workload policy
// (selector, not in the root namespace: istiod ignores selector policies in
// the root namespace).
func ChainFor(root string, pas []PeerAuth, ns string, podLabels map[string]string) Chain {
	var c Chain
	pick := func(cur **PeerAuth, p *PeerAuth) {
		if *cur == nil || older(p, *cur) {
			*cur = p
		}
	}
	for i := range pas {
		p := &pas[i]
		if p.Namespace != ns && p.Namespace != root {
			continue
		}
		switch {
		case len(p.Selector) == 0 && p.Namespace == root:
			pick(&c.Mesh, p)
		case len(p.Selector) == 0:
			pick(&c.Namespace, p)
		case p.Namespace != root:
			if p.Selects(podLabels) {
				pick(&c.Workload, p)
			}
		}
	}
	// In the root namespace the mesh policy is also the namespace policy.
	if ns == root {
		c.Namespace = nil
	}
	return c
}

// Mode is the effective mode on port (0: the workload's default) and the
// policy that set it ("" when nothing did: Istio's default PERMISSIVE).
func (c Chain) Mode(port uint32) (mode, source string) {
	mode = ModePermissive
	for _, p := range []*PeerAuth{c.Mesh, c.Namespace, c.Workload} {
		if p != nil && p.Mode != ModeUnset {
			mode, source = p.Mode, p.Ref()
		}
	}
	if w := c.Workload; w != nil && port != 0 {
		if m, ok := w.Ports[port]; ok && m != ModeUnset {
			return m, w.Ref() + " port " + strconv.Itoa(int(port))
		}
	}
	return mode, source
}

// NamespaceWide returns the namespace-wide policies of ns (no selector),
// oldest first: the first is the one Istio uses.
func NamespaceWide(pas []PeerAuth, ns string) []*PeerAuth {
	var out []*PeerAuth
	for i := range pas {
		if pas[i].Namespace == ns && len(pas[i].Selector) == 0 {
			out = append(out, &pas[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return older(out[i], out[j]) })
	return out
}

// NamespacePolicy sets mode on the namespace-wide PeerAuthentication Istio
// uses for ns (the oldest of pas), keeping everything else the team put in
// it, or creates "default" when there is none. It returns the change and
// the policy as it will be. pas must hold every policy of ns, as read with
// a consistent LIST: the change says so (Known), and the diff starts from
// it instead of reading the object again.
func NamespacePolicy(pas []PeerAuth, ns, mode string, now time.Time) (pipeline.Change, PeerAuth) {
	if wide := NamespaceWide(pas, ns); len(wide) > 0 {
		obj := pipeline.Edit(wide[0].Object)
		_ = unstructured.SetNestedField(obj.Object, mode, "spec", "mtls", "mode")
		p := *wide[0]
		p.Mode, p.Object = mode, obj
		return pipeline.Change{Op: pipeline.Replace, Object: obj, Known: true, Live: wide[0].Object}, p
	}
	obj := manifest.New("security.istio.io/v1", "PeerAuthentication", ns, "default")
	_ = unstructured.SetNestedField(obj.Object, mode, "spec", "mtls", "mode")
	var live *unstructured.Unstructured // a policy named default with a selector
	for _, p := range pas {
		if p.Namespace == ns && p.Name == "default" {
			live = p.Object
		}
	}
	return pipeline.Change{Op: pipeline.Apply, Object: obj, Known: true, Live: live},
		PeerAuth{Namespace: ns, Name: "default", Created: now, Mode: mode, Object: obj}
}
