package ilo

import "slices"

// secretsSeen keeps what a client must never repeat anywhere (logs, events, status): every
// session token the simulator issued, forgotten sessions included, and every image URI it
// fetched (the agent's firmware server puts a secret token in the path). Guarded by Sim.mu.
type secretsSeen struct {
	tokens    []string
	imageURIs []string
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
