package driver

import (
	"errors"
	"strings"
	"testing"
)

func TestImageURL(t *testing.T) {
	const plain, secure = "http://10.0.0.5/fw/t/x.bin", "https://10.0.0.5/fw/t/x.bin"
	for _, tc := range []struct {
		name     string
		fw       Firmware
		canHTTPS bool
		want     string
		err      bool
	}{
		{"Preferred, target does HTTPS", Firmware{URL: plain, SecureURL: secure}, true, secure, false},
		{"Preferred, target does HTTP only", Firmware{URL: plain, SecureURL: secure}, false, plain, false},
		{"Disabled, target does HTTPS", Firmware{URL: plain}, true, plain, false},
		{"Required, target does HTTPS", Firmware{URL: plain, SecureURL: secure, RequireHTTPS: true}, true, secure, false},
		{"Required, target does HTTP only", Firmware{URL: plain, SecureURL: secure, RequireHTTPS: true}, false, "", true},
		{"Required without a secure URL", Firmware{URL: plain, RequireHTTPS: true}, true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var told []bool
			tc.fw.OnImageURL = func(secure bool) { told = append(told, secure) }
			got, err := tc.fw.ImageURL(tc.canHTTPS, "iLO 4 downloads firmware over HTTP only")
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("ImageURL = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
			switch {
			case err != nil && len(told) != 0:
				t.Errorf("OnImageURL told %v for no URL", told)
			case err == nil && (len(told) != 1 || told[0] != (got == secure)):
				t.Errorf("OnImageURL told %v for %s", told, got)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrHTTPSRequired) {
				t.Errorf("error %v is not ErrHTTPSRequired", err)
			}
			for _, say := range []string{"spec.firmwareServer.tls to Preferred", "upgrade", "nothing was flashed"} {
				if !strings.Contains(err.Error(), say) {
					t.Errorf("error %q does not say %q", err, say)
				}
			}
		})
	}
}
