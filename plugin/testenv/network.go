package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podNetwork is the cluster network as the API server sees it. kwok's pods
// and Services have addresses nothing listens on; the API server reaches
// the "cluster" (admission webhooks, the service and pod proxy) through an
// HTTP CONNECT proxy configured as its egress selector, and this is that
// proxy. A connection to a pod of a revision whose real istiod runs here, or
// to a ClusterIP Service selecting such pods, is carried to the local
// process's port for the container port asked for; any other address is
// dialled as it is (Prometheus on the host's address).
type podNetwork struct {
	env  *Env
	sock string
	ln   net.Listener

	mu     sync.Mutex
	istiod map[string]*Istiod // by revision
}

func (e *Env) startPodNetwork() error {
	// A Unix socket path is limited to 108 bytes: keep it short.
	f, err := os.CreateTemp("", "mesh-egress-*.sock")
	if err != nil {
		return err
	}
	sock := f.Name()
	f.Close()
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("testenv: pod network socket: %w", err)
	}
	e.network = &podNetwork{env: e, sock: sock, ln: ln, istiod: map[string]*Istiod{}}
	go e.network.serve()
	cfg := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, sock)
	return os.WriteFile(e.path("egress-selector.yaml"), []byte(cfg), 0o600)
}

func (n *podNetwork) close() {
	if n == nil {
		return
	}
	n.ln.Close()
	os.Remove(n.sock)
}

func (n *podNetwork) register(rev string, d *Istiod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d == nil {
		delete(n.istiod, rev)
		return
	}
	n.istiod[rev] = d
}

func (n *podNetwork) serve() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		go n.handle(c)
	}
}

func (n *podNetwork) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		fmt.Fprint(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	target, err := n.route(req.Host)
	if err == nil {
		var up net.Conn
		if up, err = net.DialTimeout("tcp", target, 5*time.Second); err == nil {
			defer up.Close()
			fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			go func() { _, _ = io.Copy(up, br); closeWrite(up) }()
			_, _ = io.Copy(c, up)
			return
		}
	}
	fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s", len(err.Error()), err.Error())
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// route maps host:port on the cluster network to a local address.
func (n *podNetwork) route(hostport string) (string, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	revs := make(map[string]*Istiod, len(n.istiod))
	for r, d := range n.istiod {
		revs[r] = d
	}
	n.mu.Unlock()
	if len(revs) == 0 {
		return direct(host, hostport)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ns := revs[firstKey(revs)].Namespace
	// A pod of a revision: its container port.
	pods, err := n.env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=" + host})
	if err == nil {
		for _, p := range pods.Items {
			if d := revs[p.Labels["istio.io/rev"]]; d != nil && p.Labels["app"] == "istiod" {
				if local, ok := d.ports[port]; ok {
					return local, nil
				}
				return "", fmt.Errorf("istiod %s serves no container port %d here", d.Revision, port)
			}
		}
	}
	// A ClusterIP Service selecting a revision's pods: its target port.
	svcs, err := n.env.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, s := range svcs.Items {
			if s.Spec.ClusterIP != host || len(s.Spec.Selector) == 0 {
				continue
			}
			for _, d := range revs {
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set{"app": "istiod", "istio.io/rev": d.Revision}) {
					continue
				}
				if local, ok := d.ports[targetPort(s, port)]; ok {
					return local, nil
				}
			}
		}
	}
	return direct(host, hostport)
}

// clusterRanges are the test cluster's Service and pod ranges (the API
// server's --service-cluster-ip-range and kwok's --cidr): nothing listens
// there, so an address in them that no istiod serves is refused, as a
// pod without a server would refuse it.
var clusterRanges = []string{"10.96.0.0/16", "10.244.0.0/16"}

func direct(host, hostport string) (string, error) {
	ip := net.ParseIP(host)
	for _, r := range clusterRanges {
		if _, n, _ := net.ParseCIDR(r); ip != nil && n.Contains(ip) {
			return "", fmt.Errorf("dial tcp %s: connection refused", hostport)
		}
	}
	return hostport, nil
}

func firstKey(m map[string]*Istiod) string {
	for k := range m {
		return k
	}
	return ""
}

// targetPort is the container port a Service port leads to (istiod's
// ports are numbered, so a named target port is not resolved).
func targetPort(s corev1.Service, port int) int {
	for _, p := range s.Spec.Ports {
		if int(p.Port) != port {
			continue
		}
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0 {
			return int(p.TargetPort.IntVal)
		}
		return port
	}
	return port
}
