package ilo

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Fleet is several simulated iLOs in one process, sharing a concurrent-flash counter.
type Fleet struct {
	Sims    []*Sim
	Counter *Counter
}

// StartFleet starts n simulators from cfg, sharing one parsed capture. With perPort false they listen on consecutive
// addresses from listen's IP (127.0.1.1, 127.0.1.2, …: Linux routes all of 127/8 to lo), all on
// listen's port; with perPort true they share listen's IP and take consecutive ports (or each
// a free port when listen's port is 0).
func StartFleet(cfg Config, n int, listen string, perPort bool) (*Fleet, error) {
	if n < 1 {
		return nil, errors.New("count must be at least 1")
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	ip := net.ParseIP(host).To4()
	if !perPort && n > 1 && ip == nil {
		return nil, fmt.Errorf("--count over addresses needs an IPv4 listen address, got %q", host)
	}
	if cfg.Capture == nil {
		if cfg.Capture, err = LoadCapture(cfg.MockupDir); err != nil {
			return nil, err
		}
	}
	f := &Fleet{Counter: cfg.Counter}
	if f.Counter == nil {
		f.Counter = &Counter{}
		cfg.Counter = f.Counter
	}
	for i := range n {
		addr := listen
		switch {
		case perPort && port != 0:
			addr = net.JoinHostPort(host, strconv.Itoa(port+i))
		case !perPort:
			next := make(net.IP, 4)
			copy(next, ip)
			v := uint32(next[0])<<24 | uint32(next[1])<<16 | uint32(next[2])<<8 | uint32(next[3])
			v += uint32(i)
			next[0], next[1], next[2], next[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			addr = net.JoinHostPort(next.String(), strconv.Itoa(port))
		}
		s, err := New(cfg)
		if err == nil {
			err = s.Start(addr)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("simulator %d on %s: %w", i+1, addr, err)
		}
		f.Sims = append(f.Sims, s)
	}
	return f, nil
}

// Close stops every simulator.
func (f *Fleet) Close() error {
	var errs []error
	for _, s := range f.Sims {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// MaxConcurrentFlashes is the largest number of flashes that ran at once across the fleet.
func (f *Fleet) MaxConcurrentFlashes() int { return f.Counter.Max() }
