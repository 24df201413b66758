// Package testenv starts a real control plane for tests and the sandbox:
// etcd and kube-apiserver (RBAC on, token authentication), optionally
// kube-controller-manager, kube-scheduler and kwok with one fake Node so
// Deployments get pods that become Ready, and Istio's CRDs from the istio
// module's embedded manifests. Binaries come from bin/ (hack/build-tools.sh).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
)

// Users known to the API server's token file. Admin is in system:masters;
// the others have no permissions until a test binds a role.
var Users = map[string]string{
	"admin":      "admin-token",
	"restricted": "restricted-token",
	"viewer":     "viewer-token",
}

// Options choose what to start.
type Options struct {
	// Nodes starts the controller manager, scheduler and kwok with one fake node.
	Nodes bool
	// IstioCRDs installs Istio's CRDs.
	IstioCRDs bool
	// GatewayAPICRDs installs the Gateway API's standard CRDs (the ones
	// kubectl mesh install --gateway-api applies).
	GatewayAPICRDs bool
	// ServiceAccounts turns on the ServiceAccount admission plugin, as in
	// a real cluster: pods get their namespace's default ServiceAccount and
	// its token volume. Istio's injector needs it (the istio-token volume
	// it adds is refused on a pod without a ServiceAccount). With Nodes,
	// the controller manager creates the default ServiceAccounts; a bare pod
	// created in the same instant as its namespace may be refused once.
	ServiceAccounts bool
	// Dir holds data and logs; a temporary directory when empty.
	Dir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Env is a running control plane.
type Env struct {
	Dir        string
	Bin        string
	URL        string
	Kubeconfig string // admin kubeconfig
	Config     *rest.Config
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface

	opts      Options
	etcdURL   string
	apiPort   int
	apiserver *exec.Cmd
	etcd      *exec.Cmd
	procs     []*exec.Cmd
	exited    map[*exec.Cmd]chan struct{} // closed when the process has exited
	ownDir    bool
	network   *podNetwork
	istiods   []*Istiod
}

// errPortTaken: a process of ours exited because another control plane
// (a concurrent test package) took a port between our pick and its bind.
var errPortTaken = errors.New("testenv: port taken by another process")

func (e *Env) running(cmd *exec.Cmd) bool {
	select {
	case <-e.exited[cmd]:
		return false
	default:
		return true
	}
}

// BinDir finds the directory with the control-plane binaries: $KUBECTL_MESH_BIN,
// or bin/ at the module root above the working directory.
func BinDir() (string, error) {
	if d := os.Getenv("KUBECTL_MESH_BIN"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !strings.Contains(dir, "/hack/tools") {
			return filepath.Join(dir, "bin"), nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
	}
}

// Start brings up the control plane; call Stop when done.
func Start(ctx context.Context, opts Options) (*Env, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	need := []string{"etcd", "kube-apiserver"}
	if opts.Nodes {
		need = append(need, "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml")
	}
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(bin, n)); err != nil {
			return nil, fmt.Errorf("testenv: %s missing in %s: run hack/build-tools.sh (the README's test command does)", n, bin)
		}
	}
	e := &Env{Bin: bin, opts: opts, Dir: opts.Dir}
	if e.Dir == "" {
		if e.Dir, err = os.MkdirTemp("", "kubectl-mesh-testenv-"); err != nil {
			return nil, err
		}
		e.ownDir = true
	}
	if err := e.startPodNetwork(); err != nil {
		e.Stop()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = e.start(ctx)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			e.Stop()
			return nil, err
		}
		e.logf("a port was taken by another process; starting again on new ports")
		for _, p := range e.procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		}
		e.reap()
		_ = os.RemoveAll(filepath.Join(e.Dir, "etcd"))
	}
}

// portTaken reports a bind failure in a component's log.
func portTaken(logPath string) bool {
	b, _ := os.ReadFile(logPath)
	return bytes.Contains(b, []byte("address already in use"))
}

// servesOurCert checks that the server on our port presents the serving
// certificate our kube-apiserver generated in its cert dir.
func (e *Env) servesOurCert() bool {
	want, err := os.ReadFile(e.path(filepath.Join("certs", "apiserver.crt")))
	if err != nil {
		return false
	}
	block, _ := pem.Decode(want)
	if block == nil {
		return false
	}
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.apiPort), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return false
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	return len(certs) > 0 && bytes.Equal(certs[0].Raw, block.Bytes)
}

func (e *Env) logf(format string, a ...any) {
	if e.opts.Log != nil {
		fmt.Fprintf(e.opts.Log, "testenv: "+format+"\n", a...)
	}
}

func (e *Env) start(ctx context.Context) error {
	begin := time.Now()
	ports, err := pickPorts(3)
	if err != nil {
		return err
	}
	e.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	e.apiPort = ports[2]
	e.URL = fmt.Sprintf("https://127.0.0.1:%d", e.apiPort)

	if e.etcd, err = e.spawn("etcd", "--name=default", "--data-dir="+filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls="+e.etcdURL, "--advertise-client-urls="+e.etcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if err := e.writeFiles(); err != nil {
		return err
	}
	if err := e.StartAPIServer(ctx); err != nil {
		return err
	}
	// etcd fails at once when its port is taken; by now it would have, and
	// our apiserver would be talking to someone else's etcd.
	if !e.running(e.etcd) {
		return errPortTaken
	}
	e.logf("apiserver ready at %s after %s", e.URL, time.Since(begin).Round(time.Millisecond))
	if e.opts.IstioCRDs {
		if err := InstallIstioCRDs(ctx, e.Config); err != nil {
			return err
		}
		e.logf("istio CRDs established after %s", time.Since(begin).Round(time.Millisecond))
	}
	if e.opts.GatewayAPICRDs {
		crds, err := mesh.GatewayAPICRDs()
		if err != nil {
			return err
		}
		if err := InstallCRDs(ctx, e.Config, crds); err != nil {
			return err
		}
		e.logf("gateway API CRDs established after %s", time.Since(begin).Round(time.Millisecond))
	}
	if e.opts.Nodes {
		if err := e.startNodes(ctx); err != nil {
			return err
		}
		e.logf("fake node ready after %s", time.Since(begin).Round(time.Millisecond))
	}
	return nil
}

func (e *Env) path(name string) string { return filepath.Join(e.Dir, name) }

// writeFiles creates the service-account key, the token file and the
// kubeconfigs.
func (e *Env) writeFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(e.path("sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	var tokens bytes.Buffer
	uid := 1
	for user, token := range Users {
		groups := ""
		if user == "admin" {
			groups = `,"system:masters"`
		}
		fmt.Fprintf(&tokens, "%s,%s,%d%s\n", token, user, uid, groups)
		uid++
	}
	if err := os.WriteFile(e.path("tokens.csv"), tokens.Bytes(), 0o600); err != nil {
		return err
	}
	e.Kubeconfig = e.path("admin.kubeconfig")
	return os.WriteFile(e.Kubeconfig, []byte(e.KubeconfigFor("admin", Users["admin"], "")), 0o600)
}

// KubeconfigFor renders a kubeconfig for a token; ns sets the context's namespace.
func (e *Env) KubeconfigFor(user, token, ns string) string {
	nsLine := ""
	if ns != "" {
		nsLine = "\n    namespace: " + ns
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: %s
  user:
    token: %s
contexts:
- name: %s
  context:
    cluster: testenv
    user: %s%s
current-context: %s
`, e.URL, user, token, user, user, nsLine, user)
}

// WriteKubeconfig writes a kubeconfig for user (a key of Users) and returns its path.
func (e *Env) WriteKubeconfig(user, ns string) (string, error) {
	p := e.path(user + "-" + ns + ".kubeconfig")
	return p, os.WriteFile(p, []byte(e.KubeconfigFor(user, Users[user], ns)), 0o600)
}

// StartAPIServer starts (or restarts) kube-apiserver and waits until it is ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	// No kubelet serves ServiceAccount tokens here (pods are fake): without
	// ServiceAccounts, pods are admitted without one.
	admission := "--disable-admission-plugins=ServiceAccount"
	if e.opts.ServiceAccounts {
		admission = "--disable-admission-plugins="
	}
	cmd, err := e.spawn("kube-apiserver",
		"--etcd-servers="+e.etcdURL,
		"--cert-dir="+e.path("certs"),
		fmt.Sprintf("--secure-port=%d", e.apiPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--authorization-mode=RBAC",
		"--token-auth-file="+e.path("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+e.path("sa.key"),
		"--service-account-signing-key-file="+e.path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		admission,
		"--enable-priority-and-fairness=false",
		// Webhooks and the service proxy reach pods through the test
		// env's pod network (network.go).
		"--egress-selector-config-file="+e.path("egress-selector.yaml"),
		"--v=0")
	if err != nil {
		return err
	}
	e.apiserver = cmd
	e.Config = &rest.Config{Host: e.URL, BearerToken: Users["admin"], QPS: 100, Burst: 200,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	if e.Kube, err = kubernetes.NewForConfig(e.Config); err != nil {
		return err
	}
	if e.Dynamic, err = dynamic.NewForConfig(e.Config); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		if !e.running(cmd) {
			if portTaken(e.path("kube-apiserver.log")) {
				return false, errPortTaken
			}
			return false, fmt.Errorf("kube-apiserver exited; see %s", e.path("kube-apiserver.log"))
		}
		body, err := e.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		// Another test's apiserver may answer on this port before ours
		// fails to bind it: ready means ready with our own certificate.
		return err == nil && string(body) == "ok" && e.servesOurCert(), nil
	})
}

// KillAPIServer kills kube-apiserver abruptly (for fault-tolerance tests).
func (e *Env) KillAPIServer() {
	if e.apiserver != nil && e.apiserver.Process != nil {
		_ = e.apiserver.Process.Kill()
		<-e.exited[e.apiserver]
	}
}

// spawn starts a binary from bin/ with its output in <dir>/<name>.log. The
// process is killed if the test binary dies (Pdeathsig).
func (e *Env) spawn(name string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(e.path(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(e.Bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start %s: %w", name, err)
	}
	done := make(chan struct{})
	if e.exited == nil {
		e.exited = map[*exec.Cmd]chan struct{}{}
	}
	e.exited[cmd] = done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	e.procs = append(e.procs, cmd)
	return cmd, nil
}

// reap waits (briefly) for killed processes to exit and forgets them.
func (e *Env) reap() {
	for _, p := range e.procs {
		select {
		case <-e.exited[p]:
		case <-time.After(time.Second):
		}
	}
	e.procs, e.exited = nil, nil
}

// Stop kills every process and removes the temporary directory.
func (e *Env) Stop() {
	for _, d := range e.istiods {
		d.Stop()
	}
	e.network.close()
	for i := len(e.procs) - 1; i >= 0; i-- {
		if p := e.procs[i].Process; p != nil {
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	}
	e.reap()
	if e.ownDir {
		_ = os.RemoveAll(e.Dir)
	}
}

// pickPorts is freePorts; tests replace it to force a collision.
var pickPorts = freePorts

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startNodes runs the controller manager, the scheduler and kwok, and
// registers one fake node that kwok keeps Ready.
func (e *Env) startNodes(ctx context.Context) error {
	if _, err := e.spawn("kube-controller-manager", "--kubeconfig="+e.Kubeconfig, "--leader-elect=false",
		"--service-account-private-key-file="+e.path("sa.key"), "--use-service-account-credentials=false",
		"--secure-port=0", "--controllers=*,-nodeipam,-serviceaccount-token", "--node-monitor-grace-period=60s"); err != nil {
		return err
	}
	if _, err := e.spawn("kube-scheduler", "--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return err
	}
	if _, err := e.spawn("kwok", "--kubeconfig="+e.Kubeconfig, "--config="+filepath.Join(e.Bin, "kwok-stages.yaml"),
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=10.244.0.1/16", "--node-ip=10.0.0.1"); err != nil {
		return err
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "kwok-node-0",
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": "kwok-node-0", "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": "zone-a"},
		},
		Status: corev1.NodeStatus{
			// What a real node reports, ephemeral storage included (pods
			// that request it are unschedulable on a node without it).
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("1000"), corev1.ResourceEphemeralStorage: resource.MustParse("500Gi")},
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("1000"), corev1.ResourceEphemeralStorage: resource.MustParse("500Gi")},
		},
	}
	if _, err := e.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("testenv: create fake node: %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := e.Kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return len(n.Spec.Taints) == 0, nil
			}
		}
		return false, nil
	})
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// IstioCRDs returns the CRDs embedded in the istio module (the base chart's crd-all).
func IstioCRDs() ([]*unstructured.Unstructured, error) { return mesh.ShippedCRDs() }

// InstallIstioCRDs creates Istio's CRDs and waits until they are established.
func InstallIstioCRDs(ctx context.Context, cfg *rest.Config) error {
	crds, err := IstioCRDs()
	if err != nil {
		return err
	}
	return InstallCRDs(ctx, cfg, crds)
}

// InstallCRDs creates CRDs and waits until each of them is established.
func InstallCRDs(ctx context.Context, cfg *rest.Config, crds []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, c := range crds {
		if _, err := dyn.Resource(crdGVR).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("testenv: create CRD %s: %w", c.GetName(), err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := dyn.Resource(crdGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		want := map[string]bool{}
		for _, c := range crds {
			want[c.GetName()] = true
		}
		established := 0
		for _, item := range list.Items {
			if !want[item.GetName()] {
				continue
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.Object, &crd); err != nil {
				return false, err
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					established++
				}
			}
		}
		return established >= len(crds), nil
	})
}
