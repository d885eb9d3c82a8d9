package ilo

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// rule P2: the driver gives an iLO 5/6 the https URL, with TransferProtocol HTTPS, only when its
// UpdateService lists HTTPS for SimpleUpdate; AddFromUri (Smart Components) and iLOs that do not
// list it get HTTP, and under firmwareServer.tls Required they fail without a flash request.
func TestImageURLFollowsWhatTheILOAdvertises(t *testing.T) {
	const nic = "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter"
	images := map[string][]byte{
		"ilo.bin":   fwimage.Build("iLO", "2.99", []byte("x")),
		"nic.fwpkg": fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.1", Target: nic}, []byte("z")),
	}
	plain := imageServer(t, images)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := images[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(tlsSrv.Close)
	secure := tlsSrv.URL

	for _, tc := range []struct {
		name      string
		protocols []string // nil: as captured (HTTP, HTTPS)
		file      string
		component driver.Component
		required  bool
		want      similo.FlashRequest // Action "" means no flash request at all
	}{
		{name: "captured iLO 5, Preferred", file: "ilo.bin", component: driver.ComponentILO,
			want: similo.FlashRequest{Action: "SimpleUpdate", ImageURI: secure + "/ilo.bin", TransferProtocol: "HTTPS"}},
		{name: "captured iLO 5, Required", file: "ilo.bin", component: driver.ComponentILO, required: true,
			want: similo.FlashRequest{Action: "SimpleUpdate", ImageURI: secure + "/ilo.bin", TransferProtocol: "HTTPS"}},
		{name: "iLO 5 listing HTTP only, Preferred", protocols: []string{"HTTP"}, file: "ilo.bin", component: driver.ComponentILO,
			want: similo.FlashRequest{Action: "SimpleUpdate", ImageURI: plain + "/ilo.bin", TransferProtocol: "HTTP"}},
		{name: "iLO 5 listing HTTP only, Required", protocols: []string{"HTTP"}, file: "ilo.bin", component: driver.ComponentILO, required: true},
		{name: "Smart Component, Preferred", file: "nic.fwpkg", component: driver.ComponentSmartComponent,
			want: similo.FlashRequest{Action: "AddFromUri", ImageURI: plain + "/nic.fwpkg"}},
		{name: "Smart Component, Required", file: "nic.fwpkg", component: driver.ComponentSmartComponent, required: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, similo.Config{Model: similo.ILO5, SimpleUpdateProtocols: tc.protocols})
			d := open(t, s, target(s, driver.TypeILO5))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var told []bool
			fw := driver.Firmware{Component: tc.component, URL: plain + "/" + tc.file, SecureURL: secure + "/" + tc.file,
				RequireHTTPS: tc.required, OnImageURL: func(secure bool) { told = append(told, secure) }}
			var rec recorder
			_, err := d.Update(ctx, fw, rec.report)
			reqs := s.FlashRequestsReceived()
			if tc.want.Action == "" {
				if !errors.Is(err, driver.ErrHTTPSRequired) || !strings.Contains(err.Error(), "Preferred") {
					t.Fatalf("Update: %v, want ErrHTTPSRequired naming the Preferred setting", err)
				}
				if len(reqs) != 0 || len(told) != 0 {
					t.Fatalf("flash requests %+v, told %v; want none", reqs, told)
				}
				return
			}
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if len(reqs) != 1 || reqs[0] != tc.want {
				t.Fatalf("flash requests %+v, want [%+v]", reqs, tc.want)
			}
			if https := strings.HasPrefix(tc.want.ImageURI, "https://"); len(told) != 1 || told[0] != https {
				t.Fatalf("OnImageURL told %v, want [%v]", told, https)
			}
		})
	}
}
