package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
)

// Istiod is a real istiod (pilot-discovery, built from the istio module the
// plugin embeds) running on this machine for one revision of an install
// made in the test cluster.
//
// It runs outside the cluster, as Istio's "external control plane" does,
// but is wired so that nothing the install wrote has to change:
//   - its mesh config and injection templates are the ConfigMaps the install
//     wrote (istio-<rev>, istio-sidecar-injector-<rev>): the working directory
//     is empty, so istiod finds no local files and watches those ConfigMaps;
//     its environment is the one the install gave the istiod Deployment;
//   - it patches the caBundle of the install's webhooks itself, as in a
//     cluster, with its self-signed CA (its certificate names
//     istiod-<rev>.<ns>.svc);
//   - the API server reaches the webhook Service and the pods' ports (the
//     service proxy on 15014) through the test env's pod network, which
//     carries connections to the kwok istiod pods and their Service to this
//     process's loopback ports.
//
// So injection and validation go through the real API server to the real
// istiod, the webhooks stay Service-based like in a cluster, and an ADS
// client (ConnectProxy) reads the configuration istiod generates.
type Istiod struct {
	Revision  string
	Namespace string
	// GRPC is the plaintext xDS address (container port 15010).
	GRPC string
	// Monitoring serves /ready and /debug (container port 15014).
	Monitoring string
	Dir        string

	ports map[int]string // container port → local address
	cmd   *exec.Cmd
	env   *Env
	done  chan struct{}
}

// istiodRevision is the revision label of a Deployment our install created
// ("default" for a revision-less install), as istiod expects in REVISION.
func istiodRevision(rev string) string {
	if rev == "" {
		return mesh.DefaultRevision
	}
	return rev
}

// StartIstiod runs a real istiod for the revision rev ("" or "default" for
// a revision-less install) in namespace ns, once the install's ConfigMaps
// exist, and waits until it is ready and its webhooks carry its CA.
func (e *Env) StartIstiod(ctx context.Context, ns, rev string) (*Istiod, error) {
	rev = istiodRevision(rev)
	if _, err := os.Stat(filepath.Join(e.Bin, "pilot-discovery")); err != nil {
		return nil, fmt.Errorf("testenv: pilot-discovery missing in %s: run hack/build-tools.sh (the README's test command does)", e.Bin)
	}
	suffix := ""
	if rev != mesh.DefaultRevision {
		suffix = "-" + rev
	}
	for _, cm := range []string{"istio" + suffix, "istio-sidecar-injector" + suffix} {
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.Kube.CoreV1().ConfigMaps(ns).Get(ctx, cm, metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			return nil, fmt.Errorf("testenv: ConfigMap %s/%s (written by the install) not found: %w", ns, cm, err)
		}
	}
	deployEnv, err := e.istiodEnv(ctx, ns, "istiod"+suffix)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	d := &Istiod{
		Revision: rev, Namespace: ns, GRPC: addr(1), Monitoring: addr(4), env: e, done: make(chan struct{}),
		Dir:   e.path("istiod-" + rev),
		ports: map[int]string{8080: addr(0), 15010: addr(1), 15012: addr(2), 15017: addr(3), 15014: addr(4)},
	}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(d.Dir, "istiod.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(filepath.Join(e.Bin, "pilot-discovery"), "discovery",
		"--kubeconfig="+e.Kubeconfig,
		"--httpAddr="+addr(0), "--grpcAddr="+addr(1), "--secureGRPCAddr="+addr(2),
		"--httpsAddr="+addr(3), "--monitoringAddr="+addr(4),
		"--domain=cluster.local", "--log_output_level=default:warn")
	d.cmd.Dir = d.Dir // no ./etc/istio/config/mesh, no ./var/lib/istio/inject: the ConfigMaps are used
	d.cmd.Env = append(append(os.Environ(), deployEnv...),
		"POD_NAMESPACE="+ns, "POD_NAME=istiod"+suffix+"-testenv", "REVISION="+rev,
		"ISTIOD_CUSTOM_HOST=localhost", "CLUSTER_ID=Kubernetes", "PILOT_ENABLE_ANALYSIS=false",
		// Pushes within a second of a change: tests wait on them.
		"PILOT_DEBOUNCE_AFTER=50ms", "PILOT_DEBOUNCE_MAX=1s")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start pilot-discovery: %w", err)
	}
	go func() { _ = d.cmd.Wait(); logf.Close(); close(d.done) }()
	begin := time.Now()
	if err := d.waitReady(ctx, logPath); err != nil {
		d.Stop()
		return nil, err
	}
	e.network.register(rev, d)
	if err := d.waitWebhookCA(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	e.istiods = append(e.istiods, d)
	e.logf("istiod %s ready after %s (log %s)", rev, time.Since(begin).Round(time.Millisecond), logPath)
	return d, nil
}

// istiodEnv is the environment the install gave istiod's discovery
// container (values.pilot.env and the chart's own settings), without what
// only makes sense inside a pod (the in-cluster KUBECONFIG, field refs).
func (e *Env) istiodEnv(ctx context.Context, ns, name string) ([]string, error) {
	dep, err := e.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("testenv: the install's istiod Deployment %s/%s: %w", ns, name, err)
	}
	var env []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != "discovery" {
			continue
		}
		for _, v := range c.Env {
			if v.ValueFrom == nil && v.Name != "KUBECONFIG" {
				env = append(env, v.Name+"="+v.Value)
			}
		}
	}
	return env, nil
}

func (d *Istiod) waitReady(ctx context.Context, logPath string) error {
	client := &http.Client{Timeout: time.Second}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-d.done:
			return false, fmt.Errorf("testenv: istiod %s exited; see %s", d.Revision, logPath)
		default:
		}
		resp, err := client.Get("http://" + d.ports[8080] + "/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// waitWebhookCA waits until istiod has put its CA into the revision's
// injection webhook, so the API server trusts it.
func (d *Istiod) waitWebhookCA(ctx context.Context) error {
	name := "istio-sidecar-injector"
	if d.Revision != mesh.DefaultRevision {
		name += "-" + d.Revision
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		w, err := d.env.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err != nil {
			return false, nil
		}
		for _, h := range w.Webhooks {
			if len(h.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return len(w.Webhooks) > 0, nil
	})
}

// Running reports whether the process is still up.
func (d *Istiod) Running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Stop kills istiod; the pod network stops carrying connections to it.
func (d *Istiod) Stop() {
	d.env.network.register(d.Revision, nil)
	if d.cmd != nil && d.cmd.Process != nil {
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// RunIstiods keeps a real istiod running for every revision installed in
// namespace ns — one per istiod Deployment, as `kubectl mesh install`
// creates them — until ctx ends: a new revision gets its istiod once the
// install's ConfigMaps exist, and an uninstalled one's istiod is stopped.
// Every running pod with a sidecar from such a revision gets a test proxy
// (ConnectProxy) in place of its Envoy, so istiod has a data plane to push
// to. It is how the sandbox becomes a working mesh without an extra command.
func (e *Env) RunIstiods(ctx context.Context, ns string) {
	running := map[string]*Istiod{}
	failed := map[string]time.Time{}
	proxies := map[string]*Proxy{} // pod UID → its test proxy
	defer func() {
		for _, p := range proxies {
			p.Close()
		}
		for _, d := range running {
			d.Stop()
		}
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		want := map[string]bool{}
		if deps, err := e.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"}); err == nil {
			for _, d := range deps.Items {
				want[istiodRevision(d.Labels["istio.io/rev"])] = true
			}
		}
		for rev := range want {
			if d := running[rev]; d != nil && d.Running() {
				continue
			}
			// A revision whose istiod failed to start is retried now and then,
			// not on every tick.
			if t, ok := failed[rev]; ok && time.Since(t) < 30*time.Second {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			d, err := e.StartIstiod(sctx, ns, rev)
			cancel()
			if err != nil {
				e.logf("istiod %s: %v", rev, err)
				failed[rev] = time.Now()
				continue
			}
			delete(failed, rev)
			running[rev] = d
		}
		for rev, d := range running {
			if !want[rev] {
				e.logf("revision %s uninstalled: stopping its istiod", rev)
				d.Stop()
				delete(running, rev)
			}
		}
		e.connectSidecars(ctx, running, proxies)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// connectSidecars keeps one test proxy per running injected pod whose
// revision's istiod runs, and closes those whose pod is gone.
func (e *Env) connectSidecars(ctx context.Context, running map[string]*Istiod, proxies map[string]*Proxy) {
	pods, err := e.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	alive := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		// Injected pods only: a gateway's pods run istio-proxy too, but as
		// gateways, not sidecars.
		if p.Annotations[mesh.AnnotationStatus] == "" || p.Status.PodIP == "" || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		d := running[mesh.InjectedRevision(p)]
		if d == nil {
			continue
		}
		uid := string(p.UID)
		alive[uid] = true
		if proxies[uid] != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		px, err := d.ConnectProxy(cctx, p, ProxyOptions{})
		cancel()
		if err != nil {
			e.logf("proxy for %s/%s: %v", p.Namespace, p.Name, err)
			continue
		}
		proxies[uid] = px
	}
	for uid, px := range proxies {
		if !alive[uid] {
			px.Close()
			delete(proxies, uid)
		}
	}
}
