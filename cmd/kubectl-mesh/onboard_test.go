package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnboard: a new team gets its namespace and bundle; a re-run changes
// nothing; dry-run authorization is enforced later with --enforce alone;
// undo removes everything; an existing namespace with workloads is adopted
// in PERMISSIVE with the migrate-mtls findings.
func TestOnboard(t *testing.T) {
	installFakeControlPlane(t)
	createNamespace(t, "frontend") // Istio's analyzers refuse callers from a namespace that does not exist (IST0101)

	// GitOps: --output-dir writes the bundle and a kustomization, nothing else.
	dir := t.TempDir()
	mesh(t, 0, "onboard", "gitops", "--allow-from", "ingress", "--output-dir", dir)
	for _, f := range []string{"kustomization.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("--output-dir: %v", err)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) < 6 {
		t.Fatalf("--output-dir wrote %d files, want the bundle (namespace, policies, Sidecar) and a kustomization", len(files))
	}
	if r := kubectl(t, nil, "get", "namespace", "gitops"); r.code == 0 {
		t.Fatal("--output-dir created the namespace")
	}
	r := mesh(t, 0, "onboard", "payments", "-n", "payments", "--allow-from", "same-namespace,ingress,namespace:frontend", "--egress-to", "shared", "--team-group", "payments-devs", "--yes")
	mustContain(t, "summary", r.stdout, "Team payments is onboarded in namespace payments", "injection from 1-31; mTLS STRICT", "callers allowed (enforced): same-namespace, ingress, namespace:frontend")
	if l := labelsOf(t, "namespace", "", "payments"); l["kubectl-mesh.io/team"] != "payments" || l["istio.io/rev"] != "1-31" {
		t.Fatalf("namespace labels: %v", l)
	}
	if got := jsonpath(t, "payments", "peerauthentication", "default", "{.spec.mtls.mode}"); got != "STRICT" {
		t.Fatalf("mTLS: %q", got)
	}
	if got := jsonpath(t, "payments", "authorizationpolicy", "allow-callers", "{.spec.rules[*].from[*].source}"); !strings.Contains(got, `"namespaces":["payments","frontend"]`) || !strings.Contains(got, "sa/istio-ingressgateway-service-account") {
		t.Fatalf("allow rules: %s", got)
	}
	if got := jsonpath(t, "payments", "sidecar", "default", "{.spec.egress[0].hosts}"); got != `["./*","istio-system/*","shared/*"]` {
		t.Fatalf("sidecar egress: %s", got)
	}
	if r := kubectl(t, nil, "auth", "can-i", "create", "virtualservices.networking.istio.io", "-n", "payments", "--as", "dev", "--as-group", "payments-devs"); strings.TrimSpace(r.stdout) != "yes" {
		t.Fatalf("the team group cannot edit VirtualServices: %s", r.stdout)
	}
	first := lastChangeSet(t)["id"].(string)

	// The options live on the namespace: a bare re-run is a no-op.
	r = mesh(t, 0, "onboard", "payments", "-n", "payments", "--yes")
	mustContain(t, "re-run", r.stderr, "No changes")

	// Dry-run authorization, then --enforce alone flips it.
	mesh(t, 0, "onboard", "payments", "-n", "payments", "--authz-dry-run", "--yes")
	if got := jsonpath(t, "payments", "authorizationpolicy", "allow-nothing", `{.metadata.annotations.istio\.io/dry-run}`); got != "true" {
		t.Fatalf("dry-run annotation: %q", got)
	}
	r = mesh(t, 0, "onboard", "payments", "-n", "payments", "--enforce", "--yes")
	mustContain(t, "enforce", r.stdout, "callers allowed (enforced)")
	if got := jsonpath(t, "payments", "authorizationpolicy", "allow-nothing", `{.metadata.annotations.istio\.io/dry-run}`); got != "" {
		t.Fatalf("--enforce left the dry-run annotation: %q", got)
	}

	// An external host whose TLS Secret is missing and a JWKS endpoint that
	// does not answer are warnings that say what to do; Istio's analyzers
	// block on what cannot work yet (no gateway pods, no Service "web").
	r = kubectl(t, nil, "mesh", "onboard", "payments", "-n", "payments", "--dry-run=server",
		"--host", "pay.example.test", "--host-service", "web:8080",
		"--jwt-issuer", "https://idp.example.test", "--jwks-uri", "https://127.0.0.1:1/jwks")
	assertNoLeaks(t, r)
	if r.code != 79 {
		t.Fatalf("exit %d, want 79 (blocked by IST0101)", r.code)
	}
	mustContain(t, "warnings", r.stderr,
		`Error [IST0101] (VirtualService payments/payments-external plan`, `Referenced host not found: "web.payments.svc.cluster.local"`,
		"Warning [ONBOARD-TLS-SECRET] TLS Secret payments-tls is missing in istio-system",
		"hint: kubectl create secret tls payments-tls -n istio-system --cert=CERT.pem --key=KEY.pem",
		"Warning [ONBOARD-JWKS-UNREACHABLE] cannot fetch https://127.0.0.1:1/jwks")
	if r := kubectl(t, nil, "get", "gateway", "payments-external", "-n", "payments"); r.code == 0 {
		t.Fatal("--dry-run=server created the Gateway")
	}

	// Another team cannot take the namespace without --adopt.
	r = mesh(t, 64, "onboard", "billing", "-n", "payments", "--yes")
	mustContain(t, "owned", errorLine(t, r), "namespace payments belongs to team payments: add --adopt")

	// Undo of the first onboarding removes the namespace and its bundle.
	mesh(t, 0, "undo", first, "--yes")
	waitGone(t, nil, "undo left the namespace", "get", "namespace", "payments")

	// An existing namespace with workloads: adopted in PERMISSIVE, with the
	// findings STRICT will face; STRICT on request is refused.
	createNamespace(t, "ledger")
	mustKubectl(t, "apply", "-f", writeFile(t, "ledger.yaml", meshApp("ledger", "books", 8080, false)))
	mustKubectl(t, "rollout", "status", "deployment/books", "-n", "ledger", "--timeout=60s")
	r = mesh(t, 64, "onboard", "ledger", "-n", "ledger", "--yes")
	mustContain(t, "adopt needed", errorLine(t, r), "namespace ledger exists: add --adopt")
	r = mesh(t, 64, "onboard", "ledger", "-n", "ledger", "--adopt", "--mtls", "strict", "--yes")
	mustContain(t, "strict refused", errorLine(t, r), "move it to STRICT with kubectl mesh migrate-mtls -n ledger")
	r = mesh(t, 0, "onboard", "ledger", "-n", "ledger", "--adopt", "--yes")
	mustContain(t, "adopted", r.stderr, "starts PERMISSIVE", "MTLS-NO-SIDECAR", "kubectl mesh inject -n ledger --restart")
	if got := jsonpath(t, "ledger", "peerauthentication", "default", "{.spec.mtls.mode}"); got != "PERMISSIVE" {
		t.Fatalf("adopted namespace mTLS: %q", got)
	}
}

func TestOnboardBadInput(t *testing.T) {
	installFakeControlPlane(t)
	createNamespace(t, "onboard-taken")
	mustKubectl(t, "label", "namespace", "onboard-taken", "kubectl-mesh.io/team=search")
	before := changeSetCount(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"onboard", "-n", "x"}, "name the team"},
		{[]string{"onboard", "Payments"}, `invalid team "Payments"`},
		{[]string{"onboard", "pay", "-n", "Pay_NS"}, `invalid namespace "Pay_NS"`},
		{[]string{"onboard", "pay", "-n", "onboard-taken"}, "belongs to team search"},
		{[]string{"onboard", "pay", "--jwt-issuer", "http://idp.example.com", "--jwks-uri", "https://idp.example.com/k"}, "must be https"},
		{[]string{"onboard", "pay", "--jwt-issuer", "https://idp.example.com", "--jwks-uri", "https//bad"}, "--jwks-uri"},
		{[]string{"onboard", "pay", "--host", "pay..example.com", "--host-service", "web:80"}, `invalid --host "pay..example.com"`},
		{[]string{"onboard", "pay", "--host", "pay.example.com"}, "--host needs --host-service"},
		{[]string{"onboard", "pay", "--allow-from", "anyone"}, `invalid --allow-from "anyone"`},
		{[]string{"onboard", "pay", "--mtls", "off"}, `invalid --mtls "off"`},
		{[]string{"onboard", "pay", "--revision", "9-99"}, `revision "9-99" is not installed`},
		{[]string{"onboard", "pay", "--enforce", "--authz-dry-run"}, "contradict"},
	}
	for _, tc := range cases {
		r := mesh(t, 64, append(tc.args, "--yes")...)
		mustContain(t, strings.Join(tc.args, " "), errorLine(t, r), tc.want)
	}
	if changeSetCount(t) != before {
		t.Fatal("bad input recorded a change set")
	}
	if r := kubectl(t, nil, "get", "namespace", "pay"); r.code == 0 {
		t.Fatal("bad input created the namespace")
	}
}

// TestOnboardOnTerminal: without flags, onboard asks for each choice.
func TestOnboardOnTerminal(t *testing.T) {
	installFakeControlPlane(t)
	screen, code := runOnTerminalSteps(t, []termStep{
		{"mTLS mode", typeKeys("\r")}, // STRICT: nothing runs in a new namespace
		{"Callers allowed", typeKeys("same-namespace,ingress\r")},
		{"JWT issuer", typeKeys("\r")},
		{"External hostname", typeKeys("\r")},
		{"Other namespaces", typeKeys("\r")},
		{"Group that may edit", typeKeys("tty-devs\r")},
		{"(y/N)", typeKeys("y\r")},
	}, "mesh", "onboard", "tty-team")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "terminal", screen, "Team tty-team is onboarded in namespace tty-team", "callers allowed (enforced): same-namespace, ingress", "group tty-devs may edit")
	if got := jsonpath(t, "tty-team", "peerauthentication", "default", "{.spec.mtls.mode}"); got != "STRICT" {
		t.Fatalf("mTLS: %q", got)
	}
	if got := jsonpath(t, "tty-team", "rolebinding", "tty-team-istio-networking", "{.subjects[0].name}"); got != "tty-devs" {
		t.Fatalf("role binding subject: %q", got)
	}
}
