// Package cli holds what every command shares: the kubectl connection flags,
// the engine flags, the streams, the prompter and lazily built clients.
// Nothing here touches the network until a client is asked for, so
// `kubectl mesh --help` and `version --client` stay offline.
package cli

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/prompt"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Client rate limits: the defaults (5 QPS, burst 10) make a plan of a busy
// namespace crawl; istioctl uses the same values.
const (
	QPS   = 50
	Burst = 100
)

// Context is handed to every command and workflow.
type Context struct {
	Flags   *genericclioptions.ConfigFlags
	Engine  *EngineOptions
	Streams genericiooptions.IOStreams
	// Prompter is nil when the command cannot prompt (no terminal); tests set a mock.
	Prompter prompt.Prompter
	Now      func() time.Time
	// Args is the command line, recorded in the journal.
	Args []string
	// Source, when set, supplies the clients instead of the kubeconfig
	// flags: tests hand in fake clients (as kubectl's cmdtesting factory
	// does), so the Runner and workflows run without a cluster.
	Source ClientSource
	// ChangeSets are the IDs of the change sets this command recorded, in
	// order (the fleet prints the undo command per cluster from them).
	ChangeSets []string

	readsMu sync.Mutex
	reads   *reads.Reader

	once    sync.Once
	restCfg *rest.Config
	err     error
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	md      metadata.Interface
}

// New returns a Context for the given streams with default flags.
func New(streams genericiooptions.IOStreams) *Context {
	flags := genericclioptions.NewConfigFlags(true)
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.QPS, c.Burst = QPS, Burst
		return c
	}
	return &Context{
		Flags:   flags,
		Engine:  DefaultEngineOptions(),
		Streams: streams,
		Now:     time.Now,
		Args:    os.Args,
	}
}

// CanPrompt reports whether questions may be asked: a prompter exists
// (stdin and stdout are terminals, or a test installed one).
func (c *Context) CanPrompt() bool { return c.Prompter != nil }

// IsTerminal reports whether w is a terminal (for colors and prompts).
func IsTerminal(w any) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Color reports whether output to w may use ANSI colors.
func Color(w any) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	return IsTerminal(w)
}

// RESTConfig returns the client configuration from the kubeconfig flags.
func (c *Context) RESTConfig() (*rest.Config, error) {
	c.once.Do(func() {
		cfg, err := c.Flags.ToRESTConfig()
		if err != nil {
			c.err = fmt.Errorf("cannot load the kubeconfig: %w; set --kubeconfig or KUBECONFIG", err)
			return
		}
		cfg.Wrap(newFirstConn().wrap)
		c.restCfg = cfg
		// Built-in types travel as protobuf: a list of thousands of pods
		// decodes several times faster than as JSON. (CRDs only speak
		// JSON; the dynamic client keeps it.)
		typed := rest.CopyConfig(cfg)
		typed.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		typed.ContentType = "application/vnd.kubernetes.protobuf"
		if c.kube, c.err = kubernetes.NewForConfig(typed); c.err != nil {
			return
		}
		if c.dyn, c.err = dynamic.NewForConfig(cfg); c.err != nil {
			return
		}
		c.md, c.err = metadata.NewForConfig(cfg)
	})
	return c.restCfg, c.err
}

// ClientSource builds the clients a command talks to the cluster with.
type ClientSource interface {
	Clients() (Clients, error)
	// Lister makes the LISTs of Reads.
	Lister() (reads.Lister, error)
	Mapper() (meta.ResettableRESTMapper, error)
	Discovery() (discovery.CachedDiscoveryInterface, error)
}

// Clients are the three clients most workflows read with.
type Clients struct {
	Kube     kubernetes.Interface
	Dynamic  dynamic.Interface
	Metadata metadata.Interface
}

// Clients returns the typed, dynamic and metadata-only clients.
func (c *Context) Clients() (Clients, error) {
	if c.Source != nil {
		return c.Source.Clients()
	}
	_, err := c.RESTConfig()
	return Clients{Kube: c.kube, Dynamic: c.dyn, Metadata: c.md}, err
}

// Reads is the command's one read of the cluster: the planner, the checks
// and Istio's analyzers of one plan (or of one inspection) read through it,
// so that each kind is listed once. ForgetReads starts a new one.
func (c *Context) Reads() (*reads.Reader, error) {
	c.readsMu.Lock()
	defer c.readsMu.Unlock()
	if c.reads != nil {
		return c.reads, nil
	}
	var l reads.Lister
	if c.Source != nil {
		var err error
		if l, err = c.Source.Lister(); err != nil {
			return nil, err
		}
	} else {
		if _, err := c.RESTConfig(); err != nil {
			return nil, err
		}
		l = reads.REST(c.kube, c.md)
	}
	c.reads = reads.New(l)
	return c.reads, nil
}

// ForgetReads drops what Reads read: what runs next (the writes of a plan
// and their verification, the next step of a sequence) sees the cluster
// anew.
func (c *Context) ForgetReads() {
	c.readsMu.Lock()
	c.reads = nil
	c.readsMu.Unlock()
}

// Kube returns the typed client.
func (c *Context) Kube() (kubernetes.Interface, error) {
	cl, err := c.Clients()
	return cl.Kube, err
}

// Dynamic returns the dynamic client.
func (c *Context) Dynamic() (dynamic.Interface, error) {
	cl, err := c.Clients()
	return cl.Dynamic, err
}

// Metadata returns the metadata-only client (labels and annotations without specs).
func (c *Context) Metadata() (metadata.Interface, error) {
	cl, err := c.Clients()
	return cl.Metadata, err
}

// Mapper returns the (cached, deferred) REST mapper.
func (c *Context) Mapper() (meta.ResettableRESTMapper, error) {
	if c.Source != nil {
		return c.Source.Mapper()
	}
	m, err := c.Flags.ToRESTMapper()
	if err != nil {
		return nil, err
	}
	rm, ok := m.(meta.ResettableRESTMapper)
	if !ok {
		return nil, fmt.Errorf("internal: REST mapper %T cannot be reset", m)
	}
	return rm, nil
}

// Discovery returns the cached discovery client.
func (c *Context) Discovery() (discovery.CachedDiscoveryInterface, error) {
	if c.Source != nil {
		return c.Source.Discovery()
	}
	return c.Flags.ToDiscoveryClient()
}

// Namespace returns the namespace from -n or the kubeconfig context, and
// whether it was given explicitly.
func (c *Context) Namespace() (string, bool, error) {
	return c.Flags.ToRawKubeConfigLoader().Namespace()
}
