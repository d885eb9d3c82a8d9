package fleet

import "github.com/fwops/firmware-operator/internal/sshdhost"

// ErrNoSSHD says the Linux host cannot be simulated on this machine.
var ErrNoSSHD = sshdhost.ErrUnavailable

// Available tells whether a real sshd can stand in for a Linux host here: nil when it can,
// else an error wrapping ErrNoSSHD that says why.
func Available() error { return sshdhost.Available() }
