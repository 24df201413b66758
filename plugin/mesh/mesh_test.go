package mesh

import (
	"context"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads/readstest"
)

func uid(n int64) *int64 { return &n }

func TestClassifyPod(t *testing.T) {
	cases := []struct {
		name string
		pod  corev1.Pod
		want Pod
	}{
		{"plain", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}, Pod{}},
		{"status annotation, default rev", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationStatus: "{}"}}},
			Pod{HasSidecar: true, Revision: "default"}},
		{"proxy container with rev", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelRev: "1-31"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}},
			Pod{HasSidecar: true, Revision: "1-31"}},
		// What Istio's injector writes (seen from a real istiod).
		{"revision from the injector's status", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			AnnotationStatus: `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"1-31"}`}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}},
			Pod{HasSidecar: true, Revision: "1-31"}},
		{"native sidecar init container", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "istio-proxy"}}}},
			Pod{HasSidecar: true, Revision: "default"}},
		{"opt-out annotation", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationInject: "false"}}}, Pod{OptOut: true}},
		{"opt-out label", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelInjectPod: "false"}}}, Pod{OptOut: true}},
		{"hostNetwork", corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true}}, Pod{HostNetwork: true}},
		{"container uid 1337", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(1337)}}}}}, Pod{UID1337: true}},
		{"pod uid 1337", corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: uid(1337)}}}, Pod{UID1337: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyPod(&tc.pod)
			if got.Object != &tc.pod {
				t.Fatal("ClassifyPod must keep the pod it read")
			}
			got.Object = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNeedsRestart(t *testing.T) {
	w := Workload{Kind: "Deployment", Pods: []Pod{{HasSidecar: true, Revision: "1-30"}}}
	if !w.NeedsRestart("1-31") || w.NeedsRestart("1-30") {
		t.Fatal("revision skew not detected")
	}
	if (&Workload{Pods: []Pod{{OptOut: true}, {HostNetwork: true}}}).NeedsRestart("x") {
		t.Fatal("opted-out and hostNetwork pods must never need a restart")
	}
}

func TestRevisionsAndTags(t *testing.T) {
	rd := readstest.Reader(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-1-31", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", LabelRev: "1-31"}}},
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tag-stable", Labels: map[string]string{LabelTag: "prod-stable", LabelRev: "1-31"}}},
	)
	cps, err := Revisions(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	want := []ControlPlane{{Revision: "1-31", Namespace: "istio-system", Tags: []string{"prod-stable"}}, {Revision: "default", Namespace: "istio-system"}}
	if !reflect.DeepEqual(cps, want) {
		t.Fatalf("got %+v", cps)
	}
	if cp, ok := Resolve(cps, "prod-stable"); !ok || cp.Revision != "1-31" {
		t.Fatal("tag not resolved")
	}
	if got := Names(cps); !reflect.DeepEqual(got, []string{"1-31", "default", "prod-stable"}) {
		t.Fatalf("names %v", got)
	}
	if l := InjectionLabels("default"); l[LabelInjection] != "enabled" || len(l) != 1 {
		t.Fatalf("default labels %v", l)
	}
	if l := InjectionLabels("prod-stable"); l[LabelRev] != "prod-stable" || len(l) != 1 {
		t.Fatalf("tag labels %v", l)
	}
}
