package oa

import (
	"bufio"
	"io"
)

// linePipe lets a test read what Run prints while it runs.
type linePipe struct{ r *bufio.Reader }

func ioPipe() (*linePipe, *io.PipeWriter) {
	r, w := io.Pipe()
	return &linePipe{r: bufio.NewReader(r)}, w
}

// readLine returns the first line, then drains the rest so that Run never blocks on stdout.
func (p *linePipe) readLine() (string, error) {
	l, err := p.r.ReadString('\n')
	if err != nil {
		return l, err
	}
	go io.Copy(io.Discard, p.r)
	return l[:len(l)-1], nil
}
