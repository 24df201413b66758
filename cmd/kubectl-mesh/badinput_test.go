package main

import (
	"strings"
	"testing"
	"time"
)

// TestBadInputFailsCleanly: every bad input exits non-zero with exactly one
// actionable error line, no stack trace, and nothing written to the cluster.
func TestBadInputFailsCleanly(t *testing.T) {
	ns := "bad-input"
	createNamespace(t, ns)
	good := writeFile(t, "good.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bad-input-dr, namespace: bad-input}
spec: {host: reviews}
`)
	badMesh := writeFile(t, "mesh.yaml", "defaultConfig: [1, 2]\n")
	malformed := writeFile(t, "malformed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [\n")
	noKind := writeFile(t, "nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n")
	unknownKind := writeFile(t, "unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: bad-input}\n")
	dead := writeFile(t, "dead.kubeconfig", strings.ReplaceAll(env.KubeconfigFor("admin", "x", ""), env.URL, "https://127.0.0.1:1"))
	badToken := writeFile(t, "badtoken.kubeconfig", env.KubeconfigFor("admin", "not-a-valid-token", ""))

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"unknown flag", nil, []string{"apply", "-f", good, "--bogus"}, 64, "unknown flag: --bogus"},
		{"bad output format", nil, []string{"apply", "-f", good, "-o", "table"}, 64, `invalid -o/--output "table"`},
		{"bad analyze output", nil, []string{"analyze", "-o", "table"}, 64, "use log, json or yaml"},
		{"bad dry-run", nil, []string{"apply", "-f", good, "--dry-run=maybe"}, 64, `invalid --dry-run "maybe"`},
		{"bad threshold", nil, []string{"analyze", "--failure-threshold", "Critical"}, 64, `invalid severity "Critical"`},
		{"bad suppression", nil, []string{"analyze", "-S", "nonsense"}, 64, "invalid --suppress"},
		{"unknown analysis code", nil, []string{"analyze", "-S", "IST9999=Pod x/y"}, 64, `"IST9999" is not an Istio analysis code`},
		{"files-only without files", nil, []string{"analyze", "--use-kube=false"}, 64, "needs at least one FILE"},
		{"no manifests", nil, []string{"apply"}, 64, "no manifests given"},
		{"unreadable file", nil, []string{"apply", "-f", "/nonexistent/file.yaml"}, 65, "cannot read /nonexistent/file.yaml"},
		{"malformed yaml", nil, []string{"apply", "-f", malformed}, 65, "is not valid YAML"},
		{"malformed yaml analyze", nil, []string{"analyze", malformed}, 65, "1 document(s) could not be parsed (listed above): fix them, or pass --ignore-unknown"},
		{"bad output threshold", nil, []string{"analyze", "--output-threshold", "Loud"}, 64, `--output-threshold: invalid severity "Loud"`},
		{"unknown analyzer", nil, []string{"analyze", "--analyzer", "nope.Analyzer"}, 64, `invalid --analyzer "nope.Analyzer": not one of Istio's analyzers`},
		{"missing mesh config", nil, []string{"analyze", "--meshConfigFile", "/nonexistent/mesh.yaml"}, 65, "cannot read --meshConfigFile"},
		{"invalid mesh config", nil, []string{"analyze", "--meshConfigFile", badMesh}, 65, "is not a valid mesh config"},
		{"revision not installed", nil, []string{"analyze", "-A", "--revision", "nope"}, 64, `revision "nope" is not installed`},
		{"revision without the cluster", nil, []string{"analyze", "--use-kube=false", "--revision", "canary", malformed}, 64, "--revision selects a control plane in the cluster"},
		{"object without kind", nil, []string{"apply", "-f", noKind}, 65, "document 1 has no kind"},
		{"unknown kind", nil, []string{"apply", "-f", unknownKind}, 65, "kind Widget (example.com/v1) is not served by the cluster"},
		{"namespace missing", nil, []string{"analyze", "-n", "does-not-exist"}, 64, `namespace "does-not-exist" not found`},
		{"unknown change set", nil, []string{"history", "cs-nope"}, 1, `change set "cs-nope" not found`},
		{"unreachable apiserver", []string{"KUBECONFIG=" + dead}, []string{"apply", "-f", good, "--yes"}, 69, "check that the cluster is running"},
		{"invalid credentials", []string{"KUBECONFIG=" + badToken}, []string{"apply", "-f", good, "--yes"}, 77, "credentials were rejected"},
	}
	before := changeSetCount(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := kubectl(t, tc.env, append([]string{"mesh"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d", r.code, tc.code)
			}
			assertNoLeaks(t, r)
			mustContain(t, "error line", errorLine(t, r), tc.want)
		})
	}
	if object(t, ns, "destinationrule", "bad-input-dr") != nil {
		t.Fatal("a bad invocation wrote the DestinationRule")
	}
	if after := changeSetCount(t); after != before {
		t.Fatalf("bad input recorded change sets: %d → %d", before, after)
	}
}

func changeSetCount(t *testing.T) int {
	t.Helper()
	r := kubectl(t, nil, "get", "secrets", "-n", "kubectl-mesh", "-l", "kubectl-mesh.io/change-set=true", "-o", "name")
	return strings.Count(r.stdout, "\n")
}

// TestForbiddenFailsBeforeWriting uses a real restricted user: RBAC denials
// come before any write and name the verb and resource.
func TestForbiddenFailsBeforeWriting(t *testing.T) {
	ns := "rbac-e2e"
	createNamespace(t, ns)
	f := writeFile(t, "dr.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: guarded, namespace: rbac-e2e}
spec: {host: reviews}
`)
	kc, err := env.WriteKubeconfig("restricted", ns)
	if err != nil {
		t.Fatal(err)
	}
	asRestricted := []string{"KUBECONFIG=" + kc}

	// Istio's analyzers read the whole cluster: a user who cannot is told
	// which kinds, quickly (the access check cancels the analysis), never hung.
	start := time.Now()
	r := kubectl(t, asRestricted, "mesh", "analyze", "-A")
	if r.code != 77 || time.Since(start) > 30*time.Second {
		t.Fatalf("analyze as a restricted user: exit %d after %s", r.code, time.Since(start))
	}
	mustContain(t, "analyze denied", errorLine(t, r), "you cannot list", "cluster-wide", "--use-kube=false")

	// Read-only on DestinationRules: the server-side dry run is denied.
	mustKubectl(t, "create", "role", "dr-read", "-n", ns, "--verb=get,list", "--resource=destinationrules.networking.istio.io")
	mustKubectl(t, "create", "rolebinding", "dr-read", "-n", ns, "--role=dr-read", "--user=restricted")
	r = kubectl(t, asRestricted, "mesh", "apply", "-f", f, "--yes")
	if r.code != 77 {
		t.Fatalf("exit %d, want 77", r.code)
	}
	mustContain(t, "error", errorLine(t, r), `User "restricted" cannot patch resource "destinationrules"`, "ask a cluster admin")

	// Allowed to write DestinationRules but not the journal: still nothing
	// is written, because the change set is recorded before the first write.
	mustKubectl(t, "create", "role", "dr-write", "-n", ns, "--verb=get,list,patch,create", "--resource=destinationrules.networking.istio.io")
	mustKubectl(t, "create", "rolebinding", "dr-write", "-n", ns, "--role=dr-write", "--user=restricted")
	r = kubectl(t, asRestricted, "mesh", "apply", "-f", f, "--yes")
	if r.code != 77 {
		t.Fatalf("exit %d, want 77", r.code)
	}
	mustContain(t, "error", errorLine(t, r), "journal: cannot record change set", `cannot get resource "secrets"`)
	if object(t, ns, "destinationrule", "guarded") != nil {
		t.Fatal("a forbidden apply wrote the DestinationRule")
	}

	// With the journal permitted too, the same user succeeds.
	kubectl(t, nil, "create", "namespace", "kubectl-mesh") // may exist already
	mustKubectl(t, "create", "role", "journal", "-n", "kubectl-mesh", "--verb=get,list,create,update", "--resource=secrets")
	mustKubectl(t, "create", "rolebinding", "journal", "-n", "kubectl-mesh", "--role=journal", "--user=restricted")
	r = kubectl(t, asRestricted, "mesh", "apply", "-f", f, "--yes")
	if r.code != 0 {
		t.Fatalf("exit %d with the permissions granted: %s", r.code, r.stderr)
	}
	if object(t, ns, "destinationrule", "guarded") == nil {
		t.Fatal("apply with permissions did not write")
	}
}

func mustKubectl(t *testing.T, args ...string) {
	t.Helper()
	if r := kubectl(t, nil, args...); r.code != 0 {
		t.Fatalf("kubectl %v: %s", args, r.stderr)
	}
}
