package pipeline_test

import (
	"context"
	"testing"

	"istio.io/istio/pkg/config/schema/gvk"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/analysis"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli/clitest"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads/readstest"
)

type routeWriter struct{}

func (routeWriter) Writes() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gvk.VirtualService.Kubernetes(), gvk.DestinationRule.Kubernetes()}
}

// A planner that writes routes reads the pods, Services and routes of its
// namespace; the plan's analysis reads them cluster-wide. With the
// engine's prefetch, each kind costs one LIST, whoever reads it.
func TestPlannerAndAnalysisShareOneRead(t *testing.T) {
	ctx := context.Background()
	l := readstest.New(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "blog", Name: "web-1", Labels: map[string]string{"app": "web"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}},
	)
	c := cli.New(genericiooptions.NewTestIOStreamsDiscard())
	c.Source = clitest.Source{Reads: l}
	pipeline.Prefetch(ctx, c, routeWriter{})
	rd, err := c.Reads()
	if err != nil {
		t.Fatal(err)
	}
	pods, err := reads.List[*corev1.Pod](ctx, rd, reads.Request{Resource: mesh.Pods, Namespace: "shop", Labels: "app=web"})
	if err != nil || len(pods) != 1 {
		t.Fatalf("planner's pods: %v, %v", pods, err)
	}
	if _, err := reads.List[*corev1.Service](ctx, rd, reads.Request{Resource: mesh.Services, Namespace: "shop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.VirtualServices, Namespace: "shop"}); err != nil {
		t.Fatal(err)
	}
	opts := pipeline.AnalysisOptions("istio-system", routeWriter{}.Writes()...)
	if _, err := analysis.RunLive(ctx, rd, opts, opts); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, q := range l.Asked {
		seen[q.Resource.String()]++
		if q.Namespace != "" && q.Resource.Resource != "configmaps" {
			t.Errorf("%s: read in one namespace, not served from the analyzers' LIST", q)
		}
	}
	for r, n := range seen {
		if n > 1 {
			t.Errorf("%s listed %d times", r, n)
		}
	}
	if want := len(analysis.Requests(opts)); len(l.Asked) != want {
		t.Errorf("%d LISTs, want the analyzers' %d: %s", len(l.Asked), want, l.Requests())
	}

	// What follows the apply reads anew.
	c.ForgetReads()
	if again, _ := c.Reads(); again == rd {
		t.Error("ForgetReads kept the reader")
	}
}

// No prefetch when the plan will not be analyzed (manifests printed), nor
// for a workflow that does not name its kinds.
func TestNoPrefetchWithoutAnalysis(t *testing.T) {
	for name, set := range map[string]func(c *cli.Context) any{
		"-o yaml":           func(c *cli.Context) any { c.Engine.Output = "yaml"; return routeWriter{} },
		"--dry-run=client":  func(c *cli.Context) any { c.Engine.DryRun = cli.DryRunClient; return routeWriter{} },
		"no kinds declared": func(*cli.Context) any { return struct{}{} },
	} {
		l := readstest.New()
		c := cli.New(genericiooptions.NewTestIOStreamsDiscard())
		c.Source = clitest.Source{Reads: l}
		pipeline.Prefetch(context.Background(), c, set(c))
		rd, _ := c.Reads()
		if rd.Requests() != 0 || len(l.Asked) != 0 {
			t.Errorf("%s: prefetched %s", name, l.Requests())
		}
	}
}
