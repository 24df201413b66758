// Package clitest hands commands fake clients through cli.Context.Source,
// so a Runner or a workflow's Complete and Plan run in a unit test.
package clitest

import (
	"errors"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/reads"
)

// Source is a cli.ClientSource of given clients; the REST mapper serves
// Kinds (true: namespaced).
type Source struct {
	Kube     kubernetes.Interface
	Dynamic  dynamic.Interface
	Metadata metadata.Interface
	Kinds    map[schema.GroupVersionKind]bool
	// Reads, when set, answers the reader's LISTs instead of Dynamic.
	Reads reads.Lister
}

var _ cli.ClientSource = Source{}

func (s Source) Clients() (cli.Clients, error) {
	return cli.Clients{Kube: s.Kube, Dynamic: s.Dynamic, Metadata: s.Metadata}, nil
}

// Lister lists with s.Reads, else from the fake dynamic client, whose
// objects the reader then decodes as it decodes the API server's JSON.
func (s Source) Lister() (reads.Lister, error) {
	if s.Reads != nil {
		return s.Reads, nil
	}
	return reads.Dynamic(s.Dynamic), nil
}

func (s Source) Mapper() (meta.ResettableRESTMapper, error) {
	m := meta.NewDefaultRESTMapper(nil)
	for gvk, namespaced := range s.Kinds {
		scope := meta.RESTScopeRoot
		if namespaced {
			scope = meta.RESTScopeNamespace
		}
		m.Add(gvk, scope)
	}
	return resettable{m}, nil
}

// Discovery is not faked: the commands that need it (new CRDs) are for
// the end-to-end tests.
func (Source) Discovery() (discovery.CachedDiscoveryInterface, error) {
	return nil, errors.New("clitest: no discovery client")
}

type resettable struct{ meta.RESTMapper }

func (resettable) Reset() {}
