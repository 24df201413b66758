package analysis

import (
	"encoding/json"
	"strings"

	"istio.io/istio/istioctl/pkg/util/formatting"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/resource"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/resilience"
)

// LintMessages turns resilience lint findings into analysis messages, so
// analyze reports them beside Istio's, under our own codes.
func LintMessages(fs []resilience.Finding) diag.Messages {
	levels := map[string]diag.Level{"Error": diag.Error, "Warning": diag.Warning, "Info": diag.Info}
	var out diag.Messages
	for _, f := range fs {
		mt := diag.NewMessageType(levels[f.Level], f.Code, "%s")
		o := lintOrigin{f}
		out = append(out, diag.NewMessage(mt, &resource.Instance{Metadata: resource.Metadata{FullName: resource.NewFullName(resource.Namespace(f.Namespace), resource.LocalName(f.Name))}, Origin: o}, f.Message))
	}
	return out
}

// lintOrigin names the object a lint finding is about.
type lintOrigin struct{ f resilience.Finding }

func (o lintOrigin) FriendlyName() string          { return o.f.Ref() }
func (o lintOrigin) Namespace() resource.Namespace { return resource.Namespace(o.f.Namespace) }
func (o lintOrigin) Reference() resource.Reference { return nil }
func (o lintOrigin) FieldMap() map[string]int      { return nil }
func (o lintOrigin) Comparator() string            { return o.f.Ref() }
func (o lintOrigin) ClusterName() cluster.ID       { return "" }

// Print formats messages as istioctl does, except that our own codes link
// to our documentation rather than istio.io's.
func Print(msgs diag.Messages, format string, color bool) (string, error) {
	if format == formatting.LogFormat {
		return formatting.Print(msgs, format, color)
	}
	list := make([]map[string]any, 0, len(msgs))
	for i := range msgs {
		u := msgs[i].Unstructured(true)
		if code := msgs[i].Type.Code(); strings.HasPrefix(code, "KM") {
			u["documentationUrl"] = resilience.Finding{Code: code}.URL()
		}
		list = append(list, u)
	}
	b, err := json.MarshalIndent(list, "", "\t")
	if err != nil || format == formatting.JSONFormat {
		return string(b), err
	}
	y, err := yaml.JSONToYAML(b)
	return strings.TrimSuffix(string(y), "\n"), err
}
