package linux

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// A Smart Component runs on the host detached from the SSH session that started it, so that
// neither the agent's exit nor a dropped connection interrupts a flash. Its run directory,
// <staging>/fwops-<first 16 hex digits of the image's SHA-256>, is the whole record of the run:
//
//	<component>  the copied Smart Component
//	run.sh       the wrapper that runs it (runWrapper), through sudo when the target says so
//	tmp/         TMPDIR for the component, so that it does not unpack into a noexec /tmp
//	launched/    made once, atomically, by the launch: the run was started (never start twice)
//	pid          "<pid> <boot id>" of the detached process, to tell a live run from a dead one
//	began        the wrapper got past sudo and is about to start the component
//	output       the component's stdout and stderr
//	result       the component's exit code, written atomically (tmp file, then rename)
//	finished     the wrapper's own exit code (sudo's when sudo refused), written atomically
//	launch.log   what sudo or the wrapper printed
//	report.sh    run once finished exists: reports the run's end to the agent (callback.go)
//	callback     "<port> <token>": where report.sh reports, written by the agent following the run
//
// A later agent (a resume of the same target) finds the directory by the image's digest and
// follows the run or reads its result instead of starting it again. The directory is removed
// only after the result has been read.

// runDirPrefix starts the name of every run directory in the staging directory.
const runDirPrefix = "fwops-"

// runDir is the run directory of the image with digest sha256 (lower-case hex).
func runDir(staging, sha256 string) string {
	return path.Join(staging, runDirPrefix+sha256[:16])
}

// runWrapper is run.sh: run the component from its own directory, as HPE's instructions say
// ("./CPXXXXXX.scexe" from the same directory), silently (-s), and leave its exit code.
const runWrapper = `#!/bin/sh
# Written by firmware-operator's agent: runs one Smart Component detached from the SSH session
# that started it and leaves its exit code in ./result (see internal/agent/linux/hostrun.go).
cd -- "$(dirname -- "$0")" || exit 125
: > began
TMPDIR="$PWD/tmp"
export TMPDIR
./"$1" -s > output 2>&1 < /dev/null
code=$?
printf '%s\n' "$code" > result.tmp && mv -f result.tmp result
`

// prepareScript makes the staging directory if it is missing and the run directory in it
// (private to the SSH user), then checks that a file there can be executed. It prints one of
// ok, missing, exists, notwritable, or "noexec <findmnt TARGET OPTIONS>".
func prepareScript(staging, dir string) string {
	return fmt.Sprintf(`exec 2>/dev/null
s=%s; d=%s
mkdir -p -- "$s" 2>/dev/null
[ -d "$s" ] || { echo missing; exit 0; }
if ! mkdir -m 700 -- "$d" 2>/dev/null; then
	if [ -e "$d" ] || [ -L "$d" ]; then echo exists; else echo notwritable; fi
	exit 0
fi
if ! mkdir -- "$d/tmp" 2>/dev/null || ! printf '#!/bin/sh\nexit 0\n' > "$d/probe" 2>/dev/null || ! chmod 700 "$d/probe"; then
	rm -rf -- "$d"; echo notwritable; exit 0
fi
if "$d/probe" 2>/dev/null; then rm -f -- "$d/probe"; echo ok; exit 0; fi
rm -rf -- "$d"
echo "noexec $(findmnt -n -o TARGET,OPTIONS -T "$s" 2>/dev/null)"
`, quote(staging), quote(dir))
}

// launchScript starts run.sh detached (setsid, or nohup where setsid is missing), after
// claiming the run with mkdir, which succeeds once only. It waits until the detached process
// has written its pid, then prints launched; "claimed" when another launch got there first.
func launchScript(dir, component string, sudo bool) string {
	runner := "sh"
	if sudo {
		runner = "sudo -n sh"
	}
	return fmt.Sprintf(`d=%[1]s
mkdir -- "$d/launched" 2>/dev/null || { echo claimed; exit 0; }
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
$detach sh -c 'd=$1; shift
printf "%%s %%s\n" "$$" "$(cat /proc/sys/kernel/random/boot_id)" > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
"$@" > "$d/launch.log" 2>&1
printf "%%s\n" "$?" > "$d/finished.tmp" && mv -f "$d/finished.tmp" "$d/finished"
[ -r "$d/report.sh" ] && sh "$d/report.sh" "$d" > /dev/null 2>&1' fwops-run "$d" %[2]s "$d/run.sh" %[3]s < /dev/null > /dev/null 2>&1 &
i=0
while [ ! -e "$d/pid" ] && [ "$i" -lt 200 ]; do sleep 0.05 2>/dev/null || sleep 1; i=$((i+1)); done
if [ -e "$d/pid" ]; then echo launched; else echo nopid; fi
`, quote(dir), runner, quote(component))
}

// statusScript prints the state of the run in dir: absent, foreign (not a directory owned by
// the SSH user), staged (copied, never launched), running, died (launched, no result, no live
// process), or "finished <wrapper exit code> <component exit code or none> <began|notbegun>".
// A run is live when the pid file's process still runs this very directory's wrapper in this
// boot: a reboot or a reused pid does not pass for the run. Liveness is read before the
// finished file, which the wrapper writes before it exits: a run that ends between the two
// reads shows as finished, never as died.
func statusScript(dir string) string {
	return fmt.Sprintf(`exec 2>/dev/null
d=%s
if [ ! -e "$d" ] && [ ! -L "$d" ]; then echo absent; exit 0; fi
if [ -L "$d" ] || [ ! -d "$d" ] || [ ! -O "$d" ]; then echo foreign; exit 0; fi
alive=no; pid=; boot=
read -r pid boot < "$d/pid"
if [ -n "$pid" ] && [ "$boot" = "$(cat /proc/sys/kernel/random/boot_id)" ] &&
	tr '\000' '\n' < "/proc/$pid/cmdline" | grep -qxF -- "$d"; then
	alive=yes
fi
if [ -e "$d/finished" ]; then
	r=none; [ -e "$d/result" ] && r=$(cat "$d/result")
	b=notbegun; [ -e "$d/began" ] && b=began
	echo "finished $(cat "$d/finished") $r $b"; exit 0
fi
[ -d "$d/launched" ] || { echo staged; exit 0; }
if [ "$alive" = yes ]; then echo running; else echo died; fi
`, quote(dir))
}

// runState is what statusScript found.
type runState struct {
	kind string // absent, foreign, staged, running, died, finished
	// For finished runs:
	wrapperExit   int  // the wrapper's exit code: sudo's own when sudo refused
	componentExit int  // the component's exit code; valid when hasResult
	hasResult     bool // the component ran to its end and left its exit code
	began         bool // the wrapper got past sudo and started the component
}

func parseState(out string) (runState, error) {
	f := strings.Fields(out)
	if len(f) == 0 {
		return runState{}, fmt.Errorf("no run state in %q", out)
	}
	st := runState{kind: f[0]}
	switch st.kind {
	case "absent", "foreign", "staged", "running", "died":
		return st, nil
	case "finished":
	default:
		return st, fmt.Errorf("unknown run state %q", out)
	}
	if len(f) != 4 {
		return st, fmt.Errorf("malformed run state %q", out)
	}
	var err error
	if st.wrapperExit, err = strconv.Atoi(f[1]); err != nil {
		return st, fmt.Errorf("malformed run state %q", out)
	}
	if f[2] != "none" {
		if st.componentExit, err = strconv.Atoi(f[2]); err != nil {
			return st, fmt.Errorf("malformed exit code in run state %q", out)
		}
		st.hasResult = true
	}
	st.began = f[3] == "began"
	return st, nil
}
