package apiserver

import (
	"errors"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StartForTest starts an API server for t (Start), stopped when t ends, and returns its config
// and a client. It skips t when the envtest binaries are missing, except in CI.
func StartForTest(t testing.TB) (*rest.Config, client.Client) {
	t.Helper()
	env, rc, err := Start()
	if errors.Is(err, ErrNoAssets) && !InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return rc, c
}
