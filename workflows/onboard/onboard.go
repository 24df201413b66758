// Package onboard is `kubectl mesh onboard`: bring a team's namespace into
// the mesh in one guided step — injection, mTLS, deny-by-default
// authorization with explicit callers, a Sidecar scoping its config, and
// optionally JWT, an external host and an editing RoleBinding.
package onboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Labels and annotations onboarding sets on the namespace.
const (
	LabelTeam        = mesh.LabelTeam
	AnnotationConfig = "kubectl-mesh.io/onboard"
)

// Options of the onboard workflow. The exported fields are what a re-run
// reads back from the namespace, so `onboard TEAM -n NS --enforce` needs no
// other flag.
type Options struct {
	Team         string   `json:"team"`
	Namespace    string   `json:"-"`
	Revision     string   `json:"revision"`
	MTLS         string   `json:"mtls"`
	AllowFrom    []string `json:"allowFrom"`
	EgressTo     []string `json:"egressTo,omitempty"`
	JWTIssuer    string   `json:"jwtIssuer,omitempty"`
	JWKSURI      string   `json:"jwksUri,omitempty"`
	JWTAudiences []string `json:"jwtAudiences,omitempty"`
	Host         string   `json:"host,omitempty"`
	HostService  string   `json:"hostService,omitempty"`
	TLSSecret    string   `json:"tlsSecret,omitempty"`
	TeamGroup    string   `json:"teamGroup,omitempty"`
	AuthzDryRun  bool     `json:"authzDryRun,omitempty"`
	Adopt        bool     `json:"-"`
	Enforce      bool     `json:"-"`

	flags          *pflag.FlagSet
	findings       StrictFindings
	root           string
	live           *unstructured.Unstructured // the namespace, nil when it is created
	running        int                        // pods running in it
	planes         []mesh.ControlPlane
	mtlsChecks     []pipeline.Check
	secret         bool // the TLS secret exists in the gateway's namespace
	jwksErr        error
	ingressSA      string
	inherited      bool                // a previous onboarding's options were read back
	pas            []mesh.PeerAuth     // the namespace's PeerAuthentications
	workloadLabels []map[string]string // distinct label sets of its pods
	liveMode       string              // mode of its namespace-wide policy, "" when none
}

// StrictFindings are the checks a move of namespace ns to STRICT would
// face, reported without blocking. The mTLS migration provides them; the
// command tree passes them in, so onboard does not import another workflow.
type StrictFindings func(ctx context.Context, c *cli.Context, ns string) ([]pipeline.Check, error)

// New returns the workflow with its defaults; findings reports what a
// namespace with running workloads faces on its way to STRICT.
func New(findings StrictFindings) *Options {
	return &Options{AllowFrom: []string{"same-namespace"}, findings: findings}
}

// Command implements pipeline.Workflow.
func (o *Options) Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "onboard TEAM",
		Short: "Bring a team into the mesh: namespace, injection, mTLS, deny-by-default authorization, Sidecar, and more",
		Long: `Creates (or, with --adopt, takes over) the team's namespace and plans the bundle a
team needs on day one: the injection label, a PeerAuthentication (STRICT for a
new namespace; an existing one with workloads starts PERMISSIVE and is moved
with kubectl mesh migrate-mtls), an allow-nothing AuthorizationPolicy plus
explicit ALLOW rules for the callers you name, a Sidecar that limits the
proxies' config to the namespaces the team calls, and optionally JWT
validation, an external host (Gateway + VirtualService) and a RoleBinding that
lets the team's group edit its Istio networking objects.

--authz-dry-run applies the authorization policies in Istio's dry-run mode
(istio.io/dry-run: "true": logged, not enforced); onboard TEAM -n NS --enforce
flips them later. The options are kept on the namespace, so a re-run needs only
the flags that change.`,
		Example: `  kubectl mesh onboard payments -n payments --allow-from same-namespace,ingress
  kubectl mesh onboard payments -n payments --host pay.example.com --host-service web:8080 \
      --jwt-issuer https://idp.example.com --jwks-uri https://idp.example.com/jwks --authz-dry-run
  kubectl mesh onboard payments -n payments --enforce`,
	}
	f := cmd.Flags()
	f.StringVar(&o.Revision, "revision", "", "Control-plane revision or tag to inject from (asked when several are installed)")
	f.StringVar(&o.MTLS, "mtls", "", "STRICT or PERMISSIVE (default: STRICT for a namespace with nothing running, PERMISSIVE otherwise)")
	f.StringSliceVar(&o.AllowFrom, "allow-from", o.AllowFrom, "Callers: same-namespace, ingress, namespace:NAME, sa:NAMESPACE/NAME (comma-separated)")
	f.StringSliceVar(&o.EgressTo, "egress-to", nil, "Namespaces the team calls, besides its own and the Istio namespace (Sidecar egress)")
	f.StringVar(&o.JWTIssuer, "jwt-issuer", "", "Validate JWTs from this issuer (https URL) and require one on requests from the ingress gateway")
	f.StringVar(&o.JWKSURI, "jwks-uri", "", "Where the issuer's keys are (https URL)")
	f.StringSliceVar(&o.JWTAudiences, "jwt-audiences", nil, "Audiences the JWT must carry")
	f.StringVar(&o.Host, "host", "", "External hostname served through the ingress gateway (Gateway with TLS + VirtualService)")
	f.StringVar(&o.HostService, "host-service", "", "SERVICE:PORT the external host routes to")
	f.StringVar(&o.TLSSecret, "tls-secret", "", "TLS Secret in the gateway's namespace for --host (default TEAM-tls)")
	f.StringVar(&o.TeamGroup, "team-group", "", "Group that may edit the namespace's Istio networking objects (RoleBinding)")
	f.BoolVar(&o.AuthzDryRun, "authz-dry-run", false, "Apply the authorization policies in Istio's dry-run mode first")
	f.BoolVar(&o.Enforce, "enforce", false, "Enforce authorization policies applied with --authz-dry-run")
	f.BoolVar(&o.Adopt, "adopt", false, "Take over an existing namespace (required when another team's label is on it)")
	o.flags = f
	return cmd
}

// Complete reads the namespace (and the options a previous onboarding
// stored on it), the control planes and what is running.
func (o *Options) Complete(ctx context.Context, c *cli.Context, args []string) error {
	o.root = c.Engine.IstioNamespace
	if len(args) != 1 {
		return exitcode.Usagef("name the team: kubectl mesh onboard TEAM -n NAMESPACE")
	}
	o.Team = args[0]
	ns, explicit, err := c.Namespace()
	if err != nil {
		return err
	}
	if !explicit {
		ns = o.Team
	}
	o.Namespace = ns
	if err := o.syntax(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	cl, err := c.Clients()
	if err != nil {
		return err
	}
	rd, err := c.Reads()
	if err != nil {
		return err
	}
	namespaces, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.Namespaces})
	if err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	var live *unstructured.Unstructured
	for _, n := range namespaces {
		if n.GetName() == ns {
			live = n
		}
	}
	if live != nil {
		o.live = live
		if err := o.inherit(live); err != nil {
			return err
		}
		if owner := live.GetLabels()[LabelTeam]; owner != o.Team && !o.Adopt {
			if owner == "" {
				return exitcode.Usagef("namespace %s exists: add --adopt to bring it and its workloads into the mesh for team %s", ns, o.Team)
			}
			return exitcode.Usagef("namespace %s belongs to team %s: add --adopt to hand it to team %s", ns, owner, o.Team)
		}
		pods, err := rd.Metadata(ctx, reads.Request{Resource: mesh.Pods, Namespace: ns})
		if err != nil {
			return err
		}
		o.running = len(pods)
		seen := map[string]bool{}
		for _, p := range pods {
			key := fmt.Sprint(p.GetLabels())
			if !seen[key] {
				seen[key] = true
				o.workloadLabels = append(o.workloadLabels, p.GetLabels())
			}
		}
	}
	if o.Enforce {
		o.AuthzDryRun = false
	}
	if o.live != nil {
		list, err := rd.Unstructured(ctx, reads.Request{Resource: mesh.PeerAuthentications, Namespace: ns})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		for _, u := range list {
			p, err := mesh.ParsePeerAuth(u)
			if err != nil {
				return err
			}
			o.pas = append(o.pas, p)
		}
		if wide := mesh.NamespaceWide(o.pas, ns); len(wide) > 0 {
			o.liveMode = wide[0].Mode
		}
	}
	switch {
	case o.flags.Changed("mtls"):
	case o.liveMode == mesh.ModeStrict:
		o.MTLS = mesh.ModeStrict // onboarding never loosens a namespace
	case o.MTLS == "" && o.running > 0:
		o.MTLS = mesh.ModePermissive
	case o.MTLS == "":
		o.MTLS = mesh.ModeStrict
	}
	if o.planes, err = mesh.Revisions(ctx, rd); err != nil {
		return err
	}
	if o.Revision, err = mesh.PickRevision(o.planes, o.Revision, mesh.RevisionQuestion(c.Prompter)); err != nil {
		return err
	}
	if c.CanPrompt() && !o.inherited {
		if err := o.ask(c); err != nil {
			return err
		}
	}
	if o.running > 0 && o.findings != nil {
		if o.mtlsChecks, err = o.findings(ctx, c, ns); err != nil {
			return err
		}
	}
	if o.Host != "" {
		_, err := cl.Kube.CoreV1().Secrets(o.root).Get(ctx, o.tlsSecret(), metav1.GetOptions{})
		o.secret = err == nil
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			return err
		}
	}
	if o.JWKSURI != "" {
		o.jwksErr = reachable(ctx, o.JWKSURI)
	}
	o.ingressSA = ingressPrincipal(ctx, rd, o.root)
	return nil
}

// inherit takes the options stored by a previous onboarding as defaults
// for every flag this run does not set.
func (o *Options) inherit(live *unstructured.Unstructured) error {
	raw := live.GetAnnotations()[AnnotationConfig]
	if raw == "" {
		return nil
	}
	var prev Options
	if err := json.Unmarshal([]byte(raw), &prev); err != nil {
		return exitcode.Dataf("namespace %s has an unreadable %s annotation: fix or remove it", live.GetName(), AnnotationConfig)
	}
	if prev.Team != o.Team {
		return nil // another team's settings are not ours to inherit
	}
	o.inherited = true
	set := func(flag string, apply func()) {
		if !o.flags.Changed(flag) {
			apply()
		}
	}
	set("revision", func() { o.Revision = prev.Revision })
	set("mtls", func() { o.MTLS = prev.MTLS })
	set("allow-from", func() { o.AllowFrom = prev.AllowFrom })
	set("egress-to", func() { o.EgressTo = prev.EgressTo })
	set("jwt-issuer", func() { o.JWTIssuer = prev.JWTIssuer })
	set("jwks-uri", func() { o.JWKSURI = prev.JWKSURI })
	set("jwt-audiences", func() { o.JWTAudiences = prev.JWTAudiences })
	set("host", func() { o.Host = prev.Host })
	set("host-service", func() { o.HostService = prev.HostService })
	set("tls-secret", func() { o.TLSSecret = prev.TLSSecret })
	set("team-group", func() { o.TeamGroup = prev.TeamGroup })
	set("authz-dry-run", func() { o.AuthzDryRun = prev.AuthzDryRun })
	return o.syntax()
}

// ask fills, on a terminal, every choice the flags left open; a re-run of
// an onboarding does not ask again (its options are read back).
func (o *Options) ask(c *cli.Context) error {
	p := c.Prompter
	input := func(flag, question, def string, into func(string)) error {
		if o.flags.Changed(flag) {
			return nil
		}
		ans, err := p.Input(question, def)
		if err == nil {
			into(strings.TrimSpace(ans))
		}
		return err
	}
	list := func(s string) []string {
		var out []string
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		return out
	}
	if !o.flags.Changed("mtls") && o.liveMode != mesh.ModeStrict {
		m, err := p.Select("mTLS mode:", []string{mesh.ModeStrict, mesh.ModePermissive}, o.MTLS)
		if err != nil {
			return err
		}
		o.MTLS = m
	}
	steps := []struct {
		flag, question, def string
		into                func(string)
	}{
		{"allow-from", "Callers allowed (same-namespace, ingress, namespace:NAME, sa:NS/NAME; comma-separated):", strings.Join(o.AllowFrom, ","), func(s string) { o.AllowFrom = list(s) }},
		{"jwt-issuer", "JWT issuer to require from the ingress gateway (https URL; empty for none):", "", func(s string) { o.JWTIssuer = s }},
		{"host", "External hostname through the ingress gateway (empty for none):", "", func(s string) { o.Host = s }},
		{"egress-to", "Other namespaces the team calls (comma-separated; empty for none):", "", func(s string) { o.EgressTo = list(s) }},
		{"team-group", "Group that may edit the namespace's Istio routing (empty for none):", "", func(s string) { o.TeamGroup = s }},
	}
	for _, s := range steps {
		if err := input(s.flag, s.question, s.def, s.into); err != nil {
			return err
		}
		if s.flag == "jwt-issuer" && o.JWTIssuer != "" {
			if err := input("jwks-uri", "Where the issuer's keys are (https URL):", strings.TrimSuffix(o.JWTIssuer, "/")+"/.well-known/jwks.json", func(v string) { o.JWKSURI = v }); err != nil {
				return err
			}
		}
		if s.flag == "host" && o.Host != "" {
			if err := input("host-service", "Service and port it routes to (SERVICE:PORT):", "", func(v string) { o.HostService = v }); err != nil {
				return err
			}
		}
	}
	if err := o.syntax(); err != nil {
		return exitcode.New(exitcode.Usage, err)
	}
	return nil
}

// caller is one parsed --allow-from entry.
type caller struct {
	kind  string // same-namespace, ingress, namespace, sa
	value string
}

func parseCaller(s string) (caller, error) {
	switch {
	case s == "same-namespace" || s == "ingress":
		return caller{kind: s}, nil
	case strings.HasPrefix(s, "namespace:"):
		ns := strings.TrimPrefix(s, "namespace:")
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return caller{}, fmt.Errorf("invalid --allow-from %q: %q is not a namespace name", s, ns)
		}
		return caller{"namespace", ns}, nil
	case strings.HasPrefix(s, "sa:"):
		ns, name, ok := strings.Cut(strings.TrimPrefix(s, "sa:"), "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return caller{}, fmt.Errorf("invalid --allow-from %q: use sa:NAMESPACE/SERVICEACCOUNT", s)
		}
		return caller{"sa", ns + "/" + name}, nil
	}
	return caller{}, fmt.Errorf("invalid --allow-from %q: use same-namespace, ingress, namespace:NAME or sa:NAMESPACE/NAME", s)
}

func httpsURL(flag, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Scheme == "" {
		return fmt.Errorf("invalid %s %q: not a URL", flag, s)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("invalid %s %q: must be https (keys and tokens must not travel in clear)", flag, s)
	}
	return nil
}

// syntax checks the options without I/O.
func (o *Options) syntax() error {
	if len(validation.IsDNS1123Label(o.Team)) > 0 {
		return fmt.Errorf("invalid team %q: use a DNS label (lowercase letters, digits, dashes; at most 63)", o.Team)
	}
	if len(validation.IsDNS1123Label(o.Namespace)) > 0 {
		return fmt.Errorf("invalid namespace %q: use a DNS label (lowercase letters, digits, dashes; at most 63)", o.Namespace)
	}
	if m := strings.ToUpper(o.MTLS); o.MTLS != "" && m != mesh.ModeStrict && m != mesh.ModePermissive {
		return fmt.Errorf("invalid --mtls %q: use STRICT or PERMISSIVE", o.MTLS)
	}
	o.MTLS = strings.ToUpper(o.MTLS)
	if len(o.AllowFrom) == 0 {
		return fmt.Errorf("--allow-from is empty: name at least one caller (same-namespace, ingress, namespace:NAME, sa:NS/NAME)")
	}
	for _, a := range o.AllowFrom {
		if _, err := parseCaller(a); err != nil {
			return err
		}
	}
	for _, e := range o.EgressTo {
		if len(validation.IsDNS1123Label(e)) > 0 {
			return fmt.Errorf("invalid --egress-to %q: not a namespace name", e)
		}
	}
	if (o.JWTIssuer == "") != (o.JWKSURI == "") {
		return fmt.Errorf("--jwt-issuer and --jwks-uri go together: give both")
	}
	if o.JWTIssuer != "" {
		if err := httpsURL("--jwt-issuer", o.JWTIssuer); err != nil {
			return err
		}
		if err := httpsURL("--jwks-uri", o.JWKSURI); err != nil {
			return err
		}
	}
	if o.Host != "" {
		h := strings.TrimPrefix(o.Host, "*.")
		if len(validation.IsDNS1123Subdomain(h)) > 0 || !strings.Contains(h, ".") {
			return fmt.Errorf("invalid --host %q: use a DNS name such as pay.example.com (or *.example.com)", o.Host)
		}
		svc, port, ok := strings.Cut(o.HostService, ":")
		if o.HostService == "" || !ok || len(validation.IsDNS1123Label(svc)) > 0 || !validPort(port) {
			return fmt.Errorf("--host needs --host-service SERVICE:PORT, the Service in %s the host routes to", o.Namespace)
		}
		if len(validation.IsDNS1123Subdomain(o.tlsSecret())) > 0 {
			return fmt.Errorf("invalid --tls-secret %q: not a Secret name", o.TLSSecret)
		}
	} else if o.HostService != "" {
		return fmt.Errorf("--host-service needs --host")
	}
	if o.TeamGroup != "" && strings.TrimSpace(o.TeamGroup) != o.TeamGroup {
		return fmt.Errorf("invalid --team-group %q: no surrounding spaces", o.TeamGroup)
	}
	if o.Enforce && o.flags != nil && o.flags.Changed("authz-dry-run") && o.AuthzDryRun {
		return fmt.Errorf("--enforce and --authz-dry-run contradict each other: pick one")
	}
	return nil
}

func validPort(s string) bool {
	var p int
	_, err := fmt.Sscanf(s, "%d", &p)
	return err == nil && p > 0 && p < 65536 && fmt.Sprint(p) == s
}

func (o *Options) tlsSecret() string {
	if o.TLSSecret != "" {
		return o.TLSSecret
	}
	return o.Team + "-tls"
}

// Validate implements pipeline.Workflow.
func (o *Options) Validate() error {
	if err := o.syntax(); err != nil {
		return err
	}
	if o.running > 0 && o.MTLS == mesh.ModeStrict && o.liveMode != mesh.ModeStrict {
		return fmt.Errorf("namespace %s runs %d pod(s): move it to STRICT with kubectl mesh migrate-mtls -n %s, which checks for plaintext callers first", o.Namespace, o.running, o.Namespace)
	}
	return nil
}

// ingressPrincipal is the SPIFFE identity of the ingress gateway: its
// Deployment's service account, or the name Istio's charts give it.
func ingressPrincipal(ctx context.Context, rd *reads.Reader, root string) string {
	sa := "istio-ingressgateway-service-account"
	if l, err := reads.List[*appsv1.Deployment](ctx, rd, reads.Request{Resource: mesh.Deployments, Namespace: root, Labels: "istio=ingressgateway"}); err == nil && len(l) > 0 {
		if n := l[0].Spec.Template.Spec.ServiceAccountName; n != "" {
			sa = n
		}
	}
	return fmt.Sprintf("cluster.local/ns/%s/sa/%s", root, sa)
}

// reachable GETs the JWKS URI; unreachable is a warning, not an error.
func reachable(ctx context.Context, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
