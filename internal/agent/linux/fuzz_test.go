package linux

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseState feeds the run-state parser what the host's wrapper script prints (kind,
// wrapper exit code, Smart Component exit code, whether the component began), or whatever a
// host under someone else's control prints instead: it never panics, accepts only the kinds
// it knows, and an exit code it reports is one the text holds.
func FuzzParseState(f *testing.F) {
	for _, s := range []string{"finished 0 0 began\n", "finished 0 1 began", "finished 0 2 began", "finished 0 3 began",
		"finished 1 none nobegin", "finished 0 none began", "running\n", "absent", "staged", "died", "foreign",
		"finished 0 99999999999999999999 began", "", "finished"} {
		f.Add(s)
	}
	known := map[string]bool{"absent": true, "foreign": true, "staged": true, "running": true, "died": true, "finished": true}
	f.Fuzz(func(t *testing.T, out string) {
		// The host's output reaches messages through tail, which bounds it.
		if msg := tail(out); len(msg) > len(": ")+len("…")+400 {
			t.Fatalf("tail(%q) = %d bytes, over its bound", out, len(msg))
		}
		st, err := parseState(out)
		if err != nil {
			return
		}
		if !known[st.kind] {
			t.Fatalf("parseState(%q) accepted kind %q", out, st.kind)
		}
		if st.kind != "finished" {
			if st.hasResult || st.began {
				t.Fatalf("parseState(%q) = %+v: a result without finishing", out, st)
			}
			return
		}
		f := strings.Fields(out)
		if w, _ := strconv.Atoi(f[1]); w != st.wrapperExit {
			t.Fatalf("parseState(%q): wrapper exit %d, text says %s", out, st.wrapperExit, f[1])
		}
		if c, _ := strconv.Atoi(f[2]); st.hasResult != (f[2] != "none") || st.hasResult && c != st.componentExit {
			t.Fatalf("parseState(%q): component exit %d (result %v), text says %s", out, st.componentExit, st.hasResult, f[2])
		}
	})
}
