package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Prometheus is a real Prometheus server (Debian's prometheus package)
// serving a dataset backfilled with promtool.
type Prometheus struct {
	// URL is the server on the loopback interface.
	URL string
	// Port it listens on, on every interface (so the API server's service
	// proxy can reach it through HostIP).
	Port int
	cmd  *exec.Cmd
}

// StartPrometheus backfills openMetrics (OpenMetrics text with timestamps,
// ending in "# EOF") into a fresh TSDB under dir with `promtool tsdb
// create-blocks-from openmetrics` and starts prometheus on it.
func StartPrometheus(ctx context.Context, dir, openMetrics string) (*Prometheus, error) {
	for _, bin := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("testenv: %s not on PATH: run make tools (it installs Debian's prometheus package)", bin)
		}
	}
	data := filepath.Join(dir, "data")
	src := filepath.Join(dir, "metrics.om")
	if err := os.WriteFile(src, []byte(openMetrics), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "promtool", "tsdb", "create-blocks-from", "openmetrics", src, data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testenv: promtool backfill: %v: %s", err, out)
	}
	// Nothing to scrape: the dataset is all there is.
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Port: ports[0]}
	p.cmd = exec.Command("prometheus", "--config.file="+conf, "--storage.tsdb.path="+data,
		fmt.Sprintf("--web.listen-address=0.0.0.0:%d", ports[0]), "--storage.tsdb.retention.time=30d")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Stop()
	return nil, fmt.Errorf("testenv: prometheus not ready after 60s; see %s", log.Name())
}

// Stop kills the server.
func (p *Prometheus) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// HostIP is a non-loopback IPv4 address of this machine: the API server
// refuses to proxy to loopback endpoints.
func HostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("testenv: no non-loopback IPv4 address")
}
