// Package oa simulates an HPE BladeSystem C-Class Onboard Administrator's SSH command line
// for tests and the demo: password and keyboard-interactive login, exec of SHOW OA INFO,
// UPDATE IMAGE, UPDATE ILO and SHOW SERVER INFO, a real HTTP download of the image, a restart
// during which connections are refused, and faults on demand.
//
// It shares no code or types with the agent's drivers, so that it judges them independently.
package oa

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Config sets up a Simulator; zero fields take the defaults noted.
type Config struct {
	// Listen is the address to listen on; default "127.0.0.1:0".
	Listen string
	// Username and Password are the only accepted login; default "Administrator"/"password".
	Username string
	Password string
	// KeyboardInteractiveOnly refuses the "password" method, as many real OAs do, so that
	// clients must answer the keyboard-interactive prompt.
	KeyboardInteractiveOnly bool
	// Version is the OA firmware version reported at start; default "4.97".
	Version string
	// Bays maps a device bay to its blade iLO firmware version; default {1: "2.80"}.
	Bays map[int]string
	// RestartDelay is how long the OA refuses connections after a flash; default 2s.
	RestartDelay time.Duration
	// StepDelay paces the flash progress lines; default 0.
	StepDelay time.Duration
	// HostKey is the ed25519 host key; generated when nil.
	HostKey ed25519.PrivateKey
}

// Faults are misbehaviours injected on demand.
type Faults struct {
	// DownloadError makes every UPDATE fail as if the image could not be downloaded.
	DownloadError bool
	// VersionUnchanged makes a flash report success and restart, but keep the old version.
	VersionUnchanged bool
	// RefuseAuth rejects every login, even with the right password.
	RefuseAuth bool
}

// FetchedURLs returns every image URL this OA downloaded (HTTP 200), in order: the agent's
// firmware server puts a secret token in the path, which a client must never repeat.
func (s *Simulator) FetchedURLs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.fetched)
}

// Simulator is a running OA. Its methods are safe for concurrent use.
type Simulator struct {
	cfg    Config
	addr   string
	signer ssh.Signer
	priv   ed25519.PrivateKey
	sshCfg *ssh.ServerConfig
	http   *http.Client

	mu          sync.Mutex
	fetched     []string // image URLs downloaded (HTTP 200), for FetchedURLs
	ln          net.Listener
	conns       map[net.Conn]struct{}
	version     string
	bays        map[int]string
	faults      Faults
	flashes     int
	iloFlashes  int
	ports       []int
	restarting  bool
	restarts    int
	closed      bool
	done        chan struct{}
	wg          sync.WaitGroup
	firmwareDay string
}

// New binds the listener and prepares the simulator; Run serves it.
func New(cfg Config) (*Simulator, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username = "Administrator"
	}
	if cfg.Password == "" {
		cfg.Password = "password"
	}
	if cfg.Version == "" {
		cfg.Version = "4.97"
	}
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 2 * time.Second
	}
	bays := map[int]string{1: "2.80"}
	if cfg.Bays != nil {
		bays = make(map[int]string, len(cfg.Bays))
		for b, v := range cfg.Bays {
			bays[b] = v
		}
	}
	priv := cfg.HostKey
	if priv == nil {
		var err error
		if _, priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	s := &Simulator{
		cfg: cfg, addr: ln.Addr().String(), signer: signer, priv: priv, ln: ln,
		conns: map[net.Conn]struct{}{}, version: cfg.Version, bays: bays,
		done: make(chan struct{}), http: &http.Client{Timeout: 60 * time.Second},
		firmwareDay: "Apr 28 2021",
	}
	s.sshCfg = s.serverConfig()
	return s, nil
}

// Start is New followed by Run in the background; Close stops it.
func Start(cfg Config) (*Simulator, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	go func() { _ = s.Run(context.Background()) }()
	return s, nil
}

// Run serves until ctx ends or Close is called; it returns nil then.
func (s *Simulator) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		s.serve(ln)
	}
	<-s.done
	return nil
}

// Close stops the simulator and drops every connection.
func (s *Simulator) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	close(s.done)
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Addr is the address the simulator listens on ("127.0.0.1:port"), also while restarting.
func (s *Simulator) Addr() string { return s.addr }

// HostKey is the simulator's public host key.
func (s *Simulator) HostKey() ssh.PublicKey { return s.signer.PublicKey() }

// KnownHostsLine is the known_hosts entry for this simulator ("[127.0.0.1]:port ssh-ed25519 …").
func (s *Simulator) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, s.signer.PublicKey())
}

// HostKeyPEM is the private host key in OpenSSH PEM form, to keep the key across runs.
func (s *Simulator) HostKeyPEM() ([]byte, error) {
	b, err := ssh.MarshalPrivateKey(s.priv, "fwops OA simulator")
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(b), nil
}

// SetFaults replaces the injected faults.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// Version is the OA firmware version now installed.
func (s *Simulator) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// ILOVersion is the iLO firmware version of the blade in bay, "" when the bay is empty.
func (s *Simulator) ILOVersion(bay int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bays[bay]
}

// Flashes counts OA firmware flashes that went as far as the restart.
func (s *Simulator) Flashes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flashes
}

// ILOFlashes counts successful UPDATE ILO commands.
func (s *Simulator) ILOFlashes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.iloFlashes
}

// Restarts counts completed restarts.
func (s *Simulator) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// SourcePorts lists the source port of every accepted TCP connection, in order (rule P4
// is checked on this side).
func (s *Simulator) SourcePorts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.ports...)
}

func (s *Simulator) serverConfig() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		KeyboardInteractiveCallback: func(c ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := ask(c.User(), "", []string{"password: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				return nil, errors.New("expected one answer")
			}
			return s.checkLogin(c.User(), answers[0])
		},
		ServerVersion: "SSH-2.0-OpenSSH_7.4", // what an OA 4.x announces, roughly
	}
	if !s.cfg.KeyboardInteractiveOnly {
		cfg.PasswordCallback = func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			return s.checkLogin(c.User(), string(pw))
		}
	}
	cfg.AddHostKey(s.signer)
	return cfg
}

func (s *Simulator) checkLogin(user, pw string) (*ssh.Permissions, error) {
	s.mu.Lock()
	refuse := s.faults.RefuseAuth
	s.mu.Unlock()
	if refuse || user != s.cfg.Username || pw != s.cfg.Password {
		return nil, errors.New("access denied")
	}
	return nil, nil
}

// serve accepts on ln until it is closed (by Close or by a restart).
func (s *Simulator) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed || s.restarting {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			s.ports = append(s.ports, ta.Port)
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handleConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Simulator) handleConn(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // handshake bound
	sc, chans, reqs, err := ssh.NewServerConn(c, s.sshCfg)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(ch, creqs)
		}()
	}
}

// session answers exec requests; an OA's interactive shell is not simulated.
func (s *Simulator) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			status, after := s.exec(ch, p.Command)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			ch.Close()
			if after != nil {
				after()
			}
			return
		case "env", "pty-req":
			_ = req.Reply(true, nil)
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// exec runs one OA command, writing its output to w. after, when set, runs once the
// session has ended (the restart after a flash).
func (s *Simulator) exec(w io.Writer, command string) (status uint32, after func()) {
	f := strings.Fields(command)
	upper := make([]string, len(f))
	for i, x := range f {
		upper[i] = strings.ToUpper(x)
	}
	say := func(format string, a ...any) { fmt.Fprintf(w, format+"\r\n", a...) }
	switch {
	case len(f) == 3 && upper[0] == "SHOW" && upper[1] == "OA" && upper[2] == "INFO":
		s.showOAInfo(say)
		return 0, nil
	case len(f) == 4 && upper[0] == "SHOW" && upper[1] == "SERVER" && upper[2] == "INFO":
		return s.showServerInfo(say, f[3]), nil
	case len(f) == 3 && upper[0] == "UPDATE" && upper[1] == "IMAGE":
		return s.updateImage(say, f[2])
	case len(f) == 4 && upper[0] == "UPDATE" && upper[1] == "ILO":
		return s.updateILO(say, f[2], f[3]), nil
	case len(f) >= 1 && (upper[0] == "UPDATE" || upper[0] == "SHOW"):
		say("")
		say("Invalid Arguments")
		return 1, nil
	default:
		say("")
		say("Invalid command: %q. Type HELP for a list of commands.", command)
		return 1, nil
	}
}

func (s *Simulator) showOAInfo(say func(string, ...any)) {
	v := s.Version()
	say("")
	say("Onboard Administrator #1 information:")
	say("\tProduct Name  : BladeSystem c7000 DDR2 Onboard Administrator with KVM")
	say("\tPart Number   : 456204-B21")
	say("\tSpare Part No.: 503826-001")
	say("\tSerial Number : OB9ASIM0001")
	say("\tUUID          : 09OB9ASIM0001")
	say("\tManufacturer  : HPE")
	say("\tFirmware Ver. : %s %s", v, s.firmwareDay)
	say("\tHw Board Type : 2")
	say("\tHw Version    : A1")
	say("\tLoader Version: U-Boot 1.2.0 (Sep 26 2008 - 10:26:47)")
	say("")
}

func (s *Simulator) bay(arg string) (int, string, bool) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > 16 {
		return 0, "", false
	}
	return n, s.ILOVersion(n), true
}

func (s *Simulator) showServerInfo(say func(string, ...any), arg string) uint32 {
	n, v, ok := s.bay(arg)
	if !ok {
		say("")
		say("Invalid Arguments")
		return 1
	}
	say("")
	if v == "" {
		say("Server Blade #%d information:", n)
		say("\tServer Blade Type: No Server Blade Installed")
		return 0
	}
	say("Server Blade #%d Information:", n)
	say("\tType: Server Blade")
	say("\tManufacturer: HPE")
	say("\tProduct Name: ProLiant BL460c Gen9")
	say("\tSerial Number: CZSIM%04d", n)
	say("\tROM Version: I36 05/21/2019")
	say("")
	say("\tManagement Processor Information:")
	say("\tType: iLO4")
	say("\tName: ILOCZSIM%04d", n)
	say("\tFirmware Version: %s Jan 25 2022", v)
	say("\tIP Address: 127.0.0.1")
	say("")
	return 0
}

// download fetches and parses the image; the error text is what the OA prints.
func (s *Simulator) download(url string) (image, error) {
	s.mu.Lock()
	fault := s.faults.DownloadError
	s.mu.Unlock()
	if fault {
		return image{}, errors.New("Unable to download the firmware image (connection failed)") //nolint:staticcheck // the OA's own wording
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return image{}, errors.New("Invalid URL: only http:// and https:// are supported") //nolint:staticcheck // the OA's own wording
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // Close aborts a download in progress
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return image{}, fmt.Errorf("Invalid URL: %w", err) //nolint:staticcheck // the OA's own wording
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return image{}, errors.New("Unable to download the firmware image (connection failed)") //nolint:staticcheck // the OA's own wording
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return image{}, fmt.Errorf("Unable to download the firmware image (HTTP %d)", resp.StatusCode) //nolint:staticcheck // the OA's own wording
	}
	s.mu.Lock()
	s.fetched = append(s.fetched, url)
	s.mu.Unlock()
	img, err := parseImage(resp.Body)
	if err != nil {
		return image{}, fmt.Errorf("The firmware image is not valid: %w", err) //nolint:staticcheck // the OA's own wording
	}
	return img, nil
}

func (s *Simulator) progress(say func(string, ...any), what string) {
	for _, p := range []int{25, 50, 75, 100} {
		if s.cfg.StepDelay > 0 {
			time.Sleep(s.cfg.StepDelay)
		}
		say("%s: %d%% complete", what, p)
	}
}

func (s *Simulator) updateImage(say func(string, ...any), url string) (uint32, func()) {
	say("")
	say("Downloading firmware image from %s ...", url)
	img, err := s.download(url)
	if err != nil {
		say("ERROR: %s", err)
		return 1, nil
	}
	if !strings.EqualFold(img.Component, "OA") {
		say("ERROR: The firmware image is not valid: component %q is not Onboard Administrator firmware", img.Component)
		return 1, nil
	}
	say("Download complete: %d bytes, firmware version %s.", img.Size, img.Version)
	s.progress(say, "Flashing Onboard Administrator")
	say("Flash complete.")
	say("Restarting Onboard Administrator")
	s.mu.Lock()
	s.flashes++
	newVersion := img.Version
	if s.faults.VersionUnchanged {
		newVersion = s.version
	}
	s.mu.Unlock()
	return 0, func() {
		// Let the client read the last lines before the connection drops: closing a
		// socket too early can turn into a reset that discards them.
		time.Sleep(100 * time.Millisecond)
		s.restart(newVersion)
	}
}

func (s *Simulator) updateILO(say func(string, ...any), bayArg, url string) uint32 {
	n, v, ok := s.bay(bayArg)
	say("")
	if !ok {
		say("Invalid Arguments")
		return 1
	}
	if v == "" {
		say("ERROR: Bay %d: There is no server blade in this bay.", n)
		return 1
	}
	say("Bay %d: Downloading iLO firmware image from %s ...", n, url)
	img, err := s.download(url)
	if err != nil {
		say("ERROR: Bay %d: %s", n, err)
		return 1
	}
	if !strings.HasPrefix(strings.ToLower(img.Component), "ilo") {
		say("ERROR: Bay %d: The firmware image is not valid: component %q is not iLO firmware", n, img.Component)
		return 1
	}
	s.progress(say, fmt.Sprintf("Bay %d: Flashing iLO", n))
	s.mu.Lock()
	s.iloFlashes++
	if !s.faults.VersionUnchanged {
		s.bays[n] = img.Version
	}
	s.mu.Unlock()
	say("Bay %d: Successful update of iLO firmware to version %s.", n, img.Version)
	say("Bay %d: Successful update", n)
	return 0
}

// restart drops every connection and the listener (connections are then refused), waits
// RestartDelay, installs newVersion and listens again on the same address.
func (s *Simulator) restart(newVersion string) {
	s.mu.Lock()
	if s.closed || s.restarting {
		s.mu.Unlock()
		return
	}
	s.restarting = true
	s.ln.Close()
	s.ln = nil
	for c := range s.conns {
		c.Close()
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(s.cfg.RestartDelay):
		case <-s.done:
			return
		}
		var ln net.Listener
		var err error
		// The port may be briefly held by a dying socket; keep trying until closed.
		for {
			if ln, err = net.Listen("tcp", s.addr); err == nil {
				break
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.done:
				return
			}
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			ln.Close()
			return
		}
		s.version = newVersion
		s.restarting = false
		s.restarts++
		s.ln = ln
		s.mu.Unlock()
		s.serve(ln)
	}()
}

// Bays lists the bays that hold a blade, in order.
func (s *Simulator) Bays() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for b, v := range s.bays {
		if v != "" {
			out = append(out, b)
		}
	}
	sort.Ints(out)
	return out
}
