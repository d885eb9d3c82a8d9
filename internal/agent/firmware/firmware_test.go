package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blob returns n bytes of a fixed pattern and its digest.
func blob(n int) ([]byte, string) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// fileServer is an httptest server on 127.0.0.1 with a scripted behaviour per request.
type fileServer struct {
	*httptest.Server
	hits   atomic.Int32
	mu     sync.Mutex
	ranges []string // the Range header of each request, "" when absent
}

func newFileServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *fileServer {
	t.Helper()
	fs := &fileServer{}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(fs.hits.Add(1))
		fs.mu.Lock()
		fs.ranges = append(fs.ranges, r.Header.Get("Range"))
		fs.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) rangeHeaders() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.ranges...)
}

// cutAfter declares the full length, sends only the first k bytes, then drops the connection.
func cutAfter(w http.ResponseWriter, data []byte, k int) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:k])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // drop the connection mid-body, as a flaky link would
}

func serveRange(w http.ResponseWriter, r *http.Request, data []byte) {
	http.ServeContent(w, r, "fw.bin", time.Unix(1_700_000_000, 0), bytes.NewReader(data))
}

func newCache(t *testing.T, dir string, c *http.Client) *Cache {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return &Cache{Dir: dir, Client: c}
}

func checkImage(t *testing.T, img Image, data []byte, digest, name string) {
	t.Helper()
	if !img.Verified() || img.SHA256 != digest || img.Size != int64(len(data)) || img.FileName != name {
		t.Fatalf("image = %+v verified=%v; want sha %s size %d name %s", img, img.Verified(), digest, len(data), name)
	}
	got, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("cached file differs from source")
	}
}

// cacheEntries lists the image directory, where nothing unverified may stay behind.
func cacheEntries(t *testing.T, c *Cache) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.Dir, "sha256"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestGetURL(t *testing.T) {
	data, digest := blob(1 << 20)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, data) })
	c := newCache(t, "", srv.Client())

	img, err := c.Get(t.Context(), Source{URL: srv.URL + "/images/ilo5_305.bin", SHA256: strings.ToUpper(digest)})
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "ilo5_305.bin")
	if want := filepath.Join(c.Dir, "sha256", digest); img.Path != want {
		t.Errorf("path = %s, want %s", img.Path, want)
	}

	// A second Get, even from another Cache value on the same directory, reuses the file.
	img2, err := newCache(t, c.Dir, srv.Client()).Get(t.Context(), Source{URL: srv.URL + "/x", SHA256: digest, FileName: "other.bin"})
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img2, data, digest, "other.bin")
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("server hits = %d, want 1", n)
	}
}

func TestDigestMismatch(t *testing.T) {
	data, _ := blob(100_000)
	_, wrong := blob(100_001)
	_, actual := blob(100_000)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, data) })
	c := newCache(t, "", srv.Client())

	_, err := c.Get(t.Context(), Source{URL: srv.URL + "/fw.bin", SHA256: wrong})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("err = %v, want *DigestMismatchError", err)
	}
	if dm.Expected != wrong {
		t.Errorf("mismatch = %+v", dm)
	}
	// The file's real digest is never told: for a nodePath source it would let whoever may
	// create a job learn the digest of any file the agent can read (docs/security.md).
	want := fmt.Sprintf("sha256 mismatch for %s/fw.bin: the file does not hash to the expected %s", srv.URL, wrong)
	if err.Error() != want {
		t.Errorf("message = %q\nwant      %q", err.Error(), want)
	}
	if strings.Contains(fmt.Sprintf("%+v %#v", err, dm), actual) {
		t.Errorf("the error reveals the file's digest %s: %#v", actual, dm)
	}
	if ents := cacheEntries(t, c); len(ents) != 0 {
		t.Errorf("cache holds %v after a mismatch, want nothing", ents)
	}
}

func TestResumeAfterPartial(t *testing.T) {
	data, digest := blob(3 << 20)
	half := len(data) / 2
	srv := newFileServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			cutAfter(w, data, half)
		}
		serveRange(w, r, data) // honours Range: 206
	})
	c := newCache(t, "", srv.Client())
	src := Source{URL: srv.URL + "/fw.bin", SHA256: digest}

	if _, err := c.Get(t.Context(), src); err == nil {
		t.Fatal("first Get succeeded over a cut connection")
	}
	fi, err := os.Stat(filepath.Join(c.Dir, "sha256", digest+".partial"))
	if err != nil || fi.Size() != int64(half) {
		t.Fatalf("partial after cut: %v, %v; want %d bytes", fi, err, half)
	}
	img, err := c.Get(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "fw.bin")
	if got, want := srv.rangeHeaders(), []string{"", fmt.Sprintf("bytes=%d-", half)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Range headers = %q, want %q", got, want)
	}
	if ents := cacheEntries(t, c); len(ents) != 2 { // image + marker
		t.Errorf("cache entries = %v", ents)
	}
}

func TestResumeServerIgnoresRange(t *testing.T) {
	data, digest := blob(2 << 20)
	srv := newFileServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			cutAfter(w, data, len(data)/3)
		}
		w.Write(data) // 200 with the whole file, Range or not
	})
	c := newCache(t, "", srv.Client())
	src := Source{URL: srv.URL + "/fw.bin", SHA256: digest}
	if _, err := c.Get(t.Context(), src); err == nil {
		t.Fatal("first Get succeeded over a cut connection")
	}
	img, err := c.Get(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "fw.bin")
	if rh := srv.rangeHeaders(); len(rh) != 2 || rh[1] == "" {
		t.Errorf("Range headers = %q, want a Range on the second request", rh)
	}
}

func TestPartialAlreadyComplete(t *testing.T) {
	data, digest := blob(64 << 10)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, data) })
	c := newCache(t, "", srv.Client())
	// An earlier attempt wrote every byte but died before the rename.
	os.MkdirAll(filepath.Join(c.Dir, "sha256"), 0o755)
	if err := os.WriteFile(filepath.Join(c.Dir, "sha256", digest+".partial"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := c.Get(t.Context(), Source{URL: srv.URL + "/fw.bin", SHA256: digest})
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "fw.bin")
	if rh := srv.rangeHeaders(); fmt.Sprint(rh) != fmt.Sprintf("[bytes=%d-]", len(data)) {
		t.Errorf("Range headers = %q", rh) // answered 416, and the partial was kept
	}
}

func TestConcurrentGetsFetchOnce(t *testing.T) {
	data, digest := blob(512 << 10)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // long enough for every fetcher to be waiting
		serveRange(w, r, data)
	})
	dir := t.TempDir()
	// Two Cache values stand for two agents on a node; each goroutine opens its own lock
	// file description, so this exercises flock, not a mutex.
	caches := []*Cache{newCache(t, dir, srv.Client()), newCache(t, dir, srv.Client())}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			img, err := caches[i%2].Get(t.Context(), Source{URL: srv.URL + "/fw.bin", SHA256: digest})
			if err == nil && (!img.Verified() || img.Size != int64(len(data))) {
				err = fmt.Errorf("bad image %+v", img)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("server hits = %d, want 1", n)
	}
}

// TestHelperFetch is the child process of TestConcurrentGetsAcrossProcesses.
func TestHelperFetch(t *testing.T) {
	if os.Getenv("FWTEST_HELPER") != "1" {
		t.Skip("helper process only")
	}
	c := &Cache{Dir: os.Getenv("FWTEST_DIR")}
	if _, err := c.Get(context.Background(), Source{URL: os.Getenv("FWTEST_URL"), SHA256: os.Getenv("FWTEST_SHA")}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentGetsAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	data, digest := blob(512 << 10)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		serveRange(w, r, data)
	})
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFetch$", "-test.v")
		cmd.Env = append(os.Environ(), "FWTEST_HELPER=1", "FWTEST_DIR="+dir, "FWTEST_URL="+srv.URL+"/fw.bin", "FWTEST_SHA="+digest)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("server hits = %d across 3 processes, want 1", n)
	}
	img, err := (&Cache{Dir: dir}).Get(t.Context(), Source{URL: srv.URL + "/fw.bin", SHA256: digest})
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "fw.bin")
}

func TestPathSources(t *testing.T) {
	data, digest := blob(300_000)
	for _, tc := range []struct{ name, dir string }{
		{"pvc mount", "mnt/firmware-pvc"},
		{"staged on node", "var/lib/fwops/staged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "cp045967.fwpkg")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			c := newCache(t, "", nil)
			img, err := c.Get(t.Context(), Source{Path: p, SHA256: "sha256:" + digest})
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, img, data, digest, "cp045967.fwpkg")
			// The served copy is the verified one, whatever happens to the original later.
			if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
			img, err = c.Get(t.Context(), Source{Path: p, SHA256: digest})
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, img, data, digest, "cp045967.fwpkg")

			// A wrong file on the path is refused and leaves nothing behind.
			c2 := newCache(t, "", nil)
			_, err = c2.Get(t.Context(), Source{Path: p, SHA256: digest})
			var dm *DigestMismatchError
			if !errors.As(err, &dm) || dm.Source != p || !strings.Contains(err.Error(), digest) {
				t.Fatalf("err = %v, want a mismatch naming %s", err, p)
			}
			if ents := cacheEntries(t, c2); len(ents) != 0 {
				t.Errorf("cache holds %v after a mismatch", ents)
			}
		})
	}
}

func TestCorruptCacheIsFetchedAgain(t *testing.T) {
	data, digest := blob(200_000)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, data) })
	c := newCache(t, "", srv.Client())
	src := Source{URL: srv.URL + "/fw.bin", SHA256: digest}
	img, err := c.Get(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte behind the cache's back: size stays, mtime moves, the marker no longer holds.
	if err := os.Chmod(img.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^data[10]}, 10)
	f.Close()
	os.Chtimes(img.Path, time.Time{}, time.Now().Add(time.Hour))

	img, err = c.Get(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, data, digest, "fw.bin")
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("server hits = %d, want 2 (fetched again after corruption)", n)
	}
}

func TestValidation(t *testing.T) {
	_, d := blob(1)
	for _, tc := range []struct {
		name  string
		src   Source
		field string
	}{
		{"neither", Source{SHA256: d}, "URL or Path"},
		{"both", Source{URL: "http://127.0.0.1/a", Path: "/a", SHA256: d}, "URL or Path"},
		{"no digest", Source{URL: "http://127.0.0.1/a"}, "SHA256"},
		{"short digest", Source{URL: "http://127.0.0.1/a", SHA256: "abc"}, "SHA256"},
		{"not hex", Source{URL: "http://127.0.0.1/a", SHA256: strings.Repeat("z", 64)}, "SHA256"},
		{"ftp", Source{URL: "ftp://127.0.0.1/a", SHA256: d}, "URL"},
		{"no host", Source{URL: "http:///a", SHA256: d}, "URL"},
		{"relative path", Source{Path: "fw/a.bin", SHA256: d}, "Path"},
		{"no file name", Source{URL: "http://127.0.0.1/", SHA256: d}, "FileName"},
		{"slash in name", Source{Path: "/a.bin", SHA256: d, FileName: "../a.bin"}, "FileName"},
		{"dotdot name", Source{Path: "/a.bin", SHA256: d, FileName: ".."}, "FileName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newCache(t, "", nil).Get(t.Context(), tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want it to name %s", err, tc.field)
			}
		})
	}
}

func TestContextCancelStopsSlowDownload(t *testing.T) {
	_, digest := blob(10)
	srv := newFileServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000000")
		for {
			if _, err := w.Write(make([]byte, 1024)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	c := newCache(t, "", srv.Client())
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, Source{URL: srv.URL + "/fw.bin", SHA256: digest})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get returned %v after the deadline", d)
	}
	// What arrived is kept for a later resume, but never as an image.
	if _, err := os.Stat(filepath.Join(c.Dir, "sha256", digest)); !os.IsNotExist(err) {
		t.Errorf("image exists after a cancelled download: %v", err)
	}
}

func TestLockWaitHonoursContext(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.lock")
	unlock, err := lockFile(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want deadline exceeded", err)
	}
}
