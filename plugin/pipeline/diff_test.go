package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

const liveDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
  resourceVersion: "42"
  uid: 1234
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`

const plannedDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
  resourceVersion: "43"
  generation: 4
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// golden compares got with testdata/name; UPDATE_GOLDEN=1 rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

func TestDiffUpdateGolden(t *testing.T) {
	d := &ObjectDiff{Ref: "DestinationRule.networking.istio.io/reviews -n bookinfo", Before: obj(t, liveDR), After: obj(t, plannedDR)}
	if d.Action() != "update" || !d.Changed() {
		t.Fatalf("action %s changed %v", d.Action(), d.Changed())
	}
	var out bytes.Buffer
	if err := (&DiffPrinter{Out: &out}).Print([]*ObjectDiff{d}); err != nil {
		t.Fatal(err)
	}
	golden(t, "diff-update.txt", out.String())
}

func TestDiffCreateDeleteAndUnchanged(t *testing.T) {
	create := &ObjectDiff{Ref: "x", After: obj(t, plannedDR)}
	del := &ObjectDiff{Ref: "y", Before: obj(t, liveDR)}
	// Only bookkeeping differs: not a change.
	same := &ObjectDiff{Ref: "z", Before: obj(t, liveDR), After: obj(t, strings.Replace(liveDR, `resourceVersion: "42"`, `resourceVersion: "99"`, 1))}
	for d, want := range map[*ObjectDiff]string{create: "create", del: "delete", same: "unchanged"} {
		if got := d.Action(); got != want {
			t.Errorf("%s: action %s, want %s", d.Ref, got, want)
		}
	}
	var out bytes.Buffer
	if err := (&DiffPrinter{Out: &out}).Print([]*ObjectDiff{create, del, same}); err != nil {
		t.Fatal(err)
	}
	golden(t, "diff-create-delete.txt", out.String())
}

func TestDiffColorsOnlyWhenAsked(t *testing.T) {
	d := &ObjectDiff{Ref: "r", Before: obj(t, liveDR), After: obj(t, plannedDR)}
	var plain, color bytes.Buffer
	_ = (&DiffPrinter{Out: &plain}).Print([]*ObjectDiff{d})
	_ = (&DiffPrinter{Out: &color, Color: true}).Print([]*ObjectDiff{d})
	if strings.Contains(plain.String(), "\x1b[") {
		t.Fatal("plain diff has escape codes")
	}
	if !strings.Contains(color.String(), green+"+  - labels:") {
		t.Fatalf("colored diff lacks a green addition:\n%q", color.String())
	}
}

func TestDiffSecretsMaskedUnlessShown(t *testing.T) {
	before := obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\ndata: {password: aHVudGVyMg==, same: YQ==}\n")
	after := obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\ndata: {password: bmV3, same: YQ==}\n")
	d := &ObjectDiff{Ref: "Secret/s -n n", Before: before, After: after}
	var out bytes.Buffer
	_ = (&DiffPrinter{Out: &out}).Print([]*ObjectDiff{d})
	s := out.String()
	if strings.Contains(s, "aHVudGVyMg==") || strings.Contains(s, "bmV3") {
		t.Fatalf("secret value in diff:\n%s", s)
	}
	for _, want := range []string{"-  password: '*** (before)'", "+  password: '*** (after)'", "   same: '***'"} {
		if !strings.Contains(s, want) {
			t.Fatalf("diff lacks %q:\n%s", want, s)
		}
	}
	out.Reset()
	_ = (&DiffPrinter{Out: &out, ShowSecrets: true}).Print([]*ObjectDiff{d})
	if !strings.Contains(out.String(), "bmV3") {
		t.Fatal("--show-secrets did not show the value")
	}
	// The originals are untouched (masking works on copies).
	if before.Object["data"].(map[string]any)["password"] != "aHVudGVyMg==" {
		t.Fatal("masking modified the live object")
	}
}

func TestExternalDiffGetsLiveAndMergedDirs(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mydiff")
	log := filepath.Join(dir, "args")
	// Records its arguments and the files it was given, exits 1 like diff.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+log+"\nls \"$1\" \"$2\" >> "+log+"\ncat \"$2\"/* >> "+log+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := &ObjectDiff{Ref: "DestinationRule.networking.istio.io/reviews -n bookinfo", Before: obj(t, liveDR), After: obj(t, plannedDR),
		Change: Change{Op: Apply, Object: obj(t, plannedDR)}}
	var out bytes.Buffer
	if err := (&DiffPrinter{Out: &out, External: script}).Print([]*ObjectDiff{d}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"/LIVE", "/MERGED", "networking.istio.io.v1.DestinationRule.bookinfo.reviews", "version: v2"} {
		if !strings.Contains(got, want) {
			t.Fatalf("external diff input lacks %q:\n%s", want, got)
		}
	}
}

func TestUnchangedSinceDiffIgnoresStatusOnly(t *testing.T) {
	before := obj(t, liveDR)
	d := &ObjectDiff{Ref: "r", Before: before}
	churn := before.DeepCopy()
	churn.Object["status"] = map[string]any{"observedGeneration": int64(9)}
	churn.SetResourceVersion("77")
	if err := unchangedSinceDiff(d, churn); err != nil {
		t.Fatalf("status/resourceVersion churn reported as an edit: %v", err)
	}
	edited := before.DeepCopy()
	edited.SetLabels(map[string]string{"owner": "someone"})
	if err := unchangedSinceDiff(d, edited); err == nil || !strings.Contains(err.Error(), "was changed by someone else") {
		t.Fatalf("label edit not detected: %v", err)
	}
	if err := unchangedSinceDiff(d, nil); err == nil || !strings.Contains(err.Error(), "was deleted") {
		t.Fatalf("deletion not detected: %v", err)
	}
	if err := unchangedSinceDiff(&ObjectDiff{Ref: "n"}, before); err == nil || !strings.Contains(err.Error(), "was created") {
		t.Fatalf("creation not detected: %v", err)
	}
}
