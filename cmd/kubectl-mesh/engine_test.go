package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// object returns `kubectl get -o json` of one object, or nil if absent.
func object(t *testing.T, ns, kind, name string) map[string]any {
	t.Helper()
	r := kubectl(t, nil, "get", "-n", ns, kind, name, "-o", "json", "--show-managed-fields")
	if r.code != 0 {
		if strings.Contains(r.stderr, "NotFound") {
			return nil
		}
		t.Fatalf("get %s/%s: %s", kind, name, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// desired is the part of an object undo must restore exactly.
func desired(o map[string]any) map[string]any {
	md := o["metadata"].(map[string]any)
	var managers []string
	for _, mf := range md["managedFields"].([]any) {
		m := mf.(map[string]any)
		managers = append(managers, m["manager"].(string)+"/"+m["operation"].(string))
	}
	sort.Strings(managers)
	return map[string]any{"labels": md["labels"], "annotations": md["annotations"], "spec": o["spec"], "data": o["data"], "managers": managers}
}

func lastChangeSet(t *testing.T) map[string]any {
	t.Helper()
	return lastChangeSetOn(t, nil)
}

// lastChangeSetOn is the newest change set of the cluster extraEnv points at.
func lastChangeSetOn(t *testing.T, extraEnv []string) map[string]any {
	t.Helper()
	r := kubectl(t, extraEnv, "mesh", "history", "-o", "json")
	if r.code != 0 {
		t.Fatalf("history: exit %d: %s", r.code, r.stderr)
	}
	var sets []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &sets); err != nil || len(sets) == 0 {
		t.Fatalf("history -o json: %v\n%s", err, r.stdout)
	}
	return sets[0]
}

// TestPlanDiffApplyHistoryUndo runs the whole engine on an update of an
// object someone else created plus two new objects (one a Secret).
func TestPlanDiffApplyHistoryUndo(t *testing.T) {
	ns := "engine-cycle"
	createNamespace(t, ns)
	// A DestinationRule created by a teammate with kubectl (another field manager).
	orig := writeFile(t, "orig.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: engine-cycle, annotations: {team: books}}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: cycle-v1}}
`)
	if r := kubectl(t, nil, "apply", "--server-side", "--field-manager=teammate", "-f", orig); r.code != 0 {
		t.Fatal(r.stderr)
	}
	before := desired(object(t, ns, "destinationrule", "reviews"))

	change := writeFile(t, "change.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: engine-cycle}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: cycle-v1}}
  - {name: v2, labels: {version: cycle-v2}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: engine-cycle}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Secret
metadata: {name: reviews-creds, namespace: engine-cycle}
stringData: {token: s3cr3t-value}
`)
	// The teammate owns spec.subsets: a conflict, explained, nothing written.
	r := mesh(t, 1, "apply", "-f", change, "--dry-run=server")
	mustContain(t, "conflict", errorLine(t, r), `conflict with "teammate"`, "re-run with --force-conflicts")

	// No pods run these versions (labels no other test uses: the analyzer
	// looks for them across namespaces): Istio's IST0173 names the planned
	// DestinationRule and blocks until accepted.
	r = mesh(t, 79, "apply", "-f", change, "--dry-run=server", "--force-conflicts")
	mustContain(t, "analysis", r.stderr, "Error [IST0173] (DestinationRule engine-cycle/reviews")
	mustContain(t, "blocked", errorLine(t, r), "IST0173", "--accept")
	accept := "--accept=IST0173"

	// Diff only: exit 1 (changes), secret masked, nothing written.
	r = mesh(t, 1, "apply", "-f", change, "--dry-run=server", "--force-conflicts", accept)
	mustContain(t, "diff", r.stdout, "+  - labels:", "+      version: cycle-v2", "token: '*** (after)'", "--- live/Service/reviews -n engine-cycle")
	if strings.Contains(r.stdout+r.stderr, "s3cr3t") {
		t.Fatal("secret value leaked into the diff")
	}
	mustContain(t, "summary", r.stderr, "Plan: 2 to create, 1 to update, 0 to delete")
	if object(t, ns, "service", "reviews") != nil {
		t.Fatal("--dry-run=server created the Service")
	}

	// No terminal, no --yes: refused with the flag to add; nothing written.
	r = mesh(t, 64, "apply", "-f", change, "--force-conflicts", accept)
	mustContain(t, "error", errorLine(t, r), "re-run with --yes")
	if object(t, ns, "service", "reviews") != nil {
		t.Fatal("unconfirmed apply created the Service")
	}

	// Apply.
	r = mesh(t, 0, "apply", "-f", change, "--yes", "--force-conflicts", accept)
	mustContain(t, "apply", r.stderr, "Recorded change set cs-", "Applied change set")
	dr := object(t, ns, "destinationrule", "reviews")
	if subsets := dr["spec"].(map[string]any)["subsets"].([]any); len(subsets) != 2 {
		t.Fatalf("subsets after apply: %v", subsets)
	}
	if dr["metadata"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/managed-by"] != "kubectl-mesh" {
		t.Fatal("applied object lacks the managed-by label")
	}

	// Re-run: no changes.
	r = mesh(t, 0, "apply", "-f", change, "--yes", "--force-conflicts", accept)
	mustContain(t, "re-run", r.stderr, "No changes")

	// History shows it.
	cs := lastChangeSet(t)
	id := cs["id"].(string)
	if cs["status"] != "applied" || len(cs["entries"].([]any)) != 3 || fmt.Sprint(cs["accepted"]) != "[IST0173]" {
		t.Fatalf("history entry: %+v", cs)
	}
	if strings.Contains(mesh(t, 0, "history", "-o", "json").stdout, "prior") {
		t.Fatal("history -o json includes recorded object contents")
	}
	r = mesh(t, 0, "history", id)
	mustContain(t, "history ID", r.stdout, "update  DestinationRule/reviews -n engine-cycle (applied)", "create  Secret/reviews-creds -n engine-cycle (applied)")
	if strings.Contains(r.stdout, "s3cr3t") {
		t.Fatal("history leaks a secret")
	}

	// Undo restores exactly: the teammate's object (field owners included)
	// comes back, the created ones are gone, and the undo is journaled.
	r = mesh(t, 0, "undo", id, "--yes")
	mustContain(t, "undo", r.stderr, "Undoing "+id)
	after := desired(object(t, ns, "destinationrule", "reviews"))
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("undo did not restore the DestinationRule:\nbefore %v\nafter  %v", before, after)
	}
	if object(t, ns, "service", "reviews") != nil || object(t, ns, "secret", "reviews-creds") != nil {
		t.Fatal("undo left created objects behind")
	}
	undo := lastChangeSet(t)
	if undo["undoOf"] != id {
		t.Fatalf("undo not journaled as undo of %s: %+v", id, undo)
	}
	r = mesh(t, 0, "history")
	mustContain(t, "history", r.stdout, "undone by "+undo["id"].(string))
	// Undoing twice is refused with what to do instead.
	r = mesh(t, 64, "undo", id, "--yes")
	mustContain(t, "error", errorLine(t, r), "already undone")
}

// TestApplyFailsHalfWayAndUndoCleansUp: the second of three objects is
// rejected by the API server at apply time (a ResourceQuota admits each
// object alone in the dry run, but not the second one for real).
func TestApplyFailsHalfWayAndUndoCleansUp(t *testing.T) {
	ns := "engine-halfway"
	createNamespace(t, ns)
	quota := writeFile(t, "quota.yaml", `apiVersion: v1
kind: ResourceQuota
metadata: {name: one-dr, namespace: engine-halfway}
spec: {hard: {count/destinationrules.networking.istio.io: "1"}}
`)
	if r := kubectl(t, nil, "apply", "-f", quota); r.code != 0 {
		t.Fatal(r.stderr)
	}
	waitQuota(t, ns)
	three := writeFile(t, "three.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: engine-halfway}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: engine-halfway}
spec: {host: b}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c, namespace: engine-halfway}
spec: {host: c}
`)
	r := mesh(t, 1, "apply", "-f", three, "--yes")
	line := errorLine(t, r)
	mustContain(t, "error", line, "apply failed after 1 of 3 change(s)", "DestinationRule.networking.istio.io/b", "exceeded quota", "kubectl mesh undo cs-")
	if object(t, ns, "destinationrule", "a") == nil || object(t, ns, "destinationrule", "b") != nil || object(t, ns, "destinationrule", "c") != nil {
		t.Fatal("expected exactly the first object applied")
	}
	cs := lastChangeSet(t)
	if cs["status"] != "failed" {
		t.Fatalf("change set status %v, want failed", cs["status"])
	}
	applied := 0
	for _, c := range cs["entries"].([]any) {
		if c.(map[string]any)["applied"] == true {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("journal says %d applied, want 1", applied)
	}
	mesh(t, 0, "undo", cs["id"].(string), "--yes")
	if object(t, ns, "destinationrule", "a") != nil {
		t.Fatal("undo of the failed change set left the first object")
	}
}

func waitQuota(t *testing.T, ns string) {
	t.Helper()
	for range 100 {
		r := kubectl(t, nil, "get", "resourcequota", "-n", ns, "one-dr", "-o", "jsonpath={.status.hard}")
		if strings.Contains(r.stdout, "destinationrules") {
			return
		}
		sleep()
	}
	t.Fatal("quota status never populated")
}

// TestOutputModesWriteNothing: -o yaml|json print the plan, --output-dir
// writes files and a kustomization, --dry-run=client prints the plan; none
// of them touches the cluster.
func TestOutputModesWriteNothing(t *testing.T) {
	ns := "engine-output"
	createNamespace(t, ns)
	f := writeFile(t, "m.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: engine-output}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: hidden, namespace: engine-output}
stringData: {password: hunter2}
`)
	r := mesh(t, 0, "apply", "-f", f, "-o", "yaml")
	mustContain(t, "yaml", r.stdout, "kind: ConfigMap", "app.kubernetes.io/managed-by: kubectl-mesh", "password: '***'")
	r = mesh(t, 0, "apply", "-f", f, "-o", "json")
	var list map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list["items"].([]any)) != 2 {
		t.Fatalf("-o json: %v", err)
	}
	r = mesh(t, 0, "apply", "-f", f, "-o", "yaml", "--show-secrets")
	mustContain(t, "yaml", r.stdout, "hunter2")
	dir := filepath.Join(t.TempDir(), "out")
	mesh(t, 0, "apply", "-f", f, "--output-dir", dir)
	k, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "kustomization", string(k), "001-configmap-settings.engine-output.yaml", "002-secret-hidden.engine-output.yaml")
	r = mesh(t, 0, "apply", "-f", f, "--dry-run=client")
	mustContain(t, "client dry-run", r.stdout, "Phase 1: apply manifests", "apply   ConfigMap/settings -n engine-output")
	if object(t, ns, "configmap", "settings") != nil {
		t.Fatal("an output mode wrote to the cluster")
	}
}
