package kubeletsim

import (
	"errors"
	"os/exec"
	"testing"
)

// The chaos suite SIGKILLs agent processes: their pods must end as a real kubelet reports
// it (137), not as an ordinary failure (1), so that podReason tells the two apart.
func TestExitCode(t *testing.T) {
	run := func(script string) error { return exec.Command("sh", "-c", script).Run() }
	cases := []struct {
		name string
		err  error
		want int32
	}{
		{"success", nil, 0},
		{"exit status", run("exit 3"), 3},
		{"SIGKILL", run("kill -KILL $$"), 137},
		{"SIGTERM", run("kill -TERM $$"), 143},
		{"not a process", errors.New("mounting the volumes"), 1},
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}
