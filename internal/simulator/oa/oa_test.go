package oa

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func start(t *testing.T, cfg Config) *Simulator {
	t.Helper()
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 300 * time.Millisecond
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client logs in with a plain x/crypto client, checking the host key with knownhosts.
func client(t *testing.T, s *Simulator, auth ssh.AuthMethod) (*ssh.Client, error) {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: "Administrator",
		Auth: []ssh.AuthMethod{auth}, HostKeyCallback: cb, Timeout: 5 * time.Second})
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, _ := sess.CombinedOutput(cmd) // the text is what matters, as on a real OA
	return string(out)
}

func images(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/oa-5.00.bin":
			w.Write([]byte("FWOPS-IMAGE component=OA version=5.00\nPAYLOAD"))
		case "/ilo-2.82.bin":
			w.Write([]byte("FWOPS-IMAGE component=iLO4 version=2.82\nPAYLOAD"))
		case "/garbage.bin":
			w.Write([]byte("MZ\x90\x00 not an image\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestShowOAInfoAndPorts(t *testing.T) {
	s := start(t, Config{Version: "4.97"})
	c, err := client(t, s, ssh.Password("password"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := run(t, c, "show oa info") // commands are case-insensitive
	if !strings.Contains(out, "Firmware Ver. : 4.97 Apr 28 2021") {
		t.Fatalf("SHOW OA INFO:\n%s", out)
	}
	got := s.SourcePorts()
	want := c.Conn.LocalAddr().(*net.TCPAddr).Port
	if len(got) != 1 || got[0] != want {
		t.Fatalf("source ports %v, want [%d]", got, want)
	}
	if out := run(t, c, "FROB"); !strings.Contains(out, "Invalid command") {
		t.Fatalf("unknown command: %q", out)
	}
}

func TestKeyboardInteractiveOnly(t *testing.T) {
	s := start(t, Config{KeyboardInteractiveOnly: true, Password: "pw"})
	if _, err := client(t, s, ssh.Password("pw")); err == nil {
		t.Fatal("password method accepted although keyboard-interactive only")
	}
	ki := ssh.KeyboardInteractive(func(_, _ string, q []string, _ []bool) ([]string, error) {
		a := make([]string, len(q))
		for i := range a {
			a[i] = "pw"
		}
		return a, nil
	})
	c, err := client(t, s, ki)
	if err != nil {
		t.Fatalf("keyboard-interactive: %v", err)
	}
	c.Close()
}

func TestRefuseAuthAndWrongPassword(t *testing.T) {
	s := start(t, Config{})
	if _, err := client(t, s, ssh.Password("wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	s.SetFaults(Faults{RefuseAuth: true})
	if _, err := client(t, s, ssh.Password("password")); err == nil {
		t.Fatal("login accepted under RefuseAuth")
	}
}

func TestUpdateImageRestarts(t *testing.T) {
	img := images(t)
	const restartDelay = 3 * time.Second
	s := start(t, Config{Version: "4.97", RestartDelay: restartDelay})
	c, err := client(t, s, ssh.Password("password"))
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, c, "UPDATE IMAGE "+img.URL+"/oa-5.00.bin")
	c.Close()
	if !strings.Contains(out, "Restarting Onboard Administrator") {
		t.Fatalf("UPDATE IMAGE:\n%s", out)
	}
	// Down: connections are refused for a while. Polled rather than probed once after a sleep,
	// so that a loaded machine neither misses the window nor probes before it opens; the
	// window lasts restartDelay.
	g := gomega.NewWithT(t)
	g.Eventually(func() error {
		conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}).WithTimeout(restartDelay).WithPolling(10*time.Millisecond).Should(gomega.HaveOccurred(), "connections refused while restarting")
	// Back with the new version.
	g.Eventually(func() (err error) {
		c, err = client(t, s, ssh.Password("password"))
		return err
	}).WithTimeout(restartDelay+time.Minute).Should(gomega.Succeed(), "the OA back")
	defer c.Close()
	if out := run(t, c, "SHOW OA INFO"); !strings.Contains(out, "Firmware Ver. : 5.00 ") {
		t.Fatalf("after restart:\n%s", out)
	}
	if s.Flashes() != 1 || s.Restarts() != 1 || s.Version() != "5.00" {
		t.Fatalf("flashes %d restarts %d version %s", s.Flashes(), s.Restarts(), s.Version())
	}
}

func TestUpdateImageFaults(t *testing.T) {
	img := images(t)
	s := start(t, Config{Version: "4.97"})
	c, err := client(t, s, ssh.Password("password"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct{ url, want string }{
		{img.URL + "/missing.bin", "ERROR: Unable to download the firmware image (HTTP 404)"},
		{img.URL + "/garbage.bin", "ERROR: The firmware image is not valid"},
		{img.URL + "/ilo-2.82.bin", "is not Onboard Administrator firmware"},
		{"ftp://x/y", "Invalid URL"},
	} {
		out := run(t, c, "UPDATE IMAGE "+tc.url)
		if !strings.Contains(out, tc.want) || strings.Contains(out, "Restarting") {
			t.Errorf("UPDATE IMAGE %s:\n%s\nwant %q", tc.url, out, tc.want)
		}
	}
	s.SetFaults(Faults{DownloadError: true})
	if out := run(t, c, "UPDATE IMAGE "+img.URL+"/oa-5.00.bin"); !strings.Contains(out, "Unable to download") {
		t.Errorf("DownloadError fault:\n%s", out)
	}
	if s.Flashes() != 0 || s.Version() != "4.97" {
		t.Fatalf("failed updates changed state: flashes %d version %s", s.Flashes(), s.Version())
	}
}

func TestVersionUnchanged(t *testing.T) {
	img := images(t)
	s := start(t, Config{Version: "4.97", RestartDelay: 100 * time.Millisecond})
	s.SetFaults(Faults{VersionUnchanged: true})
	c, err := client(t, s, ssh.Password("password"))
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, c, "UPDATE IMAGE "+img.URL+"/oa-5.00.bin")
	c.Close()
	if !strings.Contains(out, "Restarting Onboard Administrator") {
		t.Fatalf("UPDATE IMAGE:\n%s", out)
	}
	gomega.NewWithT(t).Eventually(s.Restarts).WithTimeout(time.Minute).ShouldNot(gomega.BeZero(), "the OA's restart")
	if s.Restarts() != 1 || s.Version() != "4.97" || s.Flashes() != 1 {
		t.Fatalf("restarts %d version %s flashes %d", s.Restarts(), s.Version(), s.Flashes())
	}
}

func TestUpdateILO(t *testing.T) {
	img := images(t)
	s := start(t, Config{Bays: map[int]string{2: "2.80"}})
	c, err := client(t, s, ssh.Password("password"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out := run(t, c, "SHOW SERVER INFO 2"); !strings.Contains(out, "Firmware Version: 2.80 ") {
		t.Fatalf("SHOW SERVER INFO:\n%s", out)
	}
	if out := run(t, c, "UPDATE ILO 1 "+img.URL+"/ilo-2.82.bin"); !strings.Contains(out, "no server blade") {
		t.Fatalf("empty bay:\n%s", out)
	}
	out := run(t, c, "UPDATE ILO 2 "+img.URL+"/ilo-2.82.bin")
	if !strings.Contains(out, "Successful update") {
		t.Fatalf("UPDATE ILO:\n%s", out)
	}
	if out := run(t, c, "SHOW SERVER INFO 2"); !strings.Contains(out, "Firmware Version: 2.82 ") {
		t.Fatalf("after UPDATE ILO:\n%s", out)
	}
	if s.ILOFlashes() != 1 || s.Flashes() != 0 {
		t.Fatalf("iLO flashes %d, OA flashes %d", s.ILOFlashes(), s.Flashes())
	}
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    image
		wantErr bool
	}{
		{"FWOPS-IMAGE component=OA version=5.00\nabc", image{"OA", "5.00", 3}, false},
		{"FWOPS-IMAGE version=1 component=iLO5\n", image{"iLO5", "1", 0}, false},
		{"FWOPS-IMAGE component=OA\n", image{}, true},
		{"NOPE component=OA version=1\n", image{}, true},
		{"FWOPS-IMAGE component=OA version=1", image{}, true}, // no newline
		{"FWOPS-IMAGE junk\n", image{}, true},
		{strings.Repeat("x", 10000), image{}, true},
	} {
		got, err := parseImage(strings.NewReader(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseImage(%.30q) = %+v, %v; want %+v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestCLI(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"--help"}, &out, &errb); err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range []string{"-listen", "-username", "-password", "-version", "-host-key-out", "-known-hosts-out", "-restart-delay"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help lacks %s:\n%s", f, out.String())
		}
	}
	if err := Run(context.Background(), []string{"--bogus"}, &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}

	dir := t.TempDir()
	kh, hk := filepath.Join(dir, "known_hosts"), filepath.Join(dir, "host_key")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	out.Reset()
	pr, pw := ioPipe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = Run(ctx, []string{"--listen", "127.0.0.1:0", "--password", "pw", "--version", "4.90",
			"--known-hosts-out", kh, "--host-key-out", hk}, pw, &errb)
		pw.Close()
	}()
	line, err := pr.readLine()
	if err != nil || !strings.HasPrefix(line, "OA simulator listening on 127.0.0.1:") {
		cancel()
		wg.Wait()
		t.Fatalf("first line %q, %v (run: %v)", line, err, runErr)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "OA simulator listening on "))[0]
	cb, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(hk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.ParsePrivateKey(key); err != nil {
		t.Fatalf("host key file: %v", err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "Administrator", Auth: []ssh.AuthMethod{ssh.Password("pw")},
		HostKeyCallback: cb, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, "SHOW OA INFO"); !strings.Contains(got, "Firmware Ver. : 4.90") {
		t.Fatalf("SHOW OA INFO:\n%s", got)
	}
	c.Close()
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still listening after ctx cancel")
	}
}
