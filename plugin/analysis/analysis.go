// Package analysis runs Istio's own configuration analyzers in-process — the
// engine behind `istioctl analyze` — over the live cluster, files, or both.
package analysis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/analysis/msg"
	istiomesh "istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/resource"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/util/sets"
	"k8s.io/klog/v2"
)

// Source is a named YAML stream (a file, or planned objects).
type Source = local.ReaderSource

// Suppression hides a message code for resources matching a name glob.
type Suppression = local.AnalysisSuppression

// Options select what to analyze.
type Options struct {
	// Namespace limits the reported messages; empty means all namespaces.
	Namespace      string
	IstioNamespace string
	// Snapshot adds the cluster as Read took it; nil analyzes files only.
	Snapshot *Snapshot
	// Revision is the control plane whose config objects (istio.io/rev)
	// Read takes; empty means the default revision.
	Revision string
	// Changed, when set, runs only the analyzers that read one of these
	// kinds: the others' findings cannot differ between the cluster as it
	// is and as planned, so a plan's analysis need not read their inputs.
	Changed sets.Set[config.GroupVersionKind]
	// MeshConfig, when set, is the mesh config YAML to analyze with instead
	// of the live cluster's (or the built-in defaults for files only).
	MeshConfig string
	// Analyzers selects analyzers by name (see Analyzers); empty runs all.
	Analyzers []string
	Files     []Source
	Suppress  []Suppression
	// Planned makes Files also supply runtime kinds (Services, Deployments,
	// Namespaces, Pods) that a file source normally ignores: a plan's
	// Service must count as existing when the plan is analyzed.
	Planned bool
}

var quietOnce sync.Once

// Quiet stops Istio's and client-go's loggers from writing to the user's
// terminal; analyzer findings are returned as messages instead.
func Quiet() {
	quietOnce.Do(func() {
		for _, s := range istiolog.Scopes() {
			s.SetOutputLevel(istiolog.NoneLevel)
			s.SetStackTraceLevel(istiolog.NoneLevel)
		}
		klog.SetOutput(io.Discard)
		klog.LogToStderr(false)
	})
}

// ParseError lists the documents Istio's reader could not parse. Run
// returns it with the messages of everything else, as istioctl analyzes
// the rest of a file.
type ParseError struct{ Errs []error }

func (e *ParseError) Error() string {
	first := strings.ReplaceAll(e.Errs[0].Error(), "\n", " ")
	if len(e.Errs) == 1 {
		return "analysis: " + first
	}
	return fmt.Sprintf("analysis: %s (and %d more unparseable documents)", first, len(e.Errs)-1)
}

// Run analyzes and returns the sorted, de-duplicated messages. When some
// documents in Files cannot be parsed, the messages come with a *ParseError.
func Run(ctx context.Context, o Options) (diag.Messages, error) {
	Quiet()
	combined := o.combined()
	if len(combined.AnalyzerNames()) == 0 {
		return nil, nil // nothing reads what changed
	}
	sa := local.NewIstiodAnalyzer(combined, resource.Namespace(o.Namespace), resource.Namespace(o.IstioNamespace), nil)
	sa.SetSuppressions(o.Suppress)
	if o.Snapshot != nil {
		store, err := o.Snapshot.store()
		if err != nil {
			return nil, err
		}
		sa.AddSource(store)
		// The cluster's mesh config, as Istio's live source reads it: one
		// that does not parse leaves the defaults.
		if m := o.Snapshot.mesh; m != "" && ValidateMeshConfig(m) == nil {
			if err := withFile(m, sa.AddFileKubeMeshConfig); err != nil {
				return nil, fmt.Errorf("analysis: mesh config: %w", err)
			}
			if n := o.Snapshot.networks; n != "" {
				_ = withFile(n, sa.AddFileKubeMeshNetworks) // as the live source: bad networks keep the defaults
			}
		}
	}
	// After the cluster's, so that this mesh config wins; before the
	// defaults, which depend on it (istioctl's order).
	if o.MeshConfig != "" {
		if err := withFile(o.MeshConfig, sa.AddFileKubeMeshConfig); err != nil {
			return nil, fmt.Errorf("analysis: mesh config: %w", err)
		}
	}
	if o.Snapshot == nil {
		if err := sa.AddDefaultResources(); err != nil {
			return nil, fmt.Errorf("analysis: %w", err)
		}
	}
	var parseErr *ParseError
	if len(o.Files) > 0 {
		add := sa.AddReaderKubeSource
		if o.Planned {
			add = sa.AddTestReaderKubeSource // the same reader, runtime kinds included
		}
		if err := add(o.Files); err != nil {
			parseErr = &ParseError{Errs: flatten(err)}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the stores
	res, err := sa.Analyze(ctx.Done())
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if parseErr != nil {
		return res.Messages, parseErr
	}
	return res.Messages, nil
}

// flatten splits the reader's nested multierrors (per file, then per
// document) into one error per document.
func flatten(err error) []error {
	var m interface{ WrappedErrors() []error }
	if !errors.As(err, &m) {
		return []error{err}
	}
	var out []error
	for _, e := range m.WrappedErrors() {
		out = append(out, flatten(e)...)
	}
	return out
}

// ValidateMeshConfig checks mesh config YAML as the analyzer will read it.
func ValidateMeshConfig(yaml string) error {
	_, err := istiomesh.ApplyMeshConfigDefaults(yaml)
	return err
}

// withFile hands the analyzer YAML through a file: its only entry point
// for a mesh config or mesh networks.
func withFile(yaml string, add func(file string) error) error {
	f, err := os.CreateTemp("", "kubectl-mesh-meshconfig-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(yaml)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return add(f.Name())
}

// Analyzers lists Istio's analyzers by name with their descriptions, in
// istioctl analyze --list-analyzers' format.
func Analyzers() string {
	all := analyzers.All()
	sort.Slice(all, func(i, j int) bool { return all[i].Metadata().Name < all[j].Metadata().Name })
	var b strings.Builder
	for _, a := range all {
		fmt.Fprintf(&b, "* %s:\n", a.Metadata().Name)
		if d := a.Metadata().Description; d != "" {
			fmt.Fprintf(&b, "    %s\n", d)
		}
	}
	return b.String()
}

// CheckAnalyzerNames refuses names that are not Istio analyzers.
func CheckAnalyzerNames(names []string) error {
	known := map[string]bool{}
	for _, a := range analyzers.All() {
		known[a.Metadata().Name] = true
	}
	for _, n := range names {
		if !known[n] {
			return fmt.Errorf("invalid --analyzer %q: not one of Istio's analyzers (list them with --list-analyzers)", n)
		}
	}
	return nil
}

// ParseSuppression parses "CODE=Kind namespace/name": Istio matches the glob
// against the origin's friendly name, which is "Kind namespace/name" for both
// live and file resources (istioctl's help still says name.namespace).
func ParseSuppression(s string) (Suppression, error) {
	code, res, ok := strings.Cut(s, "=")
	if !ok || code == "" || res == "" {
		return Suppression{}, fmt.Errorf("invalid --suppress %q: use CODE=Kind namespace/name, e.g. IST0101=VirtualService bookinfo/reviews", s)
	}
	for _, t := range msg.All() {
		if t.Code() == code {
			return Suppression{Code: code, ResourceName: res}, nil
		}
	}
	return Suppression{}, fmt.Errorf("invalid --suppress %q: %q is not an Istio analysis code (see https://istio.io/latest/docs/reference/config/analysis/)", s, code)
}

// Suppressed reports whether a suppression hides code on the resource
// named "Kind namespace/name", with Istio's glob rule (* matches anything).
func Suppressed(sups []Suppression, code, ref string) bool {
	for _, s := range sups {
		if s.Code != code {
			continue
		}
		re := "^" + strings.ReplaceAll(regexp.QuoteMeta(s.ResourceName), `\*`, ".*") + "$"
		if ok, _ := regexp.MatchString(re, ref); ok {
			return true
		}
	}
	return false
}

// ParseLevel maps Info|Warning|Error to Istio's level.
func ParseLevel(s string) (diag.Level, error) {
	if l, ok := diag.GetUppercaseStringToLevelMap()[strings.ToUpper(s)]; ok {
		return l, nil
	}
	return diag.Level{}, fmt.Errorf("invalid severity %q: use Info, Warning or Error", s)
}

// Key identifies a finding independently of where it was read from, so the
// findings of the cluster as it is and as planned can be compared.
func Key(m diag.Message) string {
	return m.Type.Code() + "|" + Subject(m) + "|" + fmt.Sprintf(m.Type.Template(), m.Parameters...)
}

// Subject is "Kind namespace/name" of the resource a message names, or "".
func Subject(m diag.Message) string {
	if m.Resource == nil {
		return ""
	}
	kind := ""
	if m.Resource.Metadata.Schema != nil {
		kind = m.Resource.Metadata.Schema.Kind()
	}
	return kind + " " + m.Resource.Metadata.FullName.String()
}
