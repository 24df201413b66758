package mesh

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func pa(t *testing.T, age int, y string) PeerAuth {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"+y), &u.Object); err != nil {
		t.Fatal(err)
	}
	p, err := ParsePeerAuth(u)
	if err != nil {
		t.Fatal(err)
	}
	p.Created = time.Unix(1_000_000-int64(age), 0)
	return p
}

// TestEffectiveMode walks the precedence chain istiod uses: mesh-wide
// policy → namespace policy → workload policy → portLevelMtls, UNSET
// inheriting at every level, the oldest policy winning within a level.
func TestEffectiveMode(t *testing.T) {
	const root = "istio-system"
	app := map[string]string{"app": "api"}
	meshStrict := "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}"
	meshDisable := "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}"
	nsPermissive := "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}"
	nsUnset := "metadata: {name: default, namespace: shop}\nspec: {}"
	nsStrictNewer := "metadata: {name: strict, namespace: shop}\nspec: {mtls: {mode: STRICT}}"
	wlDisable := "metadata: {name: api, namespace: shop}\nspec: {selector: {matchLabels: {app: api}}, mtls: {mode: DISABLE}}"
	wlPorts := "metadata: {name: api-ports, namespace: shop}\nspec: {selector: {matchLabels: {app: api}}, portLevelMtls: {'8080': {mode: PERMISSIVE}, '9090': {}}}"
	wlOther := "metadata: {name: other, namespace: shop}\nspec: {selector: {matchLabels: {app: other}}, mtls: {mode: DISABLE}}"
	rootSelector := "metadata: {name: sel, namespace: istio-system}\nspec: {selector: {matchLabels: {app: api}}, mtls: {mode: DISABLE}}"
	otherNS := "metadata: {name: default, namespace: elsewhere}\nspec: {mtls: {mode: DISABLE}}"

	type policy struct {
		age int
		y   string
	}
	cases := []struct {
		name     string
		policies []policy
		ns       string
		port     uint32
		mode     string
		source   string
	}{
		{"nothing set: Istio's default", nil, "shop", 0, ModePermissive, ""},
		{"mesh-wide applies", []policy{{1, meshStrict}}, "shop", 8080, ModeStrict, "PeerAuthentication/default -n istio-system"},
		{"namespace overrides mesh", []policy{{1, meshStrict}, {1, nsPermissive}}, "shop", 0, ModePermissive, "PeerAuthentication/default -n shop"},
		{"UNSET namespace inherits mesh", []policy{{1, meshDisable}, {1, nsUnset}}, "shop", 0, ModeDisable, "PeerAuthentication/default -n istio-system"},
		{"workload overrides namespace", []policy{{1, nsPermissive}, {1, wlDisable}}, "shop", 0, ModeDisable, "PeerAuthentication/api -n shop"},
		{"other workload's policy ignored", []policy{{1, nsPermissive}, {1, wlOther}}, "shop", 0, ModePermissive, "PeerAuthentication/default -n shop"},
		{"oldest namespace policy wins", []policy{{5, nsPermissive}, {1, nsStrictNewer}}, "shop", 0, ModePermissive, "PeerAuthentication/default -n shop"},
		{"oldest namespace policy wins (reversed)", []policy{{1, nsPermissive}, {5, nsStrictNewer}}, "shop", 0, ModeStrict, "PeerAuthentication/strict -n shop"},
		{"port-level overrides on its port", []policy{{1, meshStrict}, {1, wlPorts}}, "shop", 8080, ModePermissive, "PeerAuthentication/api-ports -n shop port 8080"},
		{"port-level UNSET inherits", []policy{{1, meshStrict}, {1, wlPorts}}, "shop", 9090, ModeStrict, "PeerAuthentication/default -n istio-system"},
		{"other ports keep the workload mode", []policy{{1, meshStrict}, {1, wlPorts}}, "shop", 7000, ModeStrict, "PeerAuthentication/default -n istio-system"},
		{"oldest workload policy wins: ports of a newer one ignored", []policy{{5, wlDisable}, {1, wlPorts}}, "shop", 8080, ModeDisable, "PeerAuthentication/api -n shop"},
		{"selector policy in root namespace is ignored", []policy{{1, meshStrict}, {1, rootSelector}}, "shop", 0, ModeStrict, "PeerAuthentication/default -n istio-system"},
		{"another namespace's policy is ignored", []policy{{1, otherNS}}, "shop", 0, ModePermissive, ""},
		{"root namespace workloads take the mesh policy", []policy{{1, meshStrict}, {1, rootSelector}}, root, 0, ModeStrict, "PeerAuthentication/default -n istio-system"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pas []PeerAuth
			for _, p := range tc.policies {
				pas = append(pas, pa(t, p.age, p.y))
			}
			mode, source := ChainFor(root, pas, tc.ns, app).Mode(tc.port)
			if mode != tc.mode || source != tc.source {
				t.Fatalf("got %s (%q), want %s (%q)", mode, source, tc.mode, tc.source)
			}
		})
	}
}

func TestParsePeerAuthRejectsBadPortKey(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "x", "namespace": "ns"},
		"spec":     map[string]any{"portLevelMtls": map[string]any{"http": map[string]any{"mode": "STRICT"}}},
	}}
	if _, err := ParsePeerAuth(u); err == nil {
		t.Fatal("a named port in portLevelMtls must be an error")
	}
}

func TestNamespaceWideOldestFirst(t *testing.T) {
	pas := []PeerAuth{
		pa(t, 1, "metadata: {name: b, namespace: shop}\nspec: {}"),
		pa(t, 9, "metadata: {name: c, namespace: shop}\nspec: {}"),
		pa(t, 9, "metadata: {name: a, namespace: shop}\nspec: {}"),
		pa(t, 9, "metadata: {name: w, namespace: shop}\nspec: {selector: {matchLabels: {app: x}}}"),
	}
	var names []string
	for _, p := range NamespaceWide(pas, "shop") {
		names = append(names, p.Name)
	}
	if got := names; len(got) != 3 || got[0] != "a" || got[1] != "c" || got[2] != "b" {
		t.Fatalf("NamespaceWide order = %v, want [a c b]", got)
	}
}

// The change NamespacePolicy returns carries what the planner read: the
// namespace-wide policy it edits, the selector policy named default an
// apply would land on, or nothing; the diff starts from it.
func TestNamespacePolicyCarriesWhatWasRead(t *testing.T) {
	now := time.Unix(2_000_000, 0)
	wide := pa(t, 10, "metadata: {name: permissive, namespace: shop, resourceVersion: '7'}\nspec: {mtls: {mode: PERMISSIVE}}")
	c, p := NamespacePolicy([]PeerAuth{wide}, "shop", "STRICT", now)
	if !c.Known || c.Live == nil || c.Live.GetName() != "permissive" || c.Object.GetName() != "permissive" || p.Mode != "STRICT" {
		t.Fatalf("editing the wide policy: %+v", c)
	}
	if mode, _, _ := unstructured.NestedString(c.Live.Object, "spec", "mtls", "mode"); mode != "PERMISSIVE" {
		t.Errorf("the live object was changed: %s", mode)
	}
	sel := pa(t, 10, "metadata: {name: default, namespace: shop}\nspec: {selector: {matchLabels: {app: api}}}")
	if c, _ := NamespacePolicy([]PeerAuth{sel}, "shop", "STRICT", now); !c.Known || c.Live == nil || c.Live.GetName() != "default" {
		t.Errorf("default with a selector: %+v", c)
	}
	other := pa(t, 10, "metadata: {name: default, namespace: blog}\nspec: {mtls: {mode: STRICT}}")
	if c, _ := NamespacePolicy([]PeerAuth{other}, "shop", "STRICT", now); !c.Known || c.Live != nil {
		t.Errorf("no policy in the namespace: %+v", c)
	}
}
