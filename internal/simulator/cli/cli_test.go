package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/testutil/shared"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

func mockupDir(*testing.T) string { return shared.Mockup(shared.DL325) }

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"ilo", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"mockup", "listen", "username", "password", "model", "cert-out", "count", "per-port",
		"upload-time", "verify-time", "write-time", "update-time", "update-steps", "task", "no-sessions", "http", "/_sim/faults"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

func TestRunServesInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	certOut := filepath.Join(t.TempDir(), "cert.pem")
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"ilo", "--mockup", mockupDir(t), "--listen", "127.0.0.1:0", "--count", "2", "--per-port",
			"--model", "ilo6", "--username", "u", "--password", "p", "--cert-out", certOut}, &out, io.Discard)
	}()
	var urls []string
	gomega.NewWithT(t).Eventually(func() ([]string, error) {
		select {
		case err := <-done:
			return nil, gomega.StopTrying("Run ended").Wrap(err)
		default:
		}
		urls = nil
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			urls = append(urls, strings.Fields(sc.Text())[0])
		}
		return urls, nil
	}).WithTimeout(time.Minute).Should(gomega.HaveLen(2), "the instances announced")
	for i, u := range urls {
		pem, err := os.ReadFile(certOut + "." + string(rune('1'+i)))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req, _ := http.NewRequest("GET", u+"/redfish/v1/Managers/1", nil)
		req.SetBasicAuth("u", "p")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"iLO 6 v1.55"`) {
			t.Fatalf("%s: %s", u, b)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"bmc"}, {"oa", "--no-such-flag"}, {"ilo"}, {"ilo", "--mockup", "/nonexistent"}, {"ilo", "--mockup", mockupDir(t), "--model", "ilo7", "--listen", "127.0.0.1:0"}} {
		if err := Run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("Run(%q) succeeded", args)
		}
	}
}
