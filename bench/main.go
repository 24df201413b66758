// Command bench measures kubectl mesh against a real local API server and
// against istioctl built from the same istio.io/istio module: plan latency
// and API request counts at two cluster sizes, analysis wall time and peak
// memory, start-up time, binary and archive size. It prints a table and
// writes bench/RESULTS.md. Run it with make bench.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// size is one cluster shape to plan against.
type size struct {
	name                   string
	pods, services, config int
}

var sizes = []size{{"small", 200, 50, 100}, {"large", 2000, 500, 1000}}

const runs = 3

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ what, ours, istioctl, note string }

// traceRequests (BENCH_REQUESTS=1) prints every request the counted
// commands make, to see which kinds a command lists.
var traceRequests = os.Getenv("BENCH_REQUESTS") == "1"

// BENCH_HOLD=1 seeds the namespaces and keeps the cluster until
// interrupted, to profile a command by hand.

// quick (BENCH_QUICK=1) measures the small and large namespaces only and
// prints the table without writing RESULTS.md: for trying a change.
var quick = os.Getenv("BENCH_QUICK") == "1"

func run() error {
	ctx := context.Background()
	bin, err := testenv.BinDir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(gnuTime); err != nil {
		return fmt.Errorf("%s missing: run hack/build-tools.sh gnu-time (make bench does)", gnuTime)
	}
	istioctl := filepath.Join(bin, "istioctl")
	if _, err := os.Stat(istioctl); err != nil {
		return fmt.Errorf("%s missing: run hack/build-tools.sh istioctl (make bench does)", istioctl)
	}
	dir, err := os.MkdirTemp("", "kubectl-mesh-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mesh := filepath.Join(dir, "kubectl-mesh")
	fmt.Fprintln(os.Stderr, "building kubectl-mesh…")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", mesh, "./cmd/kubectl-mesh").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}

	env, err := testenv.Start(ctx, testenv.Options{IstioCRDs: true, Dir: dir})
	if err != nil {
		return err
	}
	defer env.Stop()
	proxy, err := startCountingProxy(env.Config)
	if err != nil {
		return err
	}
	counted := filepath.Join(dir, "counted.kubeconfig")
	if err := os.WriteFile(counted, []byte(kubeconfig(proxy.url, testenv.Users["admin"])), 0o600); err != nil {
		return err
	}

	var rows []row
	if os.Getenv("BENCH_HOLD") == "1" {
		// Seed, then keep the cluster for profiling by hand until interrupted.
		for _, sz := range sizes {
			if err := seed(ctx, env.Config, "bench-"+sz.name, sz); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "seeded; KUBECONFIG=%s (counted: %s); Ctrl-C ends\n", env.Kubeconfig, counted)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	}
	for _, sz := range sizes {
		ns := "bench-" + sz.name
		fmt.Fprintf(os.Stderr, "seeding %s: %d pods, %d services, %d Istio objects…\n", ns, sz.pods, sz.services, sz.config)
		start := time.Now()
		if err := seed(ctx, env.Config, ns, sz); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  seeded in %s\n", time.Since(start).Round(time.Millisecond))
		for _, c := range []struct {
			what string
			args []string
		}{
			{"migrate-mtls --dry-run=server", []string{"migrate-mtls", "-n", ns, "--stage", "strict", "--skip-telemetry", "--dry-run=server"}},
			{"canary start --dry-run=server", []string{"canary", "start", "-n", ns, "svc-0", "--stable", "v1", "--canary", "v2", "--dry-run=server"}},
			{"check -n", []string{"check", "-n", ns}},
		} {
			wall, reqs, err := measurePlan(mesh, counted, proxy, c.args)
			if err != nil {
				return err
			}
			rows = append(rows, row{fmt.Sprintf("%s (%s: %d pods, %d svc, %d Istio objects)", c.what, sz.name, sz.pods, sz.services, sz.config),
				wall.Round(time.Millisecond).String(), "—", reqs})
		}
		ours, oursRSS, theirs, theirsRSS, err := compare([]string{mesh, "analyze", "-n", ns}, []string{istioctl, "analyze", "-n", ns}, env.Kubeconfig)
		if err != nil {
			return err
		}
		rows = append(rows,
			row{fmt.Sprintf("analyze -n %s: wall time", ns), ours.Round(time.Millisecond).String(), theirs.Round(time.Millisecond).String(), ratio(float64(ours), float64(theirs))},
			row{fmt.Sprintf("analyze -n %s: peak RSS", ns), mib(oursRSS), mib(theirsRSS), ratio(float64(oursRSS), float64(theirsRSS))})
	}

	if quick {
		return report(rows, "(quick)")
	}
	// analyze -A on a cluster the size of a large production mesh: the
	// namespaces above plus these.
	huge := size{"huge", 5000, 1000, 10000}
	fmt.Fprintf(os.Stderr, "seeding bench-huge: %d pods, %d services, %d Istio objects…\n", huge.pods, huge.services, huge.config)
	if err := seed(ctx, env.Config, "bench-huge", huge); err != nil {
		return err
	}
	oursAll, oursAllRSS, theirsAll, theirsAllRSS, err := compare([]string{mesh, "analyze", "-A"}, []string{istioctl, "analyze", "-A"}, env.Kubeconfig)
	if err != nil {
		return err
	}
	total := size{pods: huge.pods, services: huge.services, config: huge.config}
	for _, sz := range sizes {
		total.pods, total.services, total.config = total.pods+sz.pods, total.services+sz.services, total.config+sz.config
	}
	rows = append(rows,
		row{fmt.Sprintf("analyze -A (%d pods, %d svc, %d Istio objects): wall time", total.pods, total.services, total.config), oursAll.Round(time.Millisecond).String(), theirsAll.Round(time.Millisecond).String(), ratio(float64(oursAll), float64(theirsAll))},
		row{"analyze -A: peak RSS", mib(oursAllRSS), mib(theirsAllRSS), ratio(float64(oursAllRSS), float64(theirsAllRSS))})

	ours, _, err := measure([]string{mesh, "version", "--client"}, env.Kubeconfig, 10)
	if err != nil {
		return err
	}
	theirs, _, err := measure([]string{istioctl, "version", "--remote=false"}, env.Kubeconfig, 10)
	if err != nil {
		return err
	}
	rows = append(rows, row{"start-up: version --client / version --remote=false (median of 10)", ours.Round(time.Millisecond).String(), theirs.Round(time.Millisecond).String(), ratio(float64(ours), float64(theirs))})
	for _, s := range []struct {
		what string
		f    func(string) (int64, error)
	}{{"binary size (stripped)", fileSize}, {"archive size (gzip)", gzipSize}} {
		a, err := s.f(mesh)
		if err != nil {
			return err
		}
		b, err := s.f(istioctl)
		if err != nil {
			return err
		}
		rows = append(rows, row{s.what, mib(a), mib(b), ratio(float64(a), float64(b))})
	}
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	sv, err := kube.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	return report(rows, sv.GitVersion)
}

// ---- measuring ----

// runOnce runs argv against kubeconfigPath and returns its wall time and
// peak RSS (bytes). Exit 1 (changes found), 3 (istioctl analyze found
// issues) and 79 (findings block the plan) count as a complete run.
//
// The peak RSS comes from GNU time, which forks the command from its own
// small process: Go starts a child with vfork, and Linux carries the
// parent's high-water mark into the child's ru_maxrss across exec, so a
// child of this process (which holds the seeded cluster's clients) never
// reported less than this process's own RSS.
func runOnce(argv []string, kubeconfigPath string) (time.Duration, int64, error) {
	f, err := os.CreateTemp("", "bench-rss-")
	if err != nil {
		return 0, 0, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command(gnuTime, append([]string{"-q", "-f", "%M", "-o", f.Name()}, argv...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath, "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || !slices.Contains([]int{1, 3, 79}, ee.ExitCode())) {
		return 0, 0, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, lastLine(out.String()))
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(lastLine(string(b))), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: peak RSS from %s: %q", strings.Join(argv, " "), gnuTime, b)
	}
	return wall, kb * 1024, nil
}

// gnuTime reports a command's peak RSS (hack/build-tools.sh gnu-time).
const gnuTime = "/usr/bin/time"

// measure runs argv n times and returns the median wall time and the
// largest peak RSS.
func measure(argv []string, kubeconfigPath string, n int) (time.Duration, int64, error) {
	var walls []time.Duration
	var rss int64
	for range n {
		wall, r, err := runOnce(argv, kubeconfigPath)
		if err != nil {
			return 0, 0, err
		}
		walls = append(walls, wall)
		rss = max(rss, r)
	}
	slices.Sort(walls)
	return walls[len(walls)/2], rss, nil
}

// compareRuns is how often compare runs each command.
const compareRuns = 7

// compare runs ours and theirs in turn, compareRuns times each, and
// returns each one's median wall time and largest peak RSS: whatever else
// the machine is doing then slows both alike, so the ratio holds still
// where two runs of three each, one after the other, did not.
func compare(ours, theirs []string, kubeconfigPath string) (time.Duration, int64, time.Duration, int64, error) {
	for _, bin := range []string{ours[0], theirs[0]} {
		if err := evict(bin); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	var walls [2][]time.Duration
	var rss [2]int64
	for range compareRuns {
		for i, argv := range [][]string{ours, theirs} {
			wall, r, err := runOnce(argv, kubeconfigPath)
			if err != nil {
				return 0, 0, 0, 0, err
			}
			walls[i] = append(walls[i], wall)
			rss[i] = max(rss[i], r)
		}
	}
	for i := range walls {
		slices.Sort(walls[i])
	}
	return walls[0][compareRuns/2], rss[0], walls[1][compareRuns/2], rss[1], nil
}

// evict drops a binary from the page cache, so that both binaries compared
// start alike. On a kernel that caches files in large folios, a binary just
// written by the linker sits in the cache in large folios, each mapped
// whole on its first fault: the same command showed 35 MiB more resident
// than after the cache was dropped, more than any difference between the
// programs.
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// measurePlan runs a command (a --dry-run=server plan, check) through the counting proxy and
// returns the median wall time and the requests of the last run.
func measurePlan(mesh, kc string, p *countingProxy, args []string) (time.Duration, string, error) {
	var walls []time.Duration
	for range runs {
		p.reset()
		wall, _, err := runOnce(append([]string{mesh}, args...), kc)
		if err != nil {
			return 0, "", err
		}
		walls = append(walls, wall)
	}
	slices.Sort(walls)
	return walls[len(walls)/2], describeCounts(p.snapshot()), nil
}

func describeCounts(c map[string]int) string {
	total := 0
	var parts []string
	for _, k := range sortedKeys(c) {
		total += c[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return fmt.Sprintf("%d API requests (%s)", total, strings.Join(parts, ", "))
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func fileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func gzipSize(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countWriter
	zw := gzip.NewWriter(&n)
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	return int64(n), zw.Close()
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ratio(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// ---- counting proxy ----

// countingProxy forwards plain HTTP to the API server and counts requests
// by verb: what a plan costs the API server.
type countingProxy struct {
	url    string
	mu     sync.Mutex
	counts map[string]int
}

func startCountingProxy(cfg *rest.Config) (*countingProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{url: "http://" + ln.Addr().String(), counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = rt
	rp.FlushInterval = -1 // watches stream
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.count(r)
			r.Header.Del("Authorization") // the transport authenticates as admin
			rp.ServeHTTP(w, r)
		}))
	}()
	return p, nil
}

func (p *countingProxy) count(r *http.Request) {
	verb := classify(r)
	if traceRequests {
		fmt.Fprintf(os.Stderr, "  %s %s\n", verb, r.URL.RequestURI())
	}
	p.mu.Lock()
	p.counts[verb]++
	p.mu.Unlock()
}

// classify names a request as kubectl's -v=6 would think of it: WATCH,
// LIST (a collection), GET (an object), DISCOVERY, or the write method.
func classify(r *http.Request) string {
	if w := r.URL.Query().Get("watch"); w == "true" || w == "1" {
		return "WATCH"
	}
	if r.Method != http.MethodGet {
		return r.Method
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return "DISCOVERY"
	}
	if len(rest) > 2 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	switch len(rest) {
	case 0:
		return "DISCOVERY"
	case 1:
		return "LIST"
	}
	return "GET"
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.counts = map[string]int{}
	p.mu.Unlock()
}

func (p *countingProxy) snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

func kubeconfig(server, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: bench, context: {cluster: bench, user: admin}}]
current-context: bench
`, server, token)
}

// ---- seeding ----

var (
	replicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	istioKinds  = []struct {
		gvr  schema.GroupVersionResource
		kind string
	}{
		{schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}, "DestinationRule"},
		{schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}, "VirtualService"},
		{schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}, "AuthorizationPolicy"},
		{schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}, "PeerAuthentication"},
	}
)

// seed creates, in ns, services with one ReplicaSet each (inert: no
// controller manager runs), injected pods owned by them (half v1, half
// v2), and Istio objects for every service but svc-0 (the canary target).
func seed(ctx context.Context, cfg *rest.Config, ns string, sz size) error {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	uids := make([]string, sz.services)
	if err := parallel(sz.services, func(i int) error {
		name := fmt.Sprintf("svc-%d", i)
		if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		rs := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": map[string]any{"name": name},
			"spec": map[string]any{"replicas": int64(0), "selector": map[string]any{"matchLabels": map[string]any{"app": name}},
				"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": name}},
					"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app:1"}}}}},
		}}
		created, err := dyn.Resource(replicaSets).Namespace(ns).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		uids[i] = string(created.GetUID())
		return nil
	}); err != nil {
		return err
	}
	controller := true
	if err := parallel(sz.pods, func(i int) error {
		svc := i % sz.services
		name := fmt.Sprintf("svc-%d", svc)
		version := []string{"v1", "v2"}[(i/sz.services)%2]
		_, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:            fmt.Sprintf("%s-%d", name, i),
				Labels:          map[string]string{"app": name, "version": version},
				Annotations:     map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name, UID: types.UID(uids[svc]), Controller: &controller}},
			},
			Spec: corev1.PodSpec{NodeName: "bench-node", Containers: []corev1.Container{
				{Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
				{Name: "istio-proxy", Image: "proxyv2:1"},
			}},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	return parallel(sz.config, func(i int) error {
		k := istioKinds[i%len(istioKinds)]
		svc := fmt.Sprintf("svc-%d", 1+(i/len(istioKinds))%(sz.services-1))
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetAPIVersion(k.gvr.Group + "/" + k.gvr.Version)
		u.SetKind(k.kind)
		u.SetName(fmt.Sprintf("%s-%d", strings.ToLower(k.kind), i))
		selector := map[string]any{"matchLabels": map[string]any{"app": svc}}
		switch k.kind {
		case "DestinationRule":
			u.Object["spec"] = map[string]any{"host": svc, "subsets": []any{
				map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}},
				map[string]any{"name": "v2", "labels": map[string]any{"version": "v2"}}}}
		case "VirtualService":
			u.Object["spec"] = map[string]any{"hosts": []any{fmt.Sprintf("vs-%d.example.com", i)}, "http": []any{map[string]any{
				"route": []any{map[string]any{"destination": map[string]any{"host": svc}}}}}}
		case "AuthorizationPolicy":
			u.Object["spec"] = map[string]any{"selector": selector, "rules": []any{map[string]any{"from": []any{
				map[string]any{"source": map[string]any{"namespaces": []any{ns}}}}}}}
		case "PeerAuthentication":
			u.Object["spec"] = map[string]any{"selector": selector, "portLevelMtls": map[string]any{"8080": map[string]any{"mode": "PERMISSIVE"}}}
		}
		_, err := dyn.Resource(k.gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		return err
	})
}

// parallel runs fn(0..n-1) on 16 workers and returns the first error.
func parallel(n int, fn func(int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// ---- report ----

func report(rows []row, apiserver string) error {
	var b bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured %s on %s: %d CPUs (%s), %s RAM, %s, %s/%s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), cpuModel(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "Real etcd + kube-apiserver %s from bin/; istioctl built from the same istio.io/istio module; medians of %d runs (analyze: %d, alternating with istioctl).\n", apiserver, runs, compareRuns)
	fmt.Fprintf(&b, "Reproduce with `make bench`.\n\n")
	fmt.Fprintln(&b, "| measurement | kubectl mesh | istioctl | ratio / requests |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.what, r.ours, r.istioctl, r.note)
	}
	fmt.Print(b.String())
	if quick {
		return nil
	}
	return os.WriteFile(filepath.Join("bench", "RESULTS.md"), b.Bytes(), 0o644)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
		}
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}
