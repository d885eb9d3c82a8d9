package oa

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// imageMagic starts the first line of a test firmware image:
// "FWOPS-IMAGE component=<name> version=<version>\n", then the payload.
// The simulator parses it itself, independent of the agent and of the iLO simulator.
const imageMagic = "FWOPS-IMAGE"

// image is a parsed test firmware image.
type image struct {
	Component string
	Version   string
	Size      int64 // payload bytes
}

// maxHeader bounds the first line, so that a wrong file cannot make the parser read forever.
const maxHeader = 4096

// parseImage reads a whole image from r.
func parseImage(r io.Reader) (image, error) {
	br := bufio.NewReaderSize(r, maxHeader)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return image{}, errors.New("header line too long")
		}
		return image{}, fmt.Errorf("no header line: %w", err)
	}
	fields := strings.Fields(strings.TrimRight(string(line), "\r\n"))
	if len(fields) == 0 || fields[0] != imageMagic {
		return image{}, errors.New("not a firmware image (bad magic)")
	}
	var img image
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return image{}, fmt.Errorf("bad header field %q", f)
		}
		switch k {
		case "component":
			img.Component = v
		case "version":
			img.Version = v
		}
	}
	if img.Component == "" || img.Version == "" {
		return image{}, errors.New("header lacks component or version")
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil {
		return image{}, fmt.Errorf("read payload: %w", err)
	}
	img.Size = n
	return img, nil
}
