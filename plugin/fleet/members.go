// Package fleet runs one command on several clusters (kubeconfig contexts)
// and combines the outcome: a report per context for the read-only
// commands, a kustomize layout (plus an Argo CD ApplicationSet or Flux
// Kustomizations) for plans, and wave-by-wave application for teams that
// apply directly. It plans per cluster and never runs anything in the
// background: what was done lives in each cluster's journal.
package fleet

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Member is one cluster of the fleet, named by its kubeconfig context.
type Member struct {
	Context string `json:"context"`
	Server  string `json:"server"`
	// Dir is the context as a directory name (contexts may hold "/" or ":").
	Dir string `json:"-"`
	// Wave is 1-based: the clusters of wave 1 go first.
	Wave int `json:"wave"`
}

// Requested reports whether the flags name more than one cluster: a
// comma in --context or --all-contexts.
func Requested(contextFlag string, all bool) bool {
	return all || strings.Contains(contextFlag, ",")
}

// Resolve turns --context a,b,c (or --all-contexts: every context of the
// kubeconfig, by name) into members. Unknown contexts and one cluster
// named twice are refused: a fleet must hold each cluster once, or a plan
// would be applied to it twice.
func Resolve(cfg *clientcmdapi.Config, contextFlag string, all bool) ([]Member, error) {
	var names []string
	if all {
		if strings.TrimSpace(contextFlag) != "" {
			return nil, fmt.Errorf("--all-contexts and --context name the clusters twice: pass one of them")
		}
		for n := range cfg.Contexts {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			return nil, fmt.Errorf("--all-contexts: the kubeconfig has no contexts")
		}
	} else {
		for _, n := range strings.Split(contextFlag, ",") {
			if n = strings.TrimSpace(n); n == "" {
				return nil, fmt.Errorf("--context %q has an empty name: list contexts as a,b,c", contextFlag)
			}
			names = append(names, n)
		}
	}
	var out []Member
	byServer := map[string]string{}
	byDir := map[string]string{}
	for _, n := range names {
		kc, ok := cfg.Contexts[n]
		if !ok {
			return nil, fmt.Errorf("unknown context %q: kubectl config get-contexts lists the kubeconfig's contexts", n)
		}
		cl, ok := cfg.Clusters[kc.Cluster]
		if !ok {
			return nil, fmt.Errorf("context %q names cluster %q, which the kubeconfig does not define", n, kc.Cluster)
		}
		server := strings.TrimRight(cl.Server, "/")
		if prev, dup := byServer[server]; dup {
			if prev == n {
				return nil, fmt.Errorf("context %q is listed twice: name each cluster once", n)
			}
			return nil, fmt.Errorf("contexts %q and %q are the same cluster (%s): name each cluster once", prev, n, server)
		}
		byServer[server] = n
		dir := DirName(n)
		if prev, dup := byDir[dir]; dup {
			return nil, fmt.Errorf("contexts %q and %q both become directory %q: rename one (kubectl config rename-context)", prev, n, dir)
		}
		byDir[dir] = n
		out = append(out, Member{Context: n, Server: server, Dir: dir})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("--all-contexts found one context (%s): run the command without it", out[0].Context)
	}
	return out, nil
}

var unsafeDir = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// DirName is a context name made safe for a path segment (EKS contexts are
// ARNs such as arn:aws:eks:eu-west-1:123:cluster/prod).
func DirName(context string) string {
	d := strings.Trim(unsafeDir.ReplaceAllString(context, "-"), "-.")
	if d == "" {
		return "context"
	}
	return d
}

// AssignWaves numbers the members' waves from --waves: sizes in order,
// where "N" (last only) or whatever the sizes leave over is one more wave.
// Without --waves every cluster is its own wave: the most cautious order.
func AssignWaves(members []Member, spec string) error {
	if strings.TrimSpace(spec) == "" {
		for i := range members {
			members[i].Wave = i + 1
		}
		return nil
	}
	parts := strings.Split(spec, ",")
	var sizes []int
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if strings.EqualFold(p, "N") {
			if i != len(parts)-1 {
				return fmt.Errorf("invalid --waves %q: N (the remaining clusters) may only come last", spec)
			}
			break
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return fmt.Errorf("invalid --waves %q: give wave sizes such as 1,2,N (N: the remaining clusters)", spec)
		}
		sizes = append(sizes, n)
	}
	i := 0
	for w, n := range sizes {
		for k := 0; k < n && i < len(members); k++ {
			members[i].Wave = w + 1
			i++
		}
	}
	for ; i < len(members); i++ {
		members[i].Wave = len(sizes) + 1
	}
	return nil
}

// Waves groups members by wave, in order.
func Waves(members []Member) [][]Member {
	var out [][]Member
	for _, m := range members {
		for len(out) < m.Wave {
			out = append(out, nil)
		}
		out[m.Wave-1] = append(out[m.Wave-1], m)
	}
	return slices.DeleteFunc(out, func(w []Member) bool { return len(w) == 0 })
}
