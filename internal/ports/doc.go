// Package ports applies HP Smart Update Manager's network port rules (P1–P5 of
// shared/spec/ports.md, user documentation in docs/ports.md) as pure code.
//
// The rules, in one line each:
//
//   - P1: control port (default 62286), next free port upward on conflict.
//   - P2: firmware server on the preferred port (80) when free, else a free port
//     in the fallback range (63000–63007), at random or the lowest one.
//   - P3: SSH to Linux targets on port 22, overridable per target.
//   - P4: one outbound session port per target from 60000 upward, next free on
//     conflict, not capped at 60007.
//   - P5: reverse ports from 61000 upward; on a single-NIC IPv4 node the lowest
//     free one is the local inter-process channel, the following ones receive
//     from targets.
//
// Everything that decides is pure: whether a port is free comes from an
// injected Probe, randomness from an injected Rand, so a test fixes both. The
// controller uses AssignForNode (a port is free when no other agent pod on the
// node declares it); the agent uses Allocator.AssignHeld with a BindProbe, which
// keeps the ports it found free bound until it uses them.
package ports
