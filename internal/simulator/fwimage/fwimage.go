// Package fwimage is the tiny firmware image format the simulators understand: one header line
// naming the component and its version, then opaque payload bytes. It lets a test build an image
// whose flash really changes the version a simulated target reports.
package fwimage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic starts the header line of every image in this format.
const Magic = "FWOPS-IMAGE"

// maxHeader bounds the header line so that a large binary without a newline is not buffered whole.
const maxHeader = 4096

// ErrGeneric is returned by Parse for anything that is not a FWOPS image; simulators treat such
// images as "generic": the flash succeeds and no version changes.
var ErrGeneric = errors.New("not a FWOPS image (generic image)")

// Header is the parsed first line of an image.
type Header struct {
	// Component is iLO, SystemROM, SmartComponent or OA.
	Component string
	// Version is the version the target reports after the flash.
	Version string
	// Target optionally names the firmware inventory entry a Smart Component updates.
	Target string
}

// Build returns an image for component at version, followed by payload.
func Build(component, version string, payload []byte) []byte {
	return BuildHeader(Header{Component: component, Version: version}, payload)
}

// BuildHeader is Build with every header field, Target included.
func BuildHeader(h Header, payload []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s component=%s version=%s", Magic, h.Component, h.Version)
	if h.Target != "" {
		// Inventory names carry spaces; the value runs to the end of the line.
		fmt.Fprintf(&b, " target=%s", h.Target)
	}
	b.WriteByte('\n')
	b.Write(payload)
	return b.Bytes()
}

// Parse reads the header of an image. It returns ErrGeneric (wrapped) when r does not start
// with the FWOPS header, and another error when the header is malformed.
func Parse(r io.Reader) (Header, error) {
	br := bufio.NewReaderSize(r, maxHeader)
	line, err := br.ReadSlice('\n')
	if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0) {
		if bytes.HasPrefix(line, []byte(Magic)) {
			return Header{}, fmt.Errorf("fwimage: header line not terminated: %w", err)
		}
		return Header{}, ErrGeneric
	}
	s := strings.TrimRight(string(line), "\r\n")
	rest, ok := strings.CutPrefix(s, Magic+" ")
	if !ok {
		return Header{}, ErrGeneric
	}
	var h Header
	// target= may hold spaces, so it is split off first.
	if i := strings.Index(rest, " target="); i >= 0 {
		h.Target = rest[i+len(" target="):]
		rest = rest[:i]
	}
	for _, f := range strings.Fields(rest) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Header{}, fmt.Errorf("fwimage: malformed field %q", f)
		}
		switch k {
		case "component":
			h.Component = v
		case "version":
			h.Version = v
		}
	}
	switch h.Component {
	case "iLO", "SystemROM", "SmartComponent", "OA":
	default:
		return Header{}, fmt.Errorf("fwimage: unknown component %q", h.Component)
	}
	if h.Version == "" {
		return Header{}, errors.New("fwimage: empty version")
	}
	return h, nil
}
