package ilo

import "slices"

// secretsSeen keeps what a client must never repeat anywhere (logs, events, status): every
// session token the simulator issued, forgotten sessions included, and every image URI it
// fetched (the agent's firmware server puts a secret token in the path). Guarded by Sim.mu.
type secretsSeen struct {
	tokens    []string
	imageURIs []string
	// serverCerts are the SHA-256 of the certificates image servers presented over HTTPS;
	// requests the flash requests received.
	serverCerts []string
	requests    []FlashRequest
}

// FlashRequest is a flash a client asked for, as it asked it.
type FlashRequest struct {
	// Action is SimpleUpdate, AddFromUri or InstallFromURI (iLO 4).
	Action string
	// ImageURI is the ImageURI (FirmwareURI on iLO 4) as sent.
	ImageURI string
	// TransferProtocol is SimpleUpdate's, as sent ("" when absent).
	TransferProtocol string
}

func (s *Sim) noteFlashRequest(r FlashRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets.requests = append(s.secrets.requests, r)
}

// FlashRequestsReceived returns every flash request this iLO received, refused ones included,
// in order.
func (s *Sim) FlashRequestsReceived() []FlashRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets.requests)
}

// ImageServerCertificates returns the SHA-256 (hex) of the certificate each image server
// presented when this iLO downloaded over HTTPS, in order; plain HTTP downloads add none.
func (s *Sim) ImageServerCertificates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets.serverCerts)
}

// IssuedTokens returns every X-Auth-Token this iLO handed out, in order.
func (s *Sim) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets.tokens)
}

// FetchedImageURIs returns every image URI this iLO downloaded successfully (HTTP 200), in order.
func (s *Sim) FetchedImageURIs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets.imageURIs)
}
