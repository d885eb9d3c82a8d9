package fwserver

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/firmware"
)

const (
	benchSize    = 256 << 20
	benchClients = 32
)

// The 256 MiB image is made once per test binary and shared by both benchmarks, so that they
// serve the very same file and their numbers compare.
var (
	benchOnce sync.Once
	benchDir  string
	benchImg  firmware.Image
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func benchImage(b *testing.B) firmware.Image {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fwserver-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = dir
		benchImg = verifiedImage(b, dir, benchSize, "bench.bin")
	})
	if benchImg.Path == "" {
		b.Fatal("benchmark image was not created")
	}
	return benchImg
}

// serveBench runs benchClients parallel full downloads of url per iteration over loopback.
func serveBench(b *testing.B, h http.Handler, path string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + path
	client := &http.Client{Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: benchClients,
	}}
	defer client.CloseIdleConnections()

	b.ReportAllocs()
	b.SetBytes(benchSize * benchClients)
	for b.Loop() {
		var wg sync.WaitGroup
		for range benchClients {
			wg.Go(func() {
				resp, err := client.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				// A plain writer (no ReadFrom) with a large buffer: the same cheap client for
				// both benchmarks, so the difference is the server's.
				n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, make([]byte, 256<<10))
				if err != nil || n != benchSize {
					b.Errorf("read %d bytes, err %v", n, err)
				}
			})
		}
		wg.Wait()
	}
}

// BenchmarkServe256MiB32Clients measures the firmware server: 32 targets pulling a 256 MiB
// image at once (rule P2).
func BenchmarkServe256MiB32Clients(b *testing.B) {
	img := benchImage(b)
	s := &Server{TargetFor: func(string) string { return "bench" }}
	p, err := s.Register("bench-job", img)
	if err != nil {
		b.Fatal(err)
	}
	serveBench(b, s, p)
}

// BenchmarkServeReference256MiB32Clients is the yardstick: the standard library's
// http.FileServer on the same file, same clients.
func BenchmarkServeReference256MiB32Clients(b *testing.B) {
	img := benchImage(b)
	serveBench(b, http.FileServer(http.Dir(filepath.Dir(img.Path))), "/"+filepath.Base(img.Path))
}
