package cli

import (
	"net/http"
	"net/http/httptrace"
	"sync"
)

// firstConn makes the requests a command sends at once share one
// connection. A command reads the cluster with many concurrent LISTs; sent
// before any connection exists, each would dial and handshake its own
// (net/http cannot know the server speaks HTTP/2 until a handshake
// completes), and a dozen TLS handshakes cost more than the small LISTs
// they carry. So the first request goes alone until it has a connection;
// the others then find it in the pool and share it over HTTP/2 (over
// HTTP/1.1 they dial as before, only later).
type firstConn struct {
	mu      sync.Mutex
	started bool
	ready   chan struct{} // closed once the first request has a connection, or gave up
}

func newFirstConn() *firstConn { return &firstConn{ready: make(chan struct{})} }

// wrap is a rest.Config WrapTransport. Every client of one command wraps
// with the same firstConn: they share client-go's cached transport.
func (f *firstConn) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		f.mu.Lock()
		first := !f.started
		f.started = true
		f.mu.Unlock()
		if !first {
			select {
			case <-f.ready:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
			return rt.RoundTrip(req)
		}
		var once sync.Once
		release := func() { once.Do(func() { close(f.ready) }) }
		defer release() // a failed dial: the others try their own
		trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { release() }}
		return rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
