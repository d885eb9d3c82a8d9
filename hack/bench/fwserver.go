package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/firmware"
	"github.com/fwops/firmware-operator/internal/agent/fwserver"
	"github.com/fwops/firmware-operator/internal/testutil/cluster"
)

const (
	fwserveCommand = "fwserve"
	imageSize      = 256 << 20
)

// benchFirmwareServer serves one 256 MiB file from the agent's firmware server (its own
// process, the agent's cache and server code) and from nginx, and loads each with wrk on
// loopback at 32 and 256 connections, interleaved, twice each.
func benchFirmwareServer(ctx context.Context, d time.Duration) ([]row, error) {
	for _, bin := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is missing (apt-get install -y nginx-light wrk): %w", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "fwops-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "image.bin")
	digest, err := writeImage(src)
	if err != nil {
		return nil, err
	}

	ours, err := startFwserve(ctx, dir, src, digest)
	if err != nil {
		return nil, err
	}
	defer ours.stop()
	// nginx serves the very file the firmware server serves: the cache's verified copy.
	ref, err := startNginx(ctx, dir, filepath.Dir(ours.path), filepath.Base(ours.path))
	if err != nil {
		return nil, err
	}
	defer ref.stop()
	// The peak while serving is what counts: note the import's (hashing, copying into the
	// cache), then reset both servers' VmHWM (clear_refs 5).
	importPeak, err := peakRSS(ours.cmd.Process.Pid, false)
	if err != nil {
		return nil, err
	}
	if err := resetPeakRSS(ours.cmd.Process.Pid, false); err != nil {
		return nil, err
	}
	if err := resetPeakRSS(ref.cmd.Process.Pid, true); err != nil {
		return nil, err
	}

	var rows []row
	for _, conns := range []int{32, 256} {
		var sum [2]float64
		for round := range 2 {
			for i, srv := range []*server{ours, ref} {
				if round == 1 {
					srv = []*server{ref, ours}[i] // the other order the second time
				}
				bps, err := runWrk(ctx, srv.url, conns, d)
				if err != nil {
					return rows, fmt.Errorf("wrk %s: %w", srv.name, err)
				}
				if srv == ours {
					sum[0] += bps
				} else {
					sum[1] += bps
				}
			}
		}
		o, n := sum[0]/2, sum[1]/2
		rows = append(rows, row{name: fmt.Sprintf("firmware server throughput, 256 MiB file, %d connections (wrk, loopback)", conns),
			ours: gib(o), reference: gib(n) + " (nginx)", ratio: fmt.Sprintf("%.2f×", o/n), goal: "≥ 1.0× nginx", verdict: yesNo(o >= n)})
	}
	orss, err := peakRSS(ours.cmd.Process.Pid, false)
	if err != nil {
		return rows, err
	}
	nrss, err := peakRSS(ref.cmd.Process.Pid, true)
	if err != nil {
		return rows, err
	}
	rows = append(rows, row{name: fmt.Sprintf("firmware server peak RSS while serving those runs (VmHWM; %s while importing the image into the cache)", mib(importPeak)), ours: mib(orss),
		reference: mib(nrss) + " (nginx, master + workers)", ratio: fmt.Sprintf("%.2f×", float64(orss)/float64(nrss)),
		goal: "≤ 64 MiB", verdict: yesNo(orss <= 64<<20)})
	return rows, nil
}

func gib(bps float64) string { return fmt.Sprintf("%.2f GiB/s", bps/(1<<30)) }
func mib(b int64) string     { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// writeImage writes imageSize bytes of a non-repeating pattern and returns their SHA-256.
func writeImage(p string) (string, error) {
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	buf := make([]byte, 1<<16)
	for off := 0; off < imageSize; off += len(buf) {
		for i := 0; i < len(buf); i += 8 {
			v := uint64(off+i) * 0x9e3779b97f4a7c15
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := w.Write(buf); err != nil {
			return "", err
		}
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

type server struct {
	name, url, path string
	cmd             *exec.Cmd
	stdin           io.Closer
}

func (s *server) stop() {
	if s.stdin != nil {
		_ = s.stdin.Close()
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// startFwserve runs this program's fwserve command: the image through the agent's firmware
// cache (SHA-256 verified), served by the agent's firmware server on a loopback port.
func startFwserve(ctx context.Context, dir, src, digest string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, fwserveCommand, filepath.Join(dir, "cache"), src, digest)
	logf, err := os.Create(filepath.Join(dir, "fwserve.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "firmware server", cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		s.stop()
		b, _ := os.ReadFile(filepath.Join(dir, "fwserve.log"))
		return nil, fmt.Errorf("firmware server did not start: %w: %s", err, b)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		s.stop()
		return nil, fmt.Errorf("firmware server said %q", line)
	}
	s.url, s.path = f[0], f[1]
	return s, nil
}

// fwserve is the child: args are the cache folder, the source file and its SHA-256. It
// prints "URL cached-path" and serves until its standard input closes.
func fwserve(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: fwserve CACHE-DIR SOURCE SHA256")
	}
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)) // the agent logs JSON to its stderr
	cache := &firmware.Cache{Dir: args[0], Log: log}
	img, err := cache.Get(ctx, firmware.Source{Path: args[1], SHA256: args[2], FileName: "image.bin"})
	if err != nil {
		return err
	}
	s := &fwserver.Server{Log: log, TargetFor: func(string) string { return "bench" }}
	p, err := s.Register("bench-job", img)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = s.Serve(ln) }()
	fmt.Printf("http://%s%s %s\n", ln.Addr(), p, img.Path)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.Shutdown(ctx)
}

// startNginx serves root with nginx on a free loopback port: as many workers as CPUs,
// sendfile, no access log.
func startNginx(ctx context.Context, dir, root, file string) (*server, error) {
	port := cluster.FreePort()
	if port == 0 {
		return nil, errors.New("no free port on 127.0.0.1")
	}
	nd := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(nd, "tmp"), 0o755); err != nil {
		return nil, err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must read the cache, which is the invoking user's
	}
	tmp := filepath.Join(nd, "tmp")
	conf := fmt.Sprintf(`%s
worker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[3]s/body;
  proxy_temp_path %[3]s/proxy;
  fastcgi_temp_path %[3]s/fastcgi;
  uwsgi_temp_path %[3]s/uwsgi;
  scgi_temp_path %[3]s/scgi;
  server {
    listen 127.0.0.1:%[4]d;
    root %[5]s;
  }
}
`, user, nd, tmp, port, root)
	cf := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nginx", "-p", nd, "-c", cf, "-e", filepath.Join(nd, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "nginx", cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d/%s", port, file)}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			b, _ := os.ReadFile(filepath.Join(nd, "error.log"))
			return nil, fmt.Errorf("nginx did not listen within 10s: %s", b)
		}
	}
}

var transferRe = regexp.MustCompile(`Transfer/sec:\s+([\d.]+)([KMGT]?B)`)

// runWrk returns the bytes per second wrk read from url (wrk counts partial bodies too).
func runWrk(ctx context.Context, url string, conns int, d time.Duration) (float64, error) {
	cmd := exec.CommandContext(ctx, "wrk", "-t2", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(int(d.Seconds()))+"s",
		"--timeout", "120s", url)
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(os.Stderr, "%s", out)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, out)
	}
	m := transferRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no Transfer/sec in wrk's output: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	unit := map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[string(m[2])]
	return v * unit, nil
}

// resetPeakRSS resets the VmHWM of pid (and of its children with children) to its RSS now.
func resetPeakRSS(pid int, children bool) error {
	pids := []int{pid}
	if children {
		kids, err := childPIDs(pid)
		if err != nil {
			return err
		}
		pids = append(pids, kids...)
	}
	for _, p := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p), []byte("5"), 0); err != nil {
			return err
		}
	}
	return nil
}

func childPIDs(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, c := range strings.Fields(string(b)) {
		cp, err := strconv.Atoi(c)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, nil
}

// peakRSS is the VmHWM of pid, plus its children's with children (nginx's workers).
func peakRSS(pid int, children bool) (int64, error) {
	total, err := vmHWM(pid)
	if err != nil || !children {
		return total, err
	}
	kids, err := childPIDs(pid)
	if err != nil {
		return 0, err
	}
	for _, cp := range kids {
		v, err := vmHWM(cp)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "VmHWM: %d kB", &kb); err == nil {
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}
