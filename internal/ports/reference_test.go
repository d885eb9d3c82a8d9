package ports

import "fmt"

// naiveAssign is a reference for the rules, written the plainest way: each
// port is searched from its rule's base again, and "already assigned" is a
// map. The fuzz target checks Allocator against it; the benchmark
// shows what the bitset and the moving start buy.
func naiveAssign(pol Policy, taken map[int]bool, req Request, r Rand) ([]Entry, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	var out []Entry
	assigned := map[int]bool{}
	free := func(p int) bool { return !taken[p] && !assigned[p] }
	lowestFrom := func(base int) (int, error) {
		for p := base; p <= MaxPort; p++ {
			if free(p) {
				return p, nil
			}
		}
		return 0, fmt.Errorf("exhausted from %d: %w", base, ErrExhausted)
	}
	p, err := lowestFrom(pol.ControlPort) // P1
	if err != nil {
		return nil, err
	}
	out = append(out, Entry{Port: p, Rule: RuleP1, Purpose: PurposeControl})
	assigned[p] = true
	fs := pol.FirmwareServer // P2
	if free(fs.PreferredPort) {
		p = fs.PreferredPort
	} else {
		var cand []int
		for q := fs.FallbackRange.Start; q <= fs.FallbackRange.End; q++ {
			if free(q) {
				cand = append(cand, q)
			}
		}
		switch {
		case len(cand) == 0:
			return nil, fmt.Errorf("P2 range %s: %w", fs.FallbackRange, ErrExhausted)
		case fs.Selection == SelectionLowest:
			p = cand[0]
		default:
			p = cand[r.IntN(len(cand))]
		}
	}
	out = append(out, Entry{Port: p, Rule: RuleP2, Purpose: PurposeFirmwareServer})
	assigned[p] = true
	for i := range req.Sessions { // P4: the i-th free port from the base
		if p, err = lowestFrom(pol.SessionBasePort); err != nil {
			return nil, err
		}
		out = append(out, Entry{Port: p, Rule: RuleP4, Purpose: PurposeSession, Index: i})
		assigned[p] = true
	}
	if pol.SingleNICIPv4 { // P5
		if p, err = lowestFrom(pol.ReverseBasePort); err != nil {
			return nil, err
		}
		out = append(out, Entry{Port: p, Rule: RuleP5, Purpose: PurposeIPC})
		assigned[p] = true
	}
	for i := range req.Receive {
		if p, err = lowestFrom(pol.ReverseBasePort); err != nil {
			return nil, err
		}
		out = append(out, Entry{Port: p, Rule: RuleP5, Purpose: PurposeReceive, Index: i})
		assigned[p] = true
	}
	return out, nil
}
