package ilo

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	s, err := New(Config{MockupDir: "../../../../shared/testdata/redfish-mockups/ilo5-dl325-gen10plus-v2.46", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", s.URL()+"/redfish/v1/updateservice/firmwareinventory/?$expand=.", nil)
	req.SetBasicAuth("u", "p")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "2.46 May") {
		t.Fatal(string(b))
	}
}
