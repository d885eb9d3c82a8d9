package fwserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/firmware"
)

// pattern fills a file of n bytes with a fixed, non-repeating-per-block pattern, writing in
// chunks so that the test never holds the whole image either.
func pattern(t testing.TB, p string, n int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), n-off)]
		for i := range chunk {
			chunk[i] = byte((off + int64(i)) * 31 >> 3)
		}
		f.Write(chunk)
		h.Write(chunk)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// verifiedImage puts a pattern file of n bytes through the firmware cache, the only way to
// get an image the server accepts.
func verifiedImage(t testing.TB, dir string, n int64, name string) firmware.Image {
	t.Helper()
	src := filepath.Join(dir, "src-"+name)
	digest := pattern(t, src, n)
	c := &firmware.Cache{Dir: filepath.Join(dir, "cache")}
	img, err := c.Get(t.Context(), firmware.Source{Path: src, SHA256: digest, FileName: name})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(src) // the cache holds its own copy
	return img
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	srv  *Server
	addr string
	img  firmware.Image
	path string
	log  *syncBuffer
	// tls makes rawStatus speak TLS.
	tls bool
}

func start(t *testing.T, size int64) *fixture { return startServer(t, size, nil) }

// startServer starts a server with cert (nil: plain HTTP only).
func startServer(t *testing.T, size int64, cert *tls.Certificate) *fixture {
	t.Helper()
	img := verifiedImage(t, t.TempDir(), size, "ilo5_305.bin")
	logs := &syncBuffer{}
	srv := &Server{
		Log: slog.New(slog.NewJSONHandler(logs, nil)),
		TargetFor: func(ip string) string {
			if ip == "127.0.0.1" {
				return "ilo-rack3-bay7"
			}
			return ""
		},
		Certificate: cert,
	}
	p, err := srv.Register("job-uid-1", img)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fixture{srv: srv, addr: l.Addr().String(), img: img, path: p, log: logs, tls: cert != nil}
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+f.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegisterPath(t *testing.T) {
	f := start(t, 1000)
	tok, name, _ := strings.Cut(strings.TrimPrefix(f.path, Prefix), "/")
	if len(tok) != 64 || name != "ilo5_305.bin" {
		t.Fatalf("path = %s, want /fw/<64 hex>/ilo5_305.bin", f.path)
	}
	if _, err := hex.DecodeString(tok); err != nil {
		t.Fatalf("token %q is not hex", tok)
	}
	if p, _ := f.srv.Register("job-uid-1", f.img); p != f.path {
		t.Errorf("re-registering the same image moved it: %s", p)
	}
	p2, _ := f.srv.Register("job-uid-2", f.img)
	if p2 == f.path {
		t.Errorf("two jobs share the path %s", p2)
	}
	if _, err := f.srv.Register("job-uid-3", firmware.Image{Path: f.img.Path, SHA256: f.img.SHA256, Size: f.img.Size, FileName: "x.bin"}); err == nil {
		t.Error("Register accepted a hand-made, unverified image")
	}
	f.srv.Unregister("job-uid-2")
	if resp, _ := f.do(t, "GET", p2, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unregistered path: %s", resp.Status)
	}
}

func TestGetHeadRange(t *testing.T) {
	f := start(t, 300_000)
	want := readFile(t, f.img.Path)

	resp, body := f.do(t, "GET", f.path, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}

	resp, body = f.do(t, "HEAD", f.path, nil)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(want)) {
		t.Errorf("HEAD: %s, body %d, Content-Length %d", resp.Status, len(body), resp.ContentLength)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD does not advertise ranges: %v", resp.Header)
	}

	resp, body = f.do(t, "GET", f.path, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[1000:2000]) {
		t.Errorf("Range: %s, %d bytes", resp.Status, len(body))
	}
	if cr, wantCR := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", len(want)); cr != wantCR {
		t.Errorf("Content-Range = %q, want %q", cr, wantCR)
	}

	resp, body = f.do(t, "GET", f.path, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(want)-10)})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[len(want)-10:]) {
		t.Errorf("open Range: %s, %d bytes", resp.Status, len(body))
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	f := start(t, 1000)
	other := Prefix + strings.Repeat("ab", 32) + "/ilo5_305.bin"
	if resp, _ := f.do(t, "GET", other, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown token: %s", resp.Status)
	}
	if resp, _ := f.do(t, "GET", strings.Replace(f.path, "ilo5_305.bin", "other.bin", 1), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("known token, other name: %s", resp.Status)
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS", "PATCH"} {
		resp, _ := f.do(t, m, f.path, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %s, Allow %q", m, resp.Status, resp.Header.Get("Allow"))
		}
	}
}

// rawStatus sends a request line as written, so that nothing client-side cleans the path.
// rawStatus sends requestURI as it is, over TLS when the fixture serves it, without
// verifying the server (as an iLO 5 does).
func (f *fixture) rawStatus(t *testing.T, requestURI string) int {
	t.Helper()
	addr := f.addr
	var c net.Conn
	var err error
	if f.tls {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // as an iLO 5
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", requestURI, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", requestURI, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTraversalRefused(t *testing.T) { traversalRefused(t, start(t, 1000)) }

// Traversal is refused over TLS as over HTTP.
func TestTraversalRefusedOverTLS(t *testing.T) {
	traversalRefused(t, startServer(t, 1000, testCert(t)))
}

func traversalRefused(t *testing.T, f *fixture) {
	tok, name, _ := strings.Cut(strings.TrimPrefix(f.path, Prefix), "/")
	for _, tc := range []struct {
		uri  string
		want int
	}{
		{f.path, 200}, // the control case
		{"/fw/" + tok + "/../" + tok + "/" + name, 400},
		{"/fw/" + tok + "/%2e%2e/%2e%2e/etc/passwd", 400},
		{"/fw/" + tok + "/%2E%2E/" + tok + "/" + name, 400},
		{"/fw/%2e%2e/%2e%2e/etc/passwd", 400},
		{"/fw/" + tok + "/..%2f..%2fetc%2fpasswd", 400},
		{"/fw/" + tok + `/..\..\etc\passwd`, 400},
		{"/../../etc/passwd", 400},
		{"http://" + f.addr + "/../etc/passwd", 400},
		{"../../etc/passwd", 400}, // not an absolute path: the http server itself refuses it
		{"/etc/passwd", 404},
		{"//etc/passwd", 404},
		{"/fw/" + tok + "//etc/passwd", 404},
		{"/fw/" + tok + "/%2Fetc%2Fpasswd", 404},
		{"/fw/" + tok + "/" + f.img.Path, 404},
		{"/fw/" + tok + "/" + name + "/", 404},
		{"/fw/" + tok + "/" + name + "%00", 404},
		{"/fw/" + tok + "/", 404}, // no listing
		{"/fw/" + tok, 404},
		{"/fw/", 404},
		{"/", 404},
		{"/fw/" + strings.ToUpper(tok) + "/" + name, 404},
		{"/fw/" + tok + "/./" + name, 404},
	} {
		if got := f.rawStatus(t, tc.uri); got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.uri, got, tc.want)
		}
	}
}

func TestAccessLog(t *testing.T) {
	f := start(t, 5000)
	var served []string
	var mu sync.Mutex
	f.srv.OnServed = func(target string, n int64) {
		mu.Lock()
		served = append(served, fmt.Sprintf("%s:%d", target, n))
		mu.Unlock()
	}
	f.do(t, "GET", f.path, map[string]string{"Range": "bytes=0-99"})
	f.do(t, "POST", f.path, nil)
	f.srv.Shutdown(t.Context()) // wait for the handlers, so their log lines are written

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "firmware request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("access log lines = %d, want 2:\n%s", len(lines), f.log.String())
	}
	get := lines[0]
	for k, want := range map[string]any{"target": "ilo-rack3-bay7", "method": "GET", "status": 206.0, "bytes": 100.0} {
		if get[k] != want {
			t.Errorf("log %s = %v, want %v", k, get[k], want)
		}
	}
	if r, _ := get["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("log remote = %v", get["remote"])
	}
	if _, ok := get["duration"]; !ok {
		t.Error("log has no duration")
	}
	if lines[1]["status"] != 405.0 {
		t.Errorf("POST logged as %v", lines[1]["status"])
	}
	tok := strings.Split(f.path, "/")[2]
	if strings.Contains(f.log.String(), tok) {
		t.Error("the access log leaks the full download token")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(served) != "[ilo-rack3-bay7:100 ilo-rack3-bay7:19]" { // 19: "method not allowed\n"
		t.Errorf("OnServed calls = %v", served)
	}
}

func TestChangedFileNotServed(t *testing.T) {
	f := start(t, 1000)
	os.Chmod(f.img.Path, 0o644)
	if err := os.WriteFile(f.img.Path, []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	if resp, body := f.do(t, "GET", f.path, nil); resp.StatusCode != http.StatusInternalServerError || bytes.Contains(body, []byte("evil")) {
		t.Errorf("changed file: %s %q", resp.Status, body)
	}
}

// TestLargeFileDoesNotGrowHeap serves 64 MiB and checks that the bytes allocated meanwhile,
// server and client together, stay far below the file size: the body must stream from disk.
func TestLargeFileDoesNotGrowHeap(t *testing.T) {
	const size = 64 << 20
	f := start(t, size)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	fetch := func() int64 {
		resp, err := client.Get("http://" + f.addr + f.path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	fetch() // warm up connection and pools

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := fetch()
	runtime.ReadMemStats(&after)

	if n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB while serving %d MiB", alloc>>10, size>>20)
	if alloc > size/32 {
		t.Errorf("allocated %d bytes while serving %d: the image is being copied through the heap", alloc, size)
	}
}

func TestRedact(t *testing.T) {
	tok := strings.Repeat("ab12", 16)
	for in, want := range map[string]string{
		"/fw/" + tok + "/ilo5_310.bin":                       "/fw/ab12ab12…/ilo5_310.bin",
		"http://127.0.0.3:63005/fw/" + tok + "/oa_5.00.bin":  "http://127.0.0.3:63005/fw/ab12ab12…/oa_5.00.bin",
		"http://[fd00::5]:80/fw/" + tok + "/cp045.scexe":     "http://[fd00::5]:80/fw/ab12ab12…/cp045.scexe",
		"https://mirror.example.net/firmware/ilo5_310.fwpkg": "https://mirror.example.net/firmware/ilo5_310.fwpkg",
		"/fw/short/x.bin": "/fw/short/x.bin",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if got := Token(in); (got == "") != (want == in) || (got != "" && got != tok) {
			t.Errorf("Token(%q) = %q", in, got)
		}
	}
}
