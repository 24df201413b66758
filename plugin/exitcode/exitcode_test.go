package exitcode

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestDescribe(t *testing.T) {
	gr := schema.GroupResource{Group: "networking.istio.io", Resource: "virtualservices"}
	cases := []struct {
		name string
		err  error
		code int
		want string
	}{
		{"nil", nil, 0, ""},
		{"plain", errors.New("boom"), 1, "boom"},
		{"usage", Usagef("bad flag %s", "--x"), 64, "bad flag --x"},
		{"wrapped data", fmt.Errorf("reading: %w", Dataf("broken")), 65, "reading: broken"},
		{"silent", Silent{Code: 1}, 1, ""},
		{"rbac", apierrors.NewForbidden(gr, "r", errors.New(`User "bob" cannot patch resource "virtualservices"`)), 77, "ask a cluster admin"},
		{"quota is not rbac", apierrors.NewForbidden(gr, "r", errors.New("exceeded quota: q")), 1, "exceeded quota"},
		{"unauthorized", apierrors.NewUnauthorized("Unauthorized"), 77, "credentials were rejected"},
		{"unreachable", &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api?timeout=32s", Err: syscall.ECONNREFUSED}, 69, "cannot reach the Kubernetes API server at https://10.0.0.1:6443: connection refused"},
		{"multi-line", errors.New("first\nsecond\nthird"), 1, "first (and 2 more lines)"},
		{"webhook denial", fmt.Errorf("VirtualService/x: %w", errors.New(`admission webhook "rev.validation.istio.io" denied the request: configuration is invalid`)), 65, "configuration is invalid; fix the object and re-run"},
		{"schema", apierrors.NewInvalid(schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}, "x", nil), 65, "fix the object"},
		{"webhook down", apierrors.NewInternalError(errors.New(`failed calling webhook "rev.validation.istio.io": connection refused`)), 69, "the webhook's server is down or unreachable"},
		{"an explicit code wins", New(Blocked, errors.New(`admission webhook "w" denied the request`)), 79, "denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := Describe(tc.err)
			if code != tc.code || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("Describe = %d %q, want %d containing %q on one line", code, msg, tc.code, tc.want)
			}
		})
	}
}
