// Package scheme builds the runtime scheme the manager, the agent and the tests share: the
// built-in Kubernetes types and the firmware.fwops.io API.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// New returns a scheme with the built-in types and this project's API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration: cannot fail at run time
	}
	if err := fwv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
