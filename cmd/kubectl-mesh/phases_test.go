package main

import (
	"testing"
)

// TestApplyWaitsForRollouts: verify steps wait for real rollouts on the
// kwok node, and a Deployment that cannot become ready times out with what
// to do next.
func TestApplyWaitsForRollouts(t *testing.T) {
	ns := "rollout-e2e"
	createNamespace(t, ns)
	web := writeFile(t, "web.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: rollout-e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
`)
	r := mesh(t, 0, "apply", "-f", web, "--yes")
	mustContain(t, "verify", r.stderr, "Verifying: Deployment/web -n rollout-e2e rolled out", "2 of 2 available")
	if d := object(t, ns, "deployment", "web"); d["status"].(map[string]any)["availableReplicas"] != float64(2) {
		t.Fatalf("deployment not available after the verify step: %v", d["status"])
	}

	stuck := writeFile(t, "stuck.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: rollout-e2e}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {no-such-node: "true"}
      containers: [{name: stuck, image: nginx:1.27}]
`)
	r = mesh(t, 1, "apply", "-f", stuck, "--yes", "--timeout", "3s")
	mustContain(t, "timeout", errorLine(t, r), `verify "Deployment/stuck -n rollout-e2e rolled out" failed`, "did not roll out", "kubectl describe deployment stuck -n rollout-e2e", "kubectl mesh undo cs-")

	// --wait=false skips the wait.
	r = mesh(t, 0, "apply", "-f", stuck, "--yes", "--wait=false", "--dry-run=server")
	mustContain(t, "no changes", r.stderr, "No changes")
}

// TestNamespaceAndCRDCreatedInOnePlan: objects whose namespace or CRD the
// same plan creates are shown as not yet server-validated, and applied in
// the right order (CRD established and discovery refreshed first).
func TestNamespaceAndCRDCreatedInOnePlan(t *testing.T) {
	f := writeFile(t, "bundle.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: phases-new}
data: {a: "1"}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: phases-new}
spec: {size: 3}
---
apiVersion: v1
kind: Namespace
metadata: {name: phases-new}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`)
	r := mesh(t, 1, "apply", "-f", f, "--dry-run=server")
	mustContain(t, "diff", r.stdout,
		"ConfigMap/settings -n phases-new (create, not yet server-validated: namespace phases-new is created by this plan)",
		"Widget.example.com/w1 -n phases-new (create, not yet server-validated: its CRD is created by this plan)")
	r = mesh(t, 0, "apply", "-f", f, "--yes")
	mustContain(t, "apply order", r.stderr, "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com created\nNamespace/phases-new created")
	if object(t, "phases-new", "widgets.example.com", "w1") == nil || object(t, "phases-new", "configmap", "settings") == nil {
		t.Fatal("objects in the new namespace / of the new CRD were not created")
	}
	// Undo removes them all, namespace and CRD last.
	mesh(t, 0, "undo", lastChangeSet(t)["id"].(string), "--yes")
	waitGone(t, nil, "undo left the CRD", "get", "crd", "widgets.example.com")
}

// waitGone polls `kubectl args…` until it fails (the object is gone):
// deletions of CRDs and namespaces finish asynchronously.
func waitGone(t *testing.T, extraEnv []string, msg string, args ...string) {
	t.Helper()
	for range 150 {
		if r := kubectl(t, extraEnv, args...); r.code != 0 {
			return
		}
		sleep()
	}
	t.Fatal(msg)
}
