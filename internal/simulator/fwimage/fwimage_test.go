package fwimage

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	big := bytes.Repeat([]byte{0xff}, 10000)
	tests := []struct {
		name    string
		in      []byte
		want    Header
		generic bool
		bad     bool
	}{
		{name: "ilo", in: Build("iLO", "2.78", []byte("xyz")), want: Header{Component: "iLO", Version: "2.78"}},
		{name: "rom no payload", in: Build("SystemROM", "2.60", nil), want: Header{Component: "SystemROM", Version: "2.60"}},
		{name: "target with spaces", in: BuildHeader(Header{Component: "SmartComponent", Version: "08.60.1", Target: "Marvell 2P 25GbE"}, big),
			want: Header{Component: "SmartComponent", Version: "08.60.1", Target: "Marvell 2P 25GbE"}},
		{name: "binary", in: big, generic: true},
		{name: "empty", in: nil, generic: true},
		{name: "unknown component", in: Build("BIOS", "1", nil), bad: true},
		{name: "no version", in: []byte(Magic + " component=iLO\n"), bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(bytes.NewReader(tc.in))
			switch {
			case tc.generic:
				if !errors.Is(err, ErrGeneric) {
					t.Fatalf("err = %v, want ErrGeneric", err)
				}
			case tc.bad:
				if err == nil || errors.Is(err, ErrGeneric) {
					t.Fatalf("err = %v, want a malformed-header error", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if h != tc.want {
					t.Fatalf("got %+v, want %+v", h, tc.want)
				}
			}
		})
	}
}

func TestBuildHeaderLine(t *testing.T) {
	img := Build("OA", "4.97", []byte("p"))
	if !strings.HasPrefix(string(img), "FWOPS-IMAGE component=OA version=4.97\n") || img[len(img)-1] != 'p' {
		t.Fatalf("image = %q", img)
	}
}
