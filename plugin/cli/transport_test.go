package cli

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// get sends n requests at once through rt and returns their errors.
func get(t *testing.T, rt http.RoundTripper, url string, n int) []error {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// h2Server is a TLS server speaking HTTP/2 that counts the connections
// clients open to it, with a transport for it.
func h2Server(t *testing.T) (*httptest.Server, *atomic.Int32, *http.Transport) {
	t.Helper()
	conns := &atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("request over %s, want HTTP/2", r.Proto)
		}
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the extra connections closed mid-handshake
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, conns, srv.Client().Transport.(*http.Transport).Clone()
}

func TestConcurrentRequestsShareOneConnection(t *testing.T) {
	// Without the gate, a burst dials several connections (the extra
	// ones are closed once the first speaks HTTP/2).
	srv, conns, bare := h2Server(t)
	for _, err := range get(t, bare, srv.URL, 20) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n < 2 {
		t.Fatalf("without the gate 20 concurrent requests dialed %d connection(s): the test no longer shows the gate's effect", n)
	}

	srv, conns, tr := h2Server(t)
	rt := newFirstConn().wrap(tr)
	for _, err := range get(t, rt, srv.URL, 20) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 concurrent requests dialed %d connections, want 1", n)
	}
}

func TestFirstRequestFailingReleasesTheOthers(t *testing.T) {
	var calls atomic.Int32
	boom := errors.New("dial refused")
	rt := newFirstConn().wrap(roundTripper(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			time.Sleep(20 * time.Millisecond) // the others are waiting by now
			return nil, boom
		}
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}))
	done := make(chan []error)
	go func() { done <- get(t, rt, "http://example.invalid", 5) }()
	select {
	case errs := <-done:
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		if failed != 1 {
			t.Fatalf("%d requests failed, want only the first: %v", failed, errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("requests still waiting for a first connection that failed")
	}
}

func TestWaitingRequestHonoursItsContext(t *testing.T) {
	hold, entered := make(chan struct{}), make(chan struct{})
	defer close(hold)
	rt := newFirstConn().wrap(roundTripper(func(r *http.Request) (*http.Response, error) {
		close(entered)
		<-hold // the first request never gets a connection
		return nil, errors.New("never")
	}))
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://example.invalid", nil)
		rt.RoundTrip(req) //nolint:errcheck // held until the test ends
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.invalid", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the request's deadline", err)
	}
}
