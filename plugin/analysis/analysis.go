// Package analysis runs Istio's own configuration analyzers in-process — the
// engine behind `istioctl analyze` — over the live cluster, files, or both.
package analysis

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/analysis/msg"
	"istio.io/istio/pkg/config/resource"
	"istio.io/istio/pkg/kube"
	istiolog "istio.io/istio/pkg/log"
	"k8s.io/client-go/rest"
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
	// Live adds the cluster behind this config as a source; nil analyzes files only.
	Live     *rest.Config
	Files    []Source
	Suppress []Suppression
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

// Run analyzes and returns the sorted, de-duplicated messages.
func Run(ctx context.Context, o Options) (diag.Messages, error) {
	Quiet()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sa := local.NewIstiodAnalyzer(analyzers.AllCombined(), resource.Namespace(o.Namespace), resource.Namespace(o.IstioNamespace), nil)
	sa.SetSuppressions(o.Suppress)
	if o.Live != nil {
		c, err := kube.NewCLIClient(kube.NewClientConfigForRestConfig(o.Live))
		if err != nil {
			return nil, fmt.Errorf("analysis: cannot create a client: %w", err)
		}
		// Informers stop when ctx is cancelled; Shutdown waits for that.
		defer func() { cancel(); c.Shutdown() }()
		sa.AddRunningKubeSourceWithRevision(kube.EnableCrdWatcher(c), "default", false)
	} else if err := sa.AddDefaultResources(); err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	if len(o.Files) > 0 {
		add := sa.AddReaderKubeSource
		if o.Planned {
			add = sa.AddTestReaderKubeSource // the same reader, runtime kinds included
		}
		if err := add(o.Files); err != nil {
			return nil, fmt.Errorf("analysis: cannot read %s: %s", names(o.Files), strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	res, err := sa.Analyze(ctx.Done())
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res.Messages, nil
}

func names(srcs []Source) string {
	n := make([]string, len(srcs))
	for i, s := range srcs {
		n[i] = s.Name
	}
	return strings.Join(n, ", ")
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
