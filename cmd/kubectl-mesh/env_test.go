package main

import (
	"context"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/testenv"
)

// startEnv starts a control plane of the test's own (stopped at cleanup),
// for tests that install Istio, kill the API server, or need no Istio CRDs.
func startEnv(t *testing.T, opts testenv.Options) *testenv.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := testenv.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

func sleep() { time.Sleep(100 * time.Millisecond) }

// waitFor polls cond for up to 30 s (what, for the failure message).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); sleep() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
