// Command pause is the pod sandbox ("pause") process of the test cluster's locally built
// sandbox image: it does nothing until it is told to stop, as registry.k8s.io/pause does. No
// registry is reachable from the tests, so the image is built from this program.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the sandbox it also reaps the children it inherits.
	signal.Ignore(syscall.SIGCHLD)
	<-sig
}
