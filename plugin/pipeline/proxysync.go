package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/proxystatus"
)

// proxySync follows an applied change to the data plane: which connected
// proxies istiod has sent it to and which acknowledged it. It never fails an
// apply: where istiod cannot be read it says so once and steps aside.
type proxySync struct {
	client proxystatus.Client
	scope  proxystatus.Scope
	base   map[string]proxystatus.Proxy
}

// meshConfigGroups are the API groups istiod turns into proxy configuration.
var meshConfigGroups = []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"}

// startProxySync reads the proxies' state before the first write, when the
// change touches Istio configuration; nil when there is nothing to follow.
func (r *Runner) startProxySync(ctx context.Context, todo []*ObjectDiff) *proxySync {
	e := r.C.Engine
	if e.ProxySyncTimeout <= 0 {
		return nil
	}
	var scope proxystatus.Scope
	for _, d := range todo {
		o := d.Change.Object
		if !slices.Contains(meshConfigGroups, o.GroupVersionKind().Group) {
			continue
		}
		if o.GetNamespace() == e.IstioNamespace {
			scope.All = true // the root namespace's policies apply mesh-wide
		}
		if !slices.Contains(scope.Namespaces, o.GetNamespace()) {
			scope.Namespaces = append(scope.Namespaces, o.GetNamespace())
		}
	}
	if len(scope.Namespaces) == 0 {
		return nil
	}
	kube, err := r.C.Kube()
	if err != nil {
		return nil
	}
	s := &proxySync{client: proxystatus.Client{Kube: kube, IstioNamespace: e.IstioNamespace}, scope: scope}
	// Reading must not hold up the apply where istiod does not answer.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s.base, err = s.client.Read(rctx); err != nil {
		fmt.Fprintf(r.C.Streams.ErrOut, "note: proxy sync will not be checked: istiod's sync status cannot be read through the API server (%s)\n", exitcode.OneLine(err.Error()))
		return nil
	}
	return s
}

// waitProxySync reports the proxies' progress until they have the change or the
// timeout passes; only an interrupt is an error.
func (r *Runner) waitProxySync(ctx context.Context, s *proxySync) error {
	if s == nil {
		return nil
	}
	w := r.C.Streams.ErrOut
	where := "in " + strings.Join(s.scope.Namespaces, ", ")
	if s.scope.All {
		where = "in the mesh"
	}
	fmt.Fprintf(w, "Verifying: proxies %s have the new configuration…\n", where)
	timeout := r.C.Engine.ProxySyncTimeout
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := s.client.Wait(wctx, s.base, s.scope, func(line string) { fmt.Fprintf(w, "  %s\n", line) })
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(w, "warning: after %s, %s; look at those proxies with istioctl proxy-status\n", timeout, rep)
	case err != nil:
		fmt.Fprintf(w, "note: proxy sync not checked: %s\n", exitcode.OneLine(err.Error()))
	case len(rep.Updated)+len(rep.NotPushed) == 0:
		fmt.Fprintf(w, "  no proxy %s is connected to istiod\n", where)
	}
	return nil
}
