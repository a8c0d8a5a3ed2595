package fsm

import (
	"encoding/json"
	"sync"
)

// A release request's payload is decoded several times on one node: for
// the metrics' labels and the audit record, before the read index
// (VerifyRelease), at the coordinator's read and at its own share's check
// (AuthorizeRelease), and once or twice on each other holder. Each check
// still decodes the signed bytes it verifies, but the JSON of the same
// bytes is parsed once per process: releaseMemo remembers the commands of
// type release decoded from small payloads, by the payload's bytes, and
// never a failure. The signature is not part of it: verifyMemo checks
// that, and what a check authorizes is what those bytes say.

// releaseMemoSize bounds releaseMemo: when full, it starts again empty.
// A release is decoded within the milliseconds it takes, so this covers
// far more requests than are in flight.
const releaseMemoSize = 1024

// releaseMemoMaxPayload is the largest payload releaseMemo keeps (an
// operator's release is about 190 bytes; a transit or RSA request with
// many points or a large input is decoded each time), so that it holds
// at most 1024 KiB of payloads.
const releaseMemoMaxPayload = 1024

var releaseMemo = struct {
	sync.Mutex
	m map[string]*Command
}{m: map[string]*Command{}}

// DecodeCommand decodes a signed payload as a Command. The command of a
// release request is decoded once per process (releaseMemo): each call
// returns its own copy of the Command and of its ReleaseRequest, whose
// slices it shares with the other copies, so the caller must not change
// their contents.
func DecodeCommand(payload []byte) (*Command, error) {
	small := len(payload) <= releaseMemoMaxPayload
	if small {
		releaseMemo.Lock()
		c, ok := releaseMemo.m[string(payload)]
		releaseMemo.Unlock()
		if ok {
			return c.copyRelease(), nil
		}
	}
	c := new(Command)
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, err
	}
	if !small || c.Type != TypeRelease || c.Release == nil {
		return c, nil
	}
	releaseMemo.Lock()
	if len(releaseMemo.m) >= releaseMemoSize {
		clear(releaseMemo.m)
	}
	releaseMemo.m[string(payload)] = c
	releaseMemo.Unlock()
	return c.copyRelease(), nil
}

// copyRelease is a copy of c and of its ReleaseRequest.
func (c *Command) copyRelease() *Command {
	out := *c
	r := *c.Release
	out.Release = &r
	return &out
}
