package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func kubeconfig(servers map[string]string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	for ctx, server := range servers {
		cfg.Clusters["cl-"+ctx] = &clientcmdapi.Cluster{Server: server}
		cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: "cl-" + ctx}
	}
	return cfg
}

func TestResolve(t *testing.T) {
	cfg := kubeconfig(map[string]string{"east": "https://east:6443", "west": "https://west:6443", "west-alias": "https://west:6443/", "arn:aws:eks:eu-west-1:1:cluster/prod": "https://prod"})
	ms, err := Resolve(cfg, "west, east", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Context != "west" || ms[1].Server != "https://east:6443" {
		t.Errorf("members = %+v", ms)
	}
	for flag, want := range map[string]string{
		"east,nope":       `unknown context "nope"`,
		"west,west-alias": `contexts "west" and "west-alias" are the same cluster (https://west:6443)`,
		"east,east":       `context "east" is listed twice`,
		"east,":           "empty name",
	} {
		if _, err := Resolve(cfg, flag, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Resolve(%q) = %v, want %q", flag, err, want)
		}
	}
	if _, err := Resolve(cfg, "", true); err == nil || !strings.Contains(err.Error(), "same cluster") {
		t.Errorf("--all-contexts with two names for one cluster: %v", err)
	}
	ms, err = Resolve(kubeconfig(map[string]string{"b": "https://b", "a": "https://a"}), "", true)
	if err != nil || ms[0].Context != "a" || ms[1].Context != "b" {
		t.Errorf("--all-contexts = %+v, %v; want a, b", ms, err)
	}
	if _, err := Resolve(cfg, "east", true); err == nil {
		t.Error("--all-contexts with --context: no error")
	}
	if d := DirName("arn:aws:eks:eu-west-1:1:cluster/prod"); d != "arn-aws-eks-eu-west-1-1-cluster-prod" {
		t.Errorf("DirName = %q", d)
	}
}

func TestAssignWaves(t *testing.T) {
	waves := func(n int, spec string) []int {
		ms := make([]Member, n)
		if err := AssignWaves(ms, spec); err != nil {
			t.Fatalf("AssignWaves(%q): %v", spec, err)
		}
		var out []int
		for _, m := range ms {
			out = append(out, m.Wave)
		}
		return out
	}
	for spec, want := range map[string][]int{
		"":      {1, 2, 3, 4},
		"1,N":   {1, 2, 2, 2},
		"1":     {1, 2, 2, 2},
		"1,2,N": {1, 2, 2, 3},
		"2,5":   {1, 1, 2, 2},
	} {
		if got := waves(4, spec); !reflect.DeepEqual(got, want) {
			t.Errorf("waves %q = %v, want %v", spec, got, want)
		}
	}
	for _, bad := range []string{"0", "N,1", "x", "1,,2"} {
		if err := AssignWaves(make([]Member, 3), bad); err == nil {
			t.Errorf("AssignWaves(%q): no error", bad)
		}
	}
	ms := []Member{{Context: "a"}, {Context: "b"}, {Context: "c"}}
	_ = AssignWaves(ms, "1,N")
	if w := Waves(ms); len(w) != 2 || len(w[1]) != 2 || w[1][0].Context != "b" {
		t.Errorf("Waves = %+v", w)
	}
}

func obj(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": map[string]any{"name": name}, "spec": spec}}
	if kind == "Namespace" {
		u.SetAPIVersion("v1")
	}
	if ns != "" {
		u.SetNamespace(ns)
	}
	return u
}

// TestLayoutRendersEachPlan builds every cluster's directory with
// kustomize and requires exactly that cluster's plan back.
func TestLayoutRendersEachPlan(t *testing.T) {
	strict := func() *unstructured.Unstructured {
		return obj("PeerAuthentication", "shop", "default", map[string]any{"mtls": map[string]any{"mode": "STRICT"}})
	}
	permissive := strict()
	permissive.Object["spec"] = map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}, "portLevelMtls": map[string]any{"8080": map[string]any{"mode": "DISABLE"}}}
	deny := func() *unstructured.Unstructured {
		return obj("AuthorizationPolicy", "shop", "deny", map[string]any{"action": "DENY"})
	}
	// A team's object put back with a field changed keeps kubectl's
	// last-applied annotation, whose value ends in a newline.
	annotated := deny()
	annotated.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}\n"})
	plans := []ClusterPlan{
		{Member: Member{Context: "east", Dir: "east", Wave: 1}, Objects: []*unstructured.Unstructured{obj("Namespace", "", "shop", nil), permissive, deny()}, Report: map[string]any{"blocked": []any{}}},
		{Member: Member{Context: "west", Dir: "west", Wave: 2}, Objects: []*unstructured.Unstructured{obj("Namespace", "", "shop", nil), strict(), annotated}},
		{Member: Member{Context: "north", Dir: "north", Wave: 2}, Objects: []*unstructured.Unstructured{strict(), obj("Namespace", "", "shop", nil), deny(), obj("AuthorizationPolicy", "shop", "allow", map[string]any{"action": "ALLOW"})}},
	}
	files, err := Layout(plans)
	if err != nil {
		t.Fatal(err)
	}
	// STRICT is what most clusters plan: it is the base, east patches it.
	if base := string(files["base/002-peerauthentication-default.shop.yaml"]); !strings.Contains(base, "STRICT") {
		t.Errorf("base PeerAuthentication:\n%s", base)
	}
	if k := string(files["clusters/north/kustomization.yaml"]); strings.Contains(k, "patches") {
		t.Errorf("north plans the base exactly but is patched:\n%s", k)
	}
	if k := string(files["clusters/east/kustomization.yaml"]); !strings.Contains(k, "PERMISSIVE") {
		t.Errorf("east's patch is missing:\n%s", k)
	}
	var rep map[string]any
	if err := json.Unmarshal(files["clusters/north/report.json"], &rep); err != nil || rep["context"] != "north" || rep["wave"] != float64(2) {
		t.Errorf("north report = %v (%v)", rep, err)
	}

	fs := filesys.MakeFsInMemory()
	for name, b := range files {
		if err := fs.WriteFile(name, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range plans {
		rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "clusters/"+p.Dir)
		if err != nil {
			t.Fatalf("kustomize build clusters/%s: %v", p.Dir, err)
		}
		var got, want []string
		for _, r := range rm.Resources() {
			m, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			got = append(got, string(b))
		}
		for _, o := range p.Objects {
			b, _ := json.Marshal(o.Object)
			want = append(want, string(b))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("kustomize build clusters/%s:\n%s\nwant:\n%s", p.Dir, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestReport(t *testing.T) {
	outs := []Outcome{
		{Member: Member{Context: "a", Server: "https://a"}, Stdout: []byte(`{"results":[]}`)},
		{Member: Member{Context: "b", Server: "https://b"}, Code: 69, Error: "cannot reach the Kubernetes API server at b"},
		{Member: Member{Context: "c", Server: "https://c"}, Code: 79},
	}
	if w := Worst(outs); w != 79 {
		t.Errorf("Worst = %d", w)
	}
	var buf bytes.Buffer
	WriteText(&buf, outs)
	for _, want := range []string{"=== a (https://a) ===", "error: cannot reach", "b        https://b  cannot reach the Kubernetes API server at b", "c        https://c  exit 79"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := WriteStructured(&buf, "json", outs); err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["a"]["result"] == nil || doc["b"]["exitCode"] != float64(69) || doc["b"]["error"] == nil {
		t.Errorf("json report = %v", doc)
	}
	// Each bounds its concurrency and keeps the members' order.
	ms := make([]Member, 10)
	var mu sync.Mutex
	running, peak := 0, 0
	res := Each(context.Background(), ms, func(_ context.Context, i int) Outcome {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return Outcome{Code: i}
	})
	for i, o := range res {
		if o.Code != i {
			t.Fatalf("Each out of order: %d at %d", o.Code, i)
		}
	}
	if peak > Concurrency {
		t.Errorf("Each ran %d at once, bound is %d", peak, Concurrency)
	}
}
