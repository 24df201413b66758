package mesh

import (
	"bytes"
	"embed"
	"io/fs"
	"path"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/manifest"
)

// HTTPRoutes is the Gateway API route kind canaries read and write.
var HTTPRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// Annotations the Gateway API puts on its CRDs.
const (
	AnnotationGatewayAPIVersion = "gateway.networking.k8s.io/bundle-version"
	AnnotationGatewayAPIChannel = "gateway.networking.k8s.io/channel"
)

// gatewayAPI holds the standard-channel CRDs of the sigs.k8s.io/gateway-api
// version go.mod pins (copied by hack/gateway-api-crds.sh: the module is
// not embeddable from here). Istio implements the Gateway API but does not
// ship its CRDs, so install offers these.
//
//go:embed gatewayapi/*.yaml
var gatewayAPI embed.FS

// GatewayAPICRDs are the embedded Gateway API CRDs, standard channel.
func GatewayAPICRDs() ([]*unstructured.Unstructured, error) {
	files, err := fs.Glob(gatewayAPI, "gatewayapi/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		raw, err := gatewayAPI.ReadFile(path.Clean(f))
		if err != nil {
			return nil, err
		}
		objs, err := manifest.Decode(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// GatewayAPIVersion is the bundle version of the embedded CRDs. It is
// in flag help, so it reads one annotation from the head of one file
// instead of decoding 1 MB of CRDs at start-up.
var GatewayAPIVersion = sync.OnceValue(func() string {
	raw, err := gatewayAPI.ReadFile("gatewayapi/gateway.networking.k8s.io_httproutes.yaml")
	if err != nil {
		return ""
	}
	key := []byte(AnnotationGatewayAPIVersion + ":")
	head := raw[:min(len(raw), 4096)]
	i := bytes.Index(head, key)
	if i < 0 {
		return ""
	}
	line, _, _ := bytes.Cut(head[i+len(key):], []byte("\n"))
	return string(bytes.Trim(bytes.TrimSpace(line), `"'`))
})

// NewerGatewayAPI reports whether bundle version v is newer than the
// embedded CRDs' (unparsable is not newer).
func NewerGatewayAPI(v string) bool {
	have, errA := version.ParseSemantic(v)
	ours, errB := version.ParseSemantic(GatewayAPIVersion())
	return errA == nil && errB == nil && ours.LessThan(have)
}
