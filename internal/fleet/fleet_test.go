package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

func TestStartServesImagesAndDescribesTargets(t *testing.T) {
	linux := Available() == nil
	if !linux && os.Getenv("CI") == "true" {
		t.Fatal(Available())
	}
	f, err := Start(context.Background(), Options{Name: "t", ILO4: 1, ILO5: 2, ILO6: 1, OA: 1, Linux: linux,
		Timings: similo.Timings{Update: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []fwv1.Component{fwv1.ComponentILO, fwv1.ComponentOA, fwv1.ComponentSmartComponent} {
		im := f.Image(c)
		if !strings.HasPrefix(im.URL, "http://127.0.0.1:") {
			t.Fatalf("%s image URL %q is not on 127.0.0.1", c, im.URL)
		}
		resp, err := http.Get(im.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != im.SHA256 {
			t.Errorf("%s: served image does not match its SHA-256", c)
		}
	}
	want := 5
	if linux {
		want++
	}
	if n := len(f.Targets()); n != want {
		t.Fatalf("%d targets, want %d", n, want)
	}
	for _, tg := range f.Targets() {
		host := tg.Address
		if h, _, err := net.SplitHostPort(tg.Address); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("%s listens on %q, not on loopback", tg.Name, tg.Address)
		}
	}
	if got := f.Version("t-ilo5-01"); !strings.HasPrefix(got, "2.46") {
		t.Errorf("iLO 5 version %q", got)
	}
	var uts, pins, cas int
	for _, o := range f.Objects("ns") {
		if ut, ok := o.(*fwv1.UpdateTarget); ok {
			uts++
			if ut.Labels[LabelFleet] != "t" || ut.Labels[LabelComponent] != string(ComponentOf(ut.Spec.Type)) {
				t.Errorf("%s labels %v", ut.Name, ut.Labels)
			}
			if tls := ut.Spec.TLS; tls != nil {
				if tls.InsecureSkipVerify {
					t.Errorf("%s skips TLS verification", ut.Name)
				}
				if tls.CertificateSHA256 != "" {
					pins++
				} else {
					cas++
				}
			}
		}
	}
	if uts != want || pins != 1 || cas != 3 {
		t.Errorf("%d UpdateTargets, %d pinned, %d with a CA bundle; want %d, 1, 3", uts, pins, cas, want)
	}
	if a, b := f.NodeAddress("node-a", nil), f.NodeAddress("node-b", nil); a == b || a != f.NodeAddress("node-a", nil) {
		t.Errorf("node addresses %s, %s", a, b)
	}
}
